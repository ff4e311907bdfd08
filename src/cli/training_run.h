// What the commands that run the training loop (train, distill) share: their run options, the
// run.json record, the exit code of a stopped run, and the closing summary.
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "data/prepared_data.h"
#include "train/distributed.h"
#include "train/trainer.h"

namespace edgedistill::cli {

struct RunCommandOptions {
  ConfigOptions config;
  std::string run_dir;
  bool resume = false;
  bool deterministic = false;
  int64_t stop_at_step = 0;
  int threads = -1;
  std::string device;
  std::string data_cache;
  std::string tokenizer;

  // --set overrides plus --threads, --device and --tokenizer.
  std::vector<std::string> overrides() const;
  std::filesystem::path cache_root() const;
};

// Registers --config/--set, --run-dir, --resume, --deterministic, --stop-at-step, --threads,
// --device, --data-cache and --tokenizer.
void add_run_options(CLI::App* command, RunCommandOptions& options, const std::string& what,
                     const std::string& example);

// run.json: what ran and where its inputs are, for the commands that take the run later. Written
// on a fresh start (kept when resuming). `extra` adds command-specific keys. Data parallel
// (`group` not null): rank 0 alone writes it, adding world_size and local_world_size.
void write_run_record(const std::filesystem::path& run_dir, const std::string& command,
                      const data::PreparedData* data, int threads, const RunCommandOptions& options,
                      const train::ProcessGroup* group,
                      const nlohmann::ordered_json& extra = nlohmann::ordered_json::object());

// 0 for a run that finished or stopped at --stop-at-step, 130 for an interrupted one.
int exit_code_of(const train::TrainResult& result, const RunCommandOptions& options);

// The closing summary: what was trained, how well, how fast, and where everything is.
void print_run_summary(const std::string& name, train::TrainingTask& task,
                       const data::PreparedData* data, const train::TrainResult& result,
                       const std::filesystem::path& run_dir, int threads);

// Data parallel: joins the process group torchrun's environment describes (RANK, WORLD_SIZE,
// MASTER_ADDR, ...), or returns null when WORLD_SIZE is unset. Ranks above 0 then print only
// warnings and errors, every line of every rank starting "rank R: ".
std::unique_ptr<train::ProcessGroup> join_process_group();

// Runs `prepare` (data preparation into the shared cache) on rank 0 first and on the other ranks
// once it is done, so that they find the prepared data instead of preparing it again at once.
template <class Prepare>
auto prepare_on_main_first(train::ProcessGroup* group, Prepare prepare) {
  if (group == nullptr) return prepare();
  constexpr auto kPrepareTimeout = std::chrono::hours(4);
  if (group->is_main()) {
    auto prepared = prepare();
    group->signal("edgedistill/prepared");
    return prepared;
  }
  group->wait_for("edgedistill/prepared", kPrepareTimeout);
  return prepare();
}

// One line on the data-parallel layout: ranks, threads and the global batch.
void describe_data_parallel(const train::ProcessGroup& group, const train::TrainConfig& train,
                            int threads);

// A final metric by name (NaN when absent).
double final_metric(const train::TrainResult& result, const std::string& name);

}  // namespace edgedistill::cli
