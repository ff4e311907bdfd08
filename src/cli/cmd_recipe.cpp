// edgedistill recipe: the whole pipeline from one JSON recipe, for CI jobs and the quickstart
// (cli/pipeline.h; docs/ci.md).
#include <filesystem>
#include <memory>

#include "cli/command.h"
#include "cli/pipeline.h"

namespace edgedistill::cli {

void add_recipe_command(CLI::App& app, int& exit_code) {
  auto options = std::make_shared<PipelineOptions>();
  auto* command = app.add_subcommand(
      "recipe",
      "Run a pipeline recipe: data -> teacher -> distill -> prune -> heal -> quantize -> verify, "
      "skipping stages whose config and inputs are unchanged; writes a GGUF artifact and "
      "artifacts/manifest.json (exit 1 when a gate fails)");
  command
      ->add_option("recipe", options->recipe,
                   "the pipeline recipe (e.g. configs/recipes/quickstart.json)")
      ->required();
  command
      ->add_option("-s,--set", options->overrides,
                   "override a recipe key: --set distill.recipe.train.steps=100 (repeatable; "
                   "'edgedistill config --keys --kind pipeline' lists the keys)")
      ->allow_extra_args(false);
  command->add_option("-o,--run-dir", options->run_dir,
                      "run directory: stages/, teacher/, student/, pruned/, healed/, artifacts/ "
                      "(default: runs/NAME, NAME from the recipe)");
  command->add_option("--data-cache", options->data_cache,
                      "where prepared data is cached (default: $EDGEDISTILL_CACHE_DIR or "
                      "~/.cache/edgedistill)");
  command->add_option("--from", options->from, "rerun this stage and every stage after it")
      ->check(CLI::IsMember(pipeline_stage_names()));
  auto tokenizer = std::make_shared<std::string>();
  command->add_option("--tokenizer", *tokenizer,
                      "prepare the corpus with this tokenizer instead of training one (= --set "
                      "data.tokenizer.from=PATH)");
  command->add_flag("--force", options->force, "rerun every stage");
  command->add_flag("--dry-run", options->dry_run,
                    "print which stages would run and why, without running them");
  command->callback([options, tokenizer, &exit_code] {
    if (!tokenizer->empty()) {
      options->overrides.push_back("data.tokenizer.from=" +
                                   std::filesystem::absolute(*tokenizer).string());
    }
    exit_code = run_pipeline(*options);
  });
}

}  // namespace edgedistill::cli
