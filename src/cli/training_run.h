// What the commands that run the training loop (train, distill) share: their run options, the
// run.json record, the exit code of a stopped run, and the closing summary.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "data/prepared_data.h"
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
// on a fresh start (kept when resuming). `extra` adds command-specific keys.
void write_run_record(const std::filesystem::path& run_dir, const std::string& command,
                      const data::PreparedData* data, int threads, const RunCommandOptions& options,
                      const nlohmann::ordered_json& extra = nlohmann::ordered_json::object());

// 0 for a run that finished or stopped at --stop-at-step, 130 for an interrupted one.
int exit_code_of(const train::TrainResult& result, const RunCommandOptions& options);

// The closing summary: what was trained, how well, how fast, and where everything is.
void print_run_summary(const std::string& name, train::TrainingTask& task,
                       const data::PreparedData* data, const train::TrainResult& result,
                       const std::filesystem::path& run_dir, int threads);

// A final metric by name (NaN when absent).
double final_metric(const train::TrainResult& result, const std::string& name);

}  // namespace edgedistill::cli
