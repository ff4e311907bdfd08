// edgedistill train: train a model from a recipe (a teacher language model, or a classifier).
#include <cmath>
#include <filesystem>

#include "cli/command.h"
#include "core/files.h"
#include "core/log.h"
#include "core/progress.h"
#include "core/version.h"
#include "data/prepare.h"
#include "model/model_meta.h"
#include "train/setup.h"
#include "train/trainer.h"

namespace edgedistill::cli {
namespace {

namespace fs = std::filesystem;

constexpr int kExitInterrupted = 130;  // the shell's code for SIGINT

struct TrainCommandOptions {
  ConfigOptions config;
  std::string run_dir;
  bool resume = false;
  bool deterministic = false;
  int64_t stop_at_step = 0;
  int threads = -1;
  std::string device;
  std::string data_cache;
};

double metric(const train::TrainResult& result, const std::string& name) {
  for (const auto& [key, value] : result.final_metrics) {
    if (key == name) return value;
  }
  return std::nan("");
}

// The closing summary: what was trained, how well, how fast, and where everything is.
void print_summary(train::TrainingSetup& setup, const train::TrainResult& result,
                   const fs::path& run_dir, int threads) {
  auto& task = *setup.task;
  int64_t parameters = 0;
  for (const auto& p : task.model().parameters()) parameters += p.numel();
  std::printf("\n%s: %lld steps", setup.recipe.name.c_str(), static_cast<long long>(result.step));
  if (result.wall_s > 0 && result.items_per_s > 0) {
    std::printf(" in %s (%s %s/s on %d threads)", core::format_duration(result.wall_s).c_str(),
                core::format_count(static_cast<int64_t>(result.items_per_s)).c_str(),
                task.item_unit().c_str(), threads);
  }
  std::printf("\n");
  if (task.headline_metric() == "valid_ppl") {
    std::printf("  perplexity: valid %.2f, test %.2f (mean loss %.4f, %.4f nats/token)\n",
                metric(result, "valid_ppl"), metric(result, "test_ppl"),
                metric(result, "valid_loss"), metric(result, "test_loss"));
  } else {
    std::printf("  accuracy: valid %.2f %% (%.0f errors), test %.2f %% (%.0f errors)\n",
                100 * metric(result, "valid_accuracy"), metric(result, "valid_errors"),
                100 * metric(result, "test_accuracy"), metric(result, "test_errors"));
  }
  const fs::path weights = result.final_dir / model::kWeightsFileName;
  std::error_code ec;
  const auto weight_bytes = fs::file_size(weights, ec);
  std::printf("  model: %s (%s parameters, %s %s)\n", result.final_dir.string().c_str(),
              core::format_count(parameters).c_str(), model::kWeightsFileName,
              ec ? "?" : core::format_bytes(weight_bytes).c_str());
  if (setup.text_data) {
    const auto& info = setup.text_data->info();
    const auto& tokenizer = setup.text_data->tokenizer();
    std::printf("  data: %s (train %s tokens, %s tokenizer of %s pieces)\n",
                setup.text_data->dir().string().c_str(),
                core::format_count(info["splits"]["train"].value("tokens", int64_t{0})).c_str(),
                tokenizer.kind().c_str(), core::format_count(tokenizer.vocab_size()).c_str());
  }
  std::printf("  run: %s (config.json, metrics.jsonl, checkpoints/, result.json)\n",
              run_dir.string().c_str());
}

int run_train(const TrainCommandOptions& options) {
  if (options.config.file.empty()) {
    throw InputError("train needs --config FILE (e.g. configs/recipes/teacher-kjv.json)");
  }
  auto overrides = options.config.overrides;
  if (options.threads >= 0) overrides.push_back(str("threads=", options.threads));
  if (!options.device.empty()) overrides.push_back(str("device=", options.device));
  const auto recipe = core::load_config<train::TrainRecipe>(options.config.file, overrides);
  const int threads = train::configure_threads(recipe.threads, options.deterministic);
  const fs::path cache_root =
      options.data_cache.empty() ? data::default_cache_root() : fs::path(options.data_cache);
  const fs::path run_dir = fs::absolute(options.run_dir);

  auto setup = train::prepare_training(recipe, cache_root);
  core::info("training '", setup.recipe.name, "' in ", run_dir.string(), " on ", threads,
             threads == 1 ? " thread" : " threads",
             options.deterministic ? " (deterministic)" : "");

  // run.json: where this run's inputs are, for the commands that take the run later.
  core::create_directories(run_dir, "run directory");
  nlohmann::ordered_json run;
  run["format"] = "edgedistill-run";
  run["version"] = 1;
  run["command"] = "train";
  run["edgedistill_version"] = kVersion;
  run["git_revision"] = kGitRevision;
  if (setup.text_data) {
    run["data_dir"] = setup.text_data->dir().string();
    run["tokenizer_hash"] = setup.text_data->tokenizer().hash();
  }
  run["threads"] = threads;
  run["deterministic"] = options.deterministic;

  train::TrainOptions train_options;
  train_options.run_dir = run_dir;
  train_options.resume = options.resume;
  train_options.stop_at_step = options.stop_at_step;
  train_options.seed = static_cast<uint64_t>(setup.recipe.seed);
  const auto merged = core::to_json(setup.recipe);
  if (!options.resume || !fs::exists(run_dir / "run.json")) {
    core::write_json_atomic(run_dir / "run.json", run);
  }
  const auto result = train::run_training(setup.recipe.train, merged, *setup.task, train_options);
  if (result.interrupted)
    return options.stop_at_step > 0 && result.step == options.stop_at_step ? 0 : kExitInterrupted;
  print_summary(setup, result, run_dir, threads);
  return 0;
}

}  // namespace

void add_train_command(CLI::App& app, int& exit_code) {
  auto options = std::make_shared<TrainCommandOptions>();
  auto* command = app.add_subcommand(
      "train", "Train a model from a recipe: a teacher language model or an image classifier");
  add_config_options(command, options->config,
                     "training recipe (e.g. configs/recipes/teacher-kjv.json)", "train.lr=1e-3",
                     true);
  command
      ->add_option("-o,--run-dir", options->run_dir,
                   "run directory: config.json, metrics.jsonl, checkpoints/, final/")
      ->required();
  command->add_flag(
      "--resume", options->resume,
      "continue from the newest checkpoint in the run directory (starts fresh if none)");
  command->add_flag("--deterministic", options->deterministic,
                    "one thread and fixed seeds: identical runs give byte-identical weights");
  command
      ->add_option("--stop-at-step", options->stop_at_step,
                   "save a checkpoint at step N and exit 0, as if interrupted")
      ->check(CLI::PositiveNumber);
  command
      ->add_option("--threads", options->threads,
                   "CPU threads (default: the recipe's; 0 = all cores)")
      ->check(CLI::NonNegativeNumber);
  command->add_option("--device", options->device,
                      "cpu, or cuda where LibTorch was built with CUDA (default: the recipe's)")
      ->check(CLI::IsMember({"cpu", "cuda"}));
  command->add_option("--data-cache", options->data_cache,
                      "where prepared data is cached (default: $EDGEDISTILL_CACHE_DIR or "
                      "~/.cache/edgedistill)");
  command->callback([options, &exit_code] { exit_code = run_train(*options); });
}

}  // namespace edgedistill::cli
