// What the training loop trains. The loop (trainer.h) is the same for every task: language
// models, image classifiers, and the distillation driver, which supplies its own loss.
#pragma once

#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/checkpoint.h"

namespace edgedistill::train {

// A named scalar for metrics.jsonl and the progress line.
using Metric = std::pair<std::string, double>;

struct MicroBatchLoss {
  torch::Tensor loss;         // scalar, differentiable, averaged over the micro-batch
  int64_t items = 0;          // tokens (language models) or examples (classifiers)
  std::vector<Metric> terms;  // extra terms to log on their own (e.g. each distill loss)
};

class TrainingTask {
 public:
  virtual ~TrainingTask() = default;

  virtual torch::nn::Module& model() = 0;
  // Draws the next micro-batch (advancing the data cursor) and computes its loss.
  virtual MicroBatchLoss next_micro_batch_loss() = 0;
  // Evaluates on "valid" or "test" without touching the data cursor or any random state. Returns
  // metrics named <split>_<metric>, e.g. valid_loss, valid_ppl or valid_accuracy.
  virtual std::vector<Metric> evaluate(const std::string& split) = 0;
  // The metric a user reads first ("valid_ppl", "valid_accuracy").
  virtual std::string headline_metric() const = 0;
  // "tokens" or "examples", for rates.
  virtual std::string item_unit() const = 0;

  virtual nlohmann::json data_cursor() const = 0;
  virtual void restore_data_cursor(const nlohmann::json& cursor) = 0;

  // Provenance written beside the weights (model.json).
  virtual model::CheckpointMeta checkpoint_meta(int64_t step) const = 0;

  // Modules trained with the model but not part of it (a distillation loss's projections and
  // heads): optimised, saved in step checkpoints for --resume, left out of final/. May be null.
  virtual torch::nn::Module* auxiliary() { return nullptr; }
};

}  // namespace edgedistill::train
