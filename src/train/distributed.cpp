#include "train/distributed.h"

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <cerrno>
#include <cstdlib>

#include "core/error.h"
#include "core/timing.h"

namespace edgedistill::train {
namespace {

const char* env_value(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? value : nullptr;
}

// A whole non-negative decimal number from the environment, or `fallback` when unset.
int env_int(const char* name, int fallback, int min, int max) {
  const char* text = env_value(name);
  if (text == nullptr) return fallback;
  errno = 0;
  char* end = nullptr;
  const long value = std::strtol(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || value < min || value > max) {
    throw InputError(str("environment variable ", name, "='", text, "' is not a whole number in ",
                         min, "..", max, "; set it as torchrun does, or unset the distributed ",
                         "variables to run one process"));
  }
  return static_cast<int>(value);
}

bool is_loopback(const std::string& host) {
  return host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1";
}

}  // namespace

std::optional<DistributedEnv> distributed_env_from_environment() {
  if (env_value("WORLD_SIZE") == nullptr) {
    if (env_value("RANK") != nullptr) {
      throw InputError(
          "RANK is set but WORLD_SIZE is not; set both (torchrun does), or neither to run one "
          "process");
    }
    return std::nullopt;
  }
  constexpr int kMaxRanks = 1 << 20;
  DistributedEnv env;
  env.world_size = env_int("WORLD_SIZE", 1, 1, kMaxRanks);
  if (env_value("RANK") == nullptr) {
    throw InputError(str("WORLD_SIZE=", env.world_size,
                         " is set but RANK is not; set RANK to this process's rank in 0..",
                         env.world_size - 1, " (torchrun does)"));
  }
  env.rank = env_int("RANK", 0, 0, kMaxRanks);
  if (env.rank >= env.world_size) {
    throw InputError(str("RANK=", env.rank, " is not below WORLD_SIZE=", env.world_size,
                         "; ranks run from 0 to WORLD_SIZE - 1"));
  }
  env.local_world_size = env_int("LOCAL_WORLD_SIZE", env.world_size, 1, env.world_size);
  env.local_rank = env_int("LOCAL_RANK", env.rank % env.local_world_size, 0, kMaxRanks);
  if (env.local_rank >= env.local_world_size) {
    throw InputError(str("LOCAL_RANK=", env.local_rank, " is not below LOCAL_WORLD_SIZE=",
                         env.local_world_size, "; local ranks run from 0 to LOCAL_WORLD_SIZE - 1"));
  }
  if (env.world_size == 1) return std::nullopt;
  const char* addr = env_value("MASTER_ADDR");
  if (addr == nullptr || env_value("MASTER_PORT") == nullptr) {
    throw InputError(str("WORLD_SIZE=", env.world_size, " needs MASTER_ADDR and MASTER_PORT (rank ",
                         "0's host and a free port on it), as torchrun sets them"));
  }
  env.master_addr = addr;
  env.master_port = env_int("MASTER_PORT", 0, 1, 65535);
  return env;
}

std::chrono::milliseconds default_distributed_timeout() {
  const int seconds = env_int("EDGEDISTILL_DIST_TIMEOUT", 60, 1, 24 * 3600);
  return std::chrono::milliseconds(int64_t{seconds} * 1000);
}

struct ProcessGroup::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group;
};

ProcessGroup::ProcessGroup(const DistributedEnv& env, std::chrono::milliseconds timeout)
    : env_(env), timeout_(timeout), impl_(std::make_unique<Impl>()) {
  const std::string where = str(env.master_addr, ":", env.master_port);
  try {
    // torchrun with a static rendezvous already hosts a TCPStore on MASTER_PORT (and says so in
    // TORCHELASTIC_USE_AGENT_STORE): every rank is then its client, under a prefix per restart.
    // Otherwise rank 0 hosts the store.
    const char* agent_store = env_value("TORCHELASTIC_USE_AGENT_STORE");
    const bool use_agent_store = agent_store != nullptr && std::string(agent_store) == "True";
    c10d::TCPStoreOptions options;
    options.port = static_cast<uint16_t>(env.master_port);
    options.isServer = env.rank == 0 && !use_agent_store;
    options.numWorkers = static_cast<size_t>(env.world_size);
    options.waitWorkers = !use_agent_store;
    options.timeout = timeout;
    auto tcp_store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, options);
    if (use_agent_store) {
      const char* restarts = env_value("TORCHELASTIC_RESTART_COUNT");
      impl_->store = c10::make_intrusive<c10d::PrefixStore>(
          str("/worker/attempt_", restarts != nullptr ? restarts : "0"), tcp_store);
    } else {
      impl_->store = tcp_store;
    }
    auto gloo = c10d::ProcessGroupGloo::Options::create(timeout);
    if (const char* interface = env_value("GLOO_SOCKET_IFNAME")) {
      gloo->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(interface));
    } else if (is_loopback(env.master_addr)) {
      gloo->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
    } else {
      gloo->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    }
    impl_->group =
        c10::make_intrusive<c10d::ProcessGroupGloo>(impl_->store, env.rank, env.world_size, gloo);
  } catch (const std::exception& e) {
    throw InputError(str("rank ", env.rank, " of ", env.world_size,
                         " could not join the process group at ", where, ": ", first_line(e.what()),
                         "; check that MASTER_ADDR is rank 0's host, that MASTER_PORT ",
                         "is free there, and that all ", env.world_size, " ranks start within ",
                         timeout.count() / 1000, " s (EDGEDISTILL_DIST_TIMEOUT)"));
  }
}

ProcessGroup::~ProcessGroup() = default;

template <class Work>
void ProcessGroup::collective(const std::string& what, Work&& work) {
  const auto start = std::chrono::steady_clock::now();
  try {
    work();
  } catch (const std::exception& e) {
    throw RunError(str(what, " failed on rank ", env_.rank, " of ", env_.world_size, ": ",
                       first_line(e.what()), "; another rank stopped or hangs (collectives wait ",
                       timeout_.count() / 1000, " s: EDGEDISTILL_DIST_TIMEOUT or launch ",
                       "--dist-timeout); the other ranks' lines say why, and the last checkpoint ",
                       "is intact"));
  }
  communication_s_ += core::seconds_since(start);
}

void ProcessGroup::average_gradients(const std::vector<torch::Tensor>& parameters,
                                     int64_t bucket_bytes) {
  torch::NoGradGuard no_grad;
  // A parameter no rank computed a gradient for (a block every rank dropped this step) keeps no
  // gradient, as in one process, where the optimizer then leaves it alone; one that some ranks
  // have gets zeros on the others.
  std::vector<double> present(parameters.size());
  for (size_t i = 0; i < parameters.size(); ++i) present[i] = parameters[i].grad().defined();
  const auto anywhere = sum(present, "the gradient inventory");
  std::vector<torch::Tensor> grads;
  grads.reserve(parameters.size());
  for (size_t i = 0; i < parameters.size(); ++i) {
    if (anywhere[i] == 0) continue;
    auto& grad = parameters[i].mutable_grad();
    if (!grad.defined()) grad = torch::zeros_like(parameters[i]);
    grads.push_back(grad);
  }
  const double scale = 1.0 / static_cast<double>(env_.world_size);
  size_t first = 0;
  while (first < grads.size()) {
    // One bucket: consecutive gradients of one dtype up to bucket_bytes (at least one).
    size_t last = first + 1;
    int64_t bytes = grads[first].numel() * grads[first].element_size();
    while (last < grads.size() && grads[last].scalar_type() == grads[first].scalar_type() &&
           bytes + grads[last].numel() * grads[last].element_size() <= bucket_bytes) {
      bytes += grads[last].numel() * grads[last].element_size();
      ++last;
    }
    std::vector<torch::Tensor> flat_parts;
    for (size_t i = first; i < last; ++i) flat_parts.push_back(grads[i].reshape({-1}));
    std::vector<at::Tensor> bucket{torch::cat(flat_parts)};
    collective("the gradient all-reduce", [&] { impl_->group->allreduce(bucket)->wait(timeout_); });
    bucket[0].mul_(scale);
    int64_t offset = 0;
    for (size_t i = first; i < last; ++i) {
      const int64_t count = grads[i].numel();
      grads[i].copy_(bucket[0].narrow(0, offset, count).view_as(grads[i]));
      offset += count;
    }
    first = last;
  }
}

void ProcessGroup::sum_in_place(const torch::Tensor& tensor, const std::string& what) {
  std::vector<at::Tensor> one{tensor};
  collective(what, [&] { impl_->group->allreduce(one)->wait(timeout_); });
}

namespace {

std::vector<double> doubles_of(const torch::Tensor& tensor) {
  const double* data = tensor.data_ptr<double>();
  return std::vector<double>(data, data + tensor.numel());
}

}  // namespace

std::vector<double> ProcessGroup::sum(const std::vector<double>& values, const std::string& what) {
  const auto tensor = torch::tensor(values, torch::kFloat64);
  sum_in_place(tensor, what);
  return doubles_of(tensor);
}

std::vector<double> ProcessGroup::from_main(const std::vector<double>& values,
                                            const std::string& what) {
  const auto tensor = torch::tensor(values, torch::kFloat64);
  broadcast_from_main({tensor}, what);
  return doubles_of(tensor);
}

void ProcessGroup::broadcast_from_main(const std::vector<torch::Tensor>& tensors,
                                       const std::string& what) {
  torch::NoGradGuard no_grad;
  for (const auto& tensor : tensors) {
    std::vector<at::Tensor> one{tensor.detach().contiguous()};
    collective(what, [&] { impl_->group->broadcast(one)->wait(timeout_); });
    if (!one[0].is_same(tensor)) tensor.detach().copy_(one[0]);
  }
}

void ProcessGroup::barrier(const std::string& what) {
  collective(what, [&] { impl_->group->barrier()->wait(timeout_); });
}

void ProcessGroup::signal(const std::string& key) {
  collective(str("signalling '", key, "'"), [&] {
    const std::string value = "1";
    impl_->store->set(key, std::vector<uint8_t>(value.begin(), value.end()));
  });
}

void ProcessGroup::wait_for(const std::string& key, std::chrono::milliseconds timeout) {
  collective(str("waiting for rank 0 (", key, ")"), [&] { impl_->store->wait({key}, timeout); });
}

std::vector<double> SummedCounters::sync(ProcessGroup& group, const std::vector<double>& values,
                                         const std::string& what) {
  if (synced_.size() != values.size()) synced_.assign(values.size(), 0.0);
  std::vector<double> increments(values.size());
  for (size_t i = 0; i < values.size(); ++i) increments[i] = values[i] - synced_[i];
  const auto summed = group.sum(increments, what);
  for (size_t i = 0; i < values.size(); ++i) synced_[i] += summed[i];
  return synced_;
}

}  // namespace edgedistill::train
