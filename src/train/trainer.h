// The training loop: setup from a fresh start or the newest checkpoint, steps of gradient
// accumulation, clipping and AdamW, periodic evaluation and checkpoints, and the final save.
// Every task (language model, classifier, distillation) runs through this one loop.
#pragma once

#include <filesystem>
#include <vector>

#include <nlohmann/json.hpp>

#include "train/distributed.h"
#include "train/task.h"
#include "train/train_config.h"

namespace edgedistill::train {

struct TrainOptions {
  std::filesystem::path run_dir;
  bool resume = false;       // continue from the newest checkpoint in run_dir
  int64_t stop_at_step = 0;  // > 0: save a checkpoint at this step and stop, as if interrupted
  uint64_t seed = 0;         // seeds the torch generator (dropout) on a fresh start
  // The recipe type's built-in defaults as JSON (core::to_json of a default recipe): resuming
  // accepts a key the run's config.json lacks at its default (see require_same_config).
  nlohmann::ordered_json config_defaults;
  // Data parallel: this rank's process group (null: one process). Every rank runs the loop on
  // its slice of each global batch and averages gradients; rank 0 alone writes checkpoints,
  // metrics.jsonl, final/ and result.json. The run directory must be one every rank sees (a
  // resume loads the checkpoint on every rank).
  ProcessGroup* group = nullptr;
};

struct TrainResult {
  int64_t step = 0;                   // optimizer steps completed
  bool finished = false;              // reached train.steps; final/ and result.json written
  bool interrupted = false;           // stopped by SIGINT or --stop-at-step; a checkpoint was saved
  std::vector<Metric> final_metrics;  // valid and test metrics of the final model
  int64_t best_step = 0;              // train.early_stop_patience > 0: the step final/ holds
  bool stopped_early = false;         // early stopping ended the run before train.steps
  double wall_s = 0;
  double items_per_s = 0;  // training throughput over this invocation
  std::filesystem::path final_dir;
  double communication_s = 0;  // data parallel: time in collectives over this invocation
};

// `merged_config` is the whole recipe as used (written to config.json and compared on resume).
TrainResult run_training(const TrainConfig& config, const nlohmann::ordered_json& merged_config,
                         TrainingTask& task, const TrainOptions& options);

}  // namespace edgedistill::train
