// From a recipe to a ready training task: threads, device, data (prepared into the cache when
// missing), vocabulary, model, task.
#pragma once

#include <filesystem>
#include <memory>

#include "data/idx.h"
#include "data/prepared_data.h"
#include "train/task.h"
#include "train/train_config.h"

namespace edgedistill::train {

// Sets LibTorch's intra-op threads (0: all cores) and returns the count used. LibTorch starts with
// one thread on these machines, so every command calls this. `deterministic` forces one thread
// and LibTorch's deterministic algorithms. Also keeps freed memory for reuse (core/memory.h).
// `local_ranks` data-parallel processes on this host share the cores: 0 then means all cores
// divided among them.
int configure_threads(int requested, bool deterministic, int local_ranks = 1);

// "cpu", or "cuda" when this LibTorch was built with CUDA and a device is present (otherwise an
// InputError saying so).
torch::Device resolve_device(const std::string& name);

struct TrainingSetup {
  TrainRecipe recipe;                             // with model.vocab_size resolved
  std::unique_ptr<data::PreparedData> text_data;  // llama models
  std::unique_ptr<data::ImageSplits> images;      // mlp classifiers
  std::unique_ptr<TrainingTask> task;
  torch::Device device = torch::kCPU;
};

// Resolves the vocabulary, prepares or reuses the data under `cache_root`, seeds LibTorch with
// recipe.seed, builds the model and the task.
TrainingSetup prepare_training(TrainRecipe recipe, const std::filesystem::path& cache_root);

}  // namespace edgedistill::train
