// Fixtures of the distillation tests: a tiny trained teacher, a tiny student recipe distilling from
// it, and a helper running a prepared distillation through the training loop.
#pragma once

#include <filesystem>
#include <functional>
#include <string>

#include "core/config.h"
#include "distill/distill_task.h"
#include "test_util.h"
#include "tiny_recipe.h"
#include "torch_catch.h"
#include "train/setup.h"
#include "train/trainer.h"

namespace edgedistill::distill {

namespace fs = std::filesystem;

// d loss / d x by central differences, one element at a time (x float64: with h = 1e-6 the error
// is truncation O(h^2) plus rounding O(eps / h), ~1e-10).
inline torch::Tensor central_differences(
    const std::function<torch::Tensor(const torch::Tensor&)>& loss, const torch::Tensor& x,
    double h = 1e-6) {
  auto numeric = torch::zeros_like(x);
  for (int64_t i = 0; i < x.numel(); ++i) {
    auto plus = x.clone(), minus = x.clone();
    plus.view(-1)[i] += h;
    minus.view(-1)[i] -= h;
    numeric.view(-1)[i] = (loss(plus).item<double>() - loss(minus).item<double>()) / (2 * h);
  }
  return numeric;
}

// Trains the tiny teacher once for the end-to-end tests (in a directory of its own that lives as
// long as the test process).
inline fs::path tiny_teacher() {
  static test::TempDir dir_holder;
  static fs::path trained;
  const fs::path& dir = dir_holder.path();
  if (trained.empty()) {
    auto recipe = test::tiny_recipe(dir);
    auto setup = train::prepare_training(recipe, dir / "cache");
    train::TrainOptions options;
    options.run_dir = dir / "teacher";
    REQUIRE(train::run_training(recipe.train, core::to_json(setup.recipe), *setup.task, options)
                .finished);
    trained = dir / "teacher";
  }
  return trained;
}

inline DistillRecipe tiny_distill_recipe(const fs::path& dir, const fs::path& teacher) {
  DistillRecipe recipe;
  recipe.base = test::tiny_recipe(dir);
  recipe.base.name = "tiny-student";
  recipe.base.model.llama.dim = 32;
  recipe.base.model.llama.n_heads = 1;
  recipe.base.model.llama.ffn_dim = 64;
  recipe.base.model.llama.n_layers = 1;
  recipe.base.train.steps = 60;
  recipe.base.train.optimizer.lr = 1e-2;
  recipe.teacher = teacher;
  recipe.distill.losses[0].kind = "forward_kl";
  return recipe;
}

// Runs a prepared distillation through the training loop into `run_dir`.
inline train::TrainResult train_distill(DistillSetup& setup, const fs::path& run_dir,
                                        int64_t stop_at_step = 0, bool resume = false) {
  train::TrainOptions options;
  options.run_dir = run_dir;
  options.stop_at_step = stop_at_step;
  options.resume = resume;
  options.seed = static_cast<uint64_t>(setup.recipe.base.seed);
  return train::run_training(setup.recipe.base.train, core::to_json(setup.recipe), *setup.task,
                             options);
}

}  // namespace edgedistill::distill
