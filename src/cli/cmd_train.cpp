// edgedistill train: train a model from a recipe (a teacher language model, or a classifier).
#include <filesystem>

#include "cli/commands.h"
#include "cli/training_run.h"
#include "core/log.h"
#include "train/setup.h"
#include "train/trainer.h"

namespace edgedistill::cli {
namespace {

namespace fs = std::filesystem;

}  // namespace

int run_train(const RunCommandOptions& options) {
  const auto recipe =
      core::load_config<train::TrainRecipe>(options.config.file, options.overrides());
  const auto group = join_process_group();
  const int threads = train::configure_threads(recipe.threads, options.deterministic,
                                               group ? group->env().local_world_size : 1);
  const fs::path run_dir = fs::absolute(options.run_dir);

  auto setup = prepare_on_main_first(
      group.get(), [&] { return train::prepare_training(recipe, options.cache_root()); });
  core::info("training '", setup.recipe.name, "' in ", run_dir.string(), " on ", threads,
             threads == 1 ? " thread" : " threads",
             options.deterministic ? " (deterministic)" : "");
  if (group) describe_data_parallel(*group, setup.recipe.train, threads);
  write_run_record(run_dir, "train", setup.text_data.get(), threads, options, group.get());

  train::TrainOptions train_options;
  train_options.run_dir = run_dir;
  train_options.resume = options.resume;
  train_options.stop_at_step = options.stop_at_step;
  train_options.seed = static_cast<uint64_t>(setup.recipe.seed);
  train_options.config_defaults = core::to_json(train::TrainRecipe{});
  train_options.group = group.get();
  const auto result = train::run_training(setup.recipe.train, core::to_json(setup.recipe),
                                          *setup.task, train_options);
  if (result.interrupted) return exit_code_of(result, options);
  if (group && !group->is_main()) return 0;
  print_run_summary(setup.recipe.name, *setup.task, setup.text_data.get(), result, run_dir,
                    threads);
  return 0;
}

void add_train_command(CLI::App& app, int& exit_code) {
  auto options = std::make_shared<RunCommandOptions>();
  auto* command = app.add_subcommand(
      "train", "Train a model from a recipe: a teacher language model or an image classifier");
  add_run_options(command, *options, "training recipe (e.g. configs/recipes/teacher-kjv.json)",
                  "train.lr=1e-3");
  command->callback([options, &exit_code] { exit_code = run_train(*options); });
}

}  // namespace edgedistill::cli
