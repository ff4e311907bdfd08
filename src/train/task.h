// What the training loop trains. The loop (trainer.h) is the same for every task: language
// models, image classifiers, and the distillation driver, which supplies its own loss.
#pragma once

#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "model/checkpoint.h"

namespace edgedistill::train {

class ProcessGroup;  // train/distributed.h

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

  // Data parallel (train/distributed.h): from now on each micro-batch is rank's slice of the
  // global micro-batch of world_size times the batch size, drawn from one stream for all ranks.
  virtual void shard_data(int /*rank*/, int /*world_size*/) {
    throw InputError("this training task cannot run data-parallel; run it as one process");
  }

  virtual nlohmann::json data_cursor() const = 0;
  virtual void restore_data_cursor(const nlohmann::json& cursor) = 0;

  // Provenance written beside the weights (model.json).
  virtual model::CheckpointMeta checkpoint_meta(int64_t step) const = 0;

  // Step hooks for methods that change the model or the data flow as training goes on (layer
  // dropping, layer removal, teacher queries). begin_step runs before the micro-batches of the
  // 0-based step `step`, including the first step after a resume.
  virtual void begin_step(int64_t /*step*/) {}
  // What end_step reports: metrics worth a metrics.jsonl record of their own, a line for the
  // user, and whether the model's parameter set changed (a block removed), in which case the loop
  // rebinds the optimizer, keeping the moments of the parameters that remain.
  struct StepEvent {
    std::vector<Metric> metrics;
    std::string message;
    bool parameters_changed = false;
  };
  // Data parallel: runs on every rank after each step's micro-batches, so that counters each rank
  // keeps on its own slice (teacher tokens, queried items, the query budget's debt) become totals
  // over all ranks before end_step reads them.
  virtual void synchronize(ProcessGroup& /*group*/) {}
  // Runs after optimizer step `done` (1-based) has been taken.
  virtual StepEvent end_step(int64_t /*done*/) { return {}; }
  // State besides the weights, the optimizer and the data cursor that a resume needs (blocks
  // removed so far, online thresholds); null when there is none. restore_state runs before the
  // checkpoint's weights are loaded, since it may change the model's shape.
  virtual nlohmann::json state() const { return nullptr; }
  virtual void restore_state(const nlohmann::json& /*state*/) {}
  // Totals over the run for result.json (e.g. teacher tokens processed).
  virtual std::vector<Metric> summary() const { return {}; }

  // Pruning masks of the model (a student started from a pruned checkpoint): the loop keeps
  // the masked weights and their gradients at zero and saves the masks with every checkpoint.
  virtual const model::WeightMasks& masks() const {
    static const model::WeightMasks none;
    return none;
  }

  // Modules trained with the model but not part of it (a distillation loss's projections and
  // heads): optimised, saved in step checkpoints for --resume, left out of final/. May be null.
  virtual torch::nn::Module* auxiliary() { return nullptr; }
};

}  // namespace edgedistill::train
