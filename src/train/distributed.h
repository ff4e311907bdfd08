// Data-parallel training on PyTorch's own distributed engine (c10d): a process group joined from
// torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR,
// MASTER_PORT) through a TCPStore rendezvous, Gloo collectives on the CPU. The training loop
// (trainer.cpp) averages gradients and agrees on its per-step decisions through this class; the
// data tasks read their rank's slice of every global batch (TrainingTask::shard_data).
#pragma once

#include <torch/torch.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace edgedistill::train {

// torchrun's variables, checked against each other.
struct DistributedEnv {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  int local_world_size = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
};

// The environment's process group, or nullopt when WORLD_SIZE is unset. An inconsistent
// environment (RANK >= WORLD_SIZE, a missing RANK, a port outside 1..65535, ...) is an InputError
// naming the variable.
std::optional<DistributedEnv> distributed_env_from_environment();

// How long a collective waits for the other ranks before failing (a rank that died or hangs):
// $EDGEDISTILL_DIST_TIMEOUT seconds, default 60.
std::chrono::milliseconds default_distributed_timeout();

class ProcessGroup {
 public:
  // Joins the group: rank 0 hosts the TCPStore on MASTER_ADDR:MASTER_PORT, every rank connects
  // to it and to the others through Gloo. Fails with one line (exit 2) when the port is taken,
  // the address does not resolve or the other ranks do not arrive within `timeout`.
  ProcessGroup(const DistributedEnv& env, std::chrono::milliseconds timeout);
  ~ProcessGroup();
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  int rank() const { return env_.rank; }
  int world_size() const { return env_.world_size; }
  const DistributedEnv& env() const { return env_; }
  bool is_main() const { return env_.rank == 0; }
  std::chrono::milliseconds timeout() const { return timeout_; }

  // Replaces each parameter's gradient by its mean over the ranks. Gradients are flattened into
  // buckets of at most `bucket_bytes` and all-reduced one bucket at a time. A parameter without
  // a gradient on some ranks counts as zeros there (and gets a zero gradient); one without a
  // gradient on every rank keeps none, as in a single process.
  void average_gradients(const std::vector<torch::Tensor>& parameters,
                         int64_t bucket_bytes = 25 << 20);
  // Replaces `tensor` (contiguous, CPU) by its element-wise sum over the ranks.
  void sum_in_place(const torch::Tensor& tensor, const std::string& what);
  // Element-wise sums over the ranks.
  std::vector<double> sum(const std::vector<double>& values, const std::string& what);
  // Rank 0's values on every rank.
  std::vector<double> from_main(const std::vector<double>& values, const std::string& what);
  // Copies rank 0's tensors into every rank's (same shapes everywhere).
  void broadcast_from_main(const std::vector<torch::Tensor>& tensors, const std::string& what);
  // Every rank waits for the others.
  void barrier(const std::string& what);
  // Rank 0 calls signal(key) after work the others need (preparing data); the others wait for
  // it up to `timeout`, which may be longer than the collectives'.
  void signal(const std::string& key);
  void wait_for(const std::string& key, std::chrono::milliseconds timeout);

  // Seconds spent in collectives so far (for the communication share of a step).
  double communication_seconds() const { return communication_s_; }

 private:
  struct Impl;
  // Runs a collective, turning c10d's errors into one RunError that names this rank, the work
  // and the timeout.
  template <class Work>
  void collective(const std::string& what, Work&& work);

  DistributedEnv env_;
  std::chrono::milliseconds timeout_;
  std::unique_ptr<Impl> impl_;
  double communication_s_ = 0;
};

// Totals each rank adds to on its own slice of the data (tokens the teacher saw, items asked),
// kept equal on every rank to the sum over all ranks: sync() adds every rank's increments since
// the last sync. Counters restored from a checkpoint are totals already: mark() them.
class SummedCounters {
 public:
  void mark(const std::vector<double>& totals) { synced_ = totals; }
  // Returns the totals for `values` (this rank's counters: the last totals plus its increments).
  std::vector<double> sync(ProcessGroup& group, const std::vector<double>& values,
                           const std::string& what);

 private:
  std::vector<double> synced_;
};

}  // namespace edgedistill::train
