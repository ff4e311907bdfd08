// edgedistill distill: train a student from a teacher (live, or its top-k cache) with the
// recipe's weighted loss terms.
#include <filesystem>

#include "cli/commands.h"
#include "cli/training_run.h"
#include "core/error.h"
#include "core/log.h"
#include "data/tokenizer.h"
#include "distill/distill_task.h"
#include "train/setup.h"
#include "train/trainer.h"

namespace edgedistill::cli {
namespace {

namespace fs = std::filesystem;

}  // namespace

int run_distill(const DistillCommandOptions& options) {
  auto overrides = options.run.overrides();
  if (!options.teacher.empty()) {
    overrides.push_back(str("teacher=", fs::absolute(options.teacher).string()));
  }
  if (!options.teacher_cache.empty()) {
    overrides.push_back(str("teacher_cache=", fs::absolute(options.teacher_cache).string()));
  }
  if (!options.student.empty()) {
    overrides.push_back("student.init=checkpoint");
    overrides.push_back(str("student.from=", fs::absolute(options.student).string()));
  }
  auto recipe = core::load_config<distill::DistillRecipe>(options.run.config.file, overrides);
  // A teacher trained on a pretrained tokenizer (an imported model, or data prepared with
  // --tokenizer) passes it on: the student's corpus is prepared with the teacher's tokenizer
  // unless the recipe or --tokenizer names one, or a uld term distils across tokenizers (the
  // recipe's data section is then the student's own tokenizer).
  if (!recipe.teacher.empty() && recipe.base.data.kind == "text" &&
      recipe.base.data.tokenizer.from.empty() && !recipe.distills_across_tokenizers()) {
    const auto teacher_tokenizer = data::open_tokenizer(recipe.teacher);
    if (teacher_tokenizer->kind() == "pretrained") {
      core::info("distill: the student's data uses the teacher's tokenizer, ",
                 teacher_tokenizer->description());
      overrides.push_back(str("data.tokenizer.from=", recipe.teacher.string()));
      recipe = core::load_config<distill::DistillRecipe>(options.run.config.file, overrides);
    }
  }
  const auto group = join_process_group();
  const int threads = train::configure_threads(recipe.base.threads, options.run.deterministic,
                                               group ? group->env().local_world_size : 1);
  const fs::path run_dir = fs::absolute(options.run.run_dir);

  auto setup = prepare_on_main_first(
      group.get(), [&] { return distill::prepare_distillation(recipe, options.run.cache_root()); });
  const auto& name = setup.recipe.base.name;
  std::string source = "no teacher";
  if (setup.teacher) source = "teacher " + setup.teacher->dir.string();
  if (setup.cache) {
    source += (setup.teacher ? " and cache " : "cache ") + setup.recipe.teacher_cache.string();
  }
  core::info("distilling '", name, "' from ", source, " in ", run_dir.string(), " on ", threads,
             threads == 1 ? " thread" : " threads",
             options.run.deterministic ? " (deterministic)" : "");
  nlohmann::ordered_json extra;
  if (setup.teacher) {
    extra["teacher_dir"] = setup.teacher->dir.string();
    extra["teacher_weights_sha256"] = setup.teacher->weights_sha256;
  }
  if (setup.cache) extra["teacher_cache"] = setup.recipe.teacher_cache.string();
  if (group) describe_data_parallel(*group, setup.recipe.base.train, threads);
  write_run_record(run_dir, "distill", setup.text_data.get(), threads, options.run, group.get(),
                   extra);

  train::TrainOptions train_options;
  train_options.run_dir = run_dir;
  train_options.resume = options.run.resume;
  train_options.stop_at_step = options.run.stop_at_step;
  train_options.seed = static_cast<uint64_t>(setup.recipe.base.seed);
  train_options.config_defaults = core::to_json(distill::DistillRecipe{});
  train_options.group = group.get();
  const auto result = train::run_training(setup.recipe.base.train, core::to_json(setup.recipe),
                                          *setup.task, train_options);
  if (result.interrupted) return exit_code_of(result, options.run);
  if (group && !group->is_main()) return 0;
  print_run_summary(name, *setup.task, setup.text_data.get(), result, run_dir, threads);
  const double teacher_ppl = final_metric(result, "valid_teacher_ppl");
  if (!std::isnan(teacher_ppl)) {
    std::printf("  teacher: valid perplexity %.2f; KL(teacher || student) %.4f nats/token\n",
                teacher_ppl, final_metric(result, "valid_teacher_kl"));
  }
  return 0;
}

void add_distill_command(CLI::App& app, int& exit_code) {
  auto options = std::make_shared<DistillCommandOptions>();
  auto* command = app.add_subcommand(
      "distill",
      "Train a student from a teacher with weighted distillation losses (forward/reverse KL, JSD, "
      "skew KL, hidden states, attention relations, contrastive)");
  add_run_options(command, options->run,
                  "distillation recipe (e.g. configs/recipes/distill-kjv.json)",
                  "distill.losses[0].temperature=2");
  command->add_option("-t,--teacher", options->teacher,
                      "the teacher: a checkpoint directory, a finished run directory (e.g. "
                      "runs/quickstart/teacher), a Hugging Face folder or a GGUF file");
  command->add_option("--teacher-cache", options->teacher_cache,
                      "a top-k teacher cache from 'edgedistill teacher-cache', used instead of "
                      "running the teacher for the logit terms");
  command->add_option("--student", options->student,
                      "start the student from this checkpoint, run directory, Hugging Face "
                      "folder or GGUF file (e.g. a pruned model to heal, a smaller pretrained "
                      "model); its shape replaces the recipe's model section");
  command->callback([options, &exit_code] { exit_code = run_distill(*options); });
}

}  // namespace edgedistill::cli
