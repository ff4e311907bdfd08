#include "cli/training_run.h"

#include <cmath>

#include "core/files.h"
#include "core/log.h"
#include "core/progress.h"
#include "core/version.h"
#include "data/prepare.h"
#include "model/checkpoint.h"

namespace edgedistill::cli {

namespace fs = std::filesystem;

constexpr int kExitInterrupted = 130;  // the shell's code for SIGINT

std::vector<std::string> RunCommandOptions::overrides() const {
  auto all = config.overrides;
  if (threads >= 0) all.push_back(str("threads=", threads));
  if (!device.empty()) all.push_back(str("device=", device));
  if (!tokenizer.empty()) {
    all.push_back(str("data.tokenizer.from=", fs::absolute(tokenizer).string()));
  }
  return all;
}

fs::path RunCommandOptions::cache_root() const {
  return data_cache.empty() ? data::default_cache_root() : fs::path(data_cache);
}

void add_run_options(CLI::App* command, RunCommandOptions& options, const std::string& what,
                     const std::string& example) {
  add_config_options(command, options.config, what, example, true);
  command
      ->add_option("-o,--run-dir", options.run_dir,
                   "run directory: config.json, metrics.jsonl, checkpoints/, final/")
      ->required();
  command->add_flag(
      "--resume", options.resume,
      "continue from the newest checkpoint in the run directory (starts fresh if none)");
  command->add_flag("--deterministic", options.deterministic,
                    "one thread and fixed seeds: identical runs give byte-identical weights");
  command
      ->add_option("--stop-at-step", options.stop_at_step,
                   "save a checkpoint at step N and exit 0, as if interrupted")
      ->check(CLI::PositiveNumber);
  command
      ->add_option("--threads", options.threads,
                   "CPU threads (default: the recipe's; 0 = all cores)")
      ->check(CLI::NonNegativeNumber);
  command
      ->add_option("--device", options.device,
                   "cpu, or cuda where LibTorch was built with CUDA (default: the recipe's)")
      ->check(CLI::IsMember({"cpu", "cuda"}));
  command->add_option("--data-cache", options.data_cache,
                      "where prepared data is cached (default: $EDGEDISTILL_CACHE_DIR or "
                      "~/.cache/edgedistill)");
  command->add_option("--tokenizer", options.tokenizer,
                      "prepare the corpus with this tokenizer instead of training one (= --set "
                      "data.tokenizer.from=PATH): a tokenizer.json, tokenizer.model, GGUF file, "
                      "model folder, checkpoint or prepared data");
}

void write_run_record(const fs::path& run_dir, const std::string& command,
                      const data::PreparedData* data, int threads, const RunCommandOptions& options,
                      const train::ProcessGroup* group, const nlohmann::ordered_json& extra) {
  if (group != nullptr && !group->is_main()) return;
  core::create_directories(run_dir, "run directory");
  if (options.resume && fs::exists(run_dir / "run.json")) return;
  nlohmann::ordered_json run;
  run["format"] = "edgedistill-run";
  run["version"] = 1;
  run["command"] = command;
  run["edgedistill_version"] = kVersion;
  run["git_revision"] = kGitRevision;
  if (data != nullptr) {
    run["data_dir"] = data->dir().string();
    run["tokenizer_hash"] = data->tokenizer().hash();
  }
  run["threads"] = threads;
  run["deterministic"] = options.deterministic;
  if (group != nullptr) {
    run["world_size"] = group->world_size();
    run["local_world_size"] = group->env().local_world_size;
  }
  for (const auto& item : extra.items()) run[item.key()] = item.value();
  core::write_json_atomic(run_dir / "run.json", run);
}

int exit_code_of(const train::TrainResult& result, const RunCommandOptions& options) {
  if (!result.interrupted) return 0;
  return options.stop_at_step > 0 && result.step == options.stop_at_step ? 0 : kExitInterrupted;
}

std::unique_ptr<train::ProcessGroup> join_process_group() {
  const auto env = train::distributed_env_from_environment();
  if (!env) return nullptr;
  core::set_log_prefix(str("rank ", env->rank, ": "));
  if (env->rank > 0 && core::log_level() > core::LogLevel::quiet) {
    core::set_log_level(core::LogLevel::quiet);
  }
  return std::make_unique<train::ProcessGroup>(*env, train::default_distributed_timeout());
}

void describe_data_parallel(const train::ProcessGroup& group, const train::TrainConfig& train,
                            int threads) {
  const auto& env = group.env();
  core::info("data parallel: ", env.world_size, " ranks (", env.local_world_size,
             " on this host) via ", env.master_addr, ":", env.master_port, ", ", threads,
             threads == 1 ? " thread" : " threads", " each; global batch ", train.batch_size, " x ",
             train.grad_accum, " x ", env.world_size, " = ",
             train.batch_size * train.grad_accum * env.world_size, " per optimizer step");
}

double final_metric(const train::TrainResult& result, const std::string& name) {
  for (const auto& [key, value] : result.final_metrics) {
    if (key == name) return value;
  }
  return std::nan("");
}

void print_run_summary(const std::string& name, train::TrainingTask& task,
                       const data::PreparedData* data, const train::TrainResult& result,
                       const fs::path& run_dir, int threads) {
  const int64_t parameters = model::parameter_count(task.model());
  std::printf("\n%s: %lld steps", name.c_str(), static_cast<long long>(result.step));
  if (result.wall_s > 0 && result.items_per_s > 0) {
    std::printf(" in %s (%s %s/s on %d thread%s)", core::format_duration(result.wall_s).c_str(),
                core::format_count(static_cast<int64_t>(result.items_per_s)).c_str(),
                task.item_unit().c_str(), threads, threads == 1 ? "" : "s");
  }
  std::printf("\n");
  if (result.best_step > 0) {
    std::printf("  early stopping: %s; final/ holds step %lld (lowest valid loss)\n",
                result.stopped_early
                    ? "no lower valid loss in train.early_stop_patience evaluations"
                    : "ran every step",
                static_cast<long long>(result.best_step));
  }
  if (task.headline_metric() == "valid_ppl") {
    std::printf("  perplexity: valid %.2f, test %.2f (mean loss %.4f, %.4f nats/token)\n",
                final_metric(result, "valid_ppl"), final_metric(result, "test_ppl"),
                final_metric(result, "valid_loss"), final_metric(result, "test_loss"));
  } else {
    std::printf("  accuracy: valid %.2f %% (%.0f errors), test %.2f %% (%.0f errors)\n",
                100 * final_metric(result, "valid_accuracy"), final_metric(result, "valid_errors"),
                100 * final_metric(result, "test_accuracy"), final_metric(result, "test_errors"));
  }
  const fs::path weights = result.final_dir / model::kWeightsFileName;
  std::error_code ec;
  const auto weight_bytes = fs::file_size(weights, ec);
  std::printf("  model: %s (%s parameters, %s %s)\n", result.final_dir.string().c_str(),
              core::format_count(parameters).c_str(), model::kWeightsFileName,
              ec ? "?" : core::format_bytes(weight_bytes).c_str());
  if (data != nullptr) {
    const auto& info = data->info();
    const auto& tokenizer = data->tokenizer();
    std::printf("  data: %s (train %s tokens, %s tokenizer of %s pieces)\n",
                data->dir().string().c_str(),
                core::format_count(info["splits"]["train"].value("tokens", int64_t{0})).c_str(),
                tokenizer.kind().c_str(), core::format_count(tokenizer.vocab_size()).c_str());
  }
  std::printf("  run: %s (config.json, metrics.jsonl, checkpoints/, result.json)\n",
              run_dir.string().c_str());
}

}  // namespace edgedistill::cli
