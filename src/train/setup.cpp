#include "train/setup.h"

#include <algorithm>

#include "core/log.h"
#include "core/memory.h"
#include "core/threads.h"
#include "data/prepare.h"
#include "model/checkpoint.h"
#include "train/image_classifier_task.h"
#include "train/language_model_task.h"

namespace edgedistill::train {

int configure_threads(int requested, bool deterministic, int local_ranks) {
  int threads = deterministic ? 1 : core::resolve_thread_count(requested);
  if (!deterministic && requested == 0 && local_ranks > 1) {
    threads = std::max(1, threads / local_ranks);
  }
  torch::set_num_threads(threads);
  if (deterministic) at::globalContext().setDeterministicAlgorithms(true, /*warn_only=*/false);
  core::keep_freed_memory();
  return threads;
}

torch::Device resolve_device(const std::string& name) {
  if (name == "cpu") return torch::kCPU;
  if (name == "cuda") {
    if (!torch::cuda::is_available()) {
      throw InputError(
          "device 'cuda' was requested but this LibTorch has no usable CUDA device (Debian's "
          "libtorch-dev is CPU-only); use --device cpu");
    }
    return torch::kCUDA;
  }
  throw InputError(str("unknown device '", name, "'; use cpu or cuda"));
}

TrainingSetup prepare_training(TrainRecipe recipe, const std::filesystem::path& cache_root) {
  TrainingSetup setup;
  resolve_vocab_size(recipe);
  setup.device = resolve_device(recipe.device);
  torch::manual_seed(static_cast<uint64_t>(recipe.seed));
  auto module = model::build_model(recipe.model);
  module->to(setup.device);
  if (recipe.model.arch == "llama") {
    const auto data_dir = data::ensure_prepared(recipe.data, cache_root);
    setup.text_data = std::make_unique<data::PreparedData>(data_dir);
    setup.task = std::make_unique<LanguageModelTask>(
        model::LlamaModel(std::dynamic_pointer_cast<model::LlamaModelImpl>(module)),
        *setup.text_data, recipe, setup.device);
  } else {
    setup.images = std::make_unique<data::ImageSplits>(data::load_image_splits(recipe.data));
    setup.task = std::make_unique<ImageClassifierTask>(
        model::MlpClassifier(std::dynamic_pointer_cast<model::MlpClassifierImpl>(module)),
        *setup.images, recipe, setup.device);
  }
  setup.recipe = std::move(recipe);
  return setup;
}

}  // namespace edgedistill::train
