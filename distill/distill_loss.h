// The distillation loss of a recipe: its weighted terms evaluated on one micro-batch, each term's
// value kept for metrics.jsonl. Owns the terms' learned modules (projections, contrastive heads),
// which train with the student and are dropped at export.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "distill/distill_config.h"
#include "distill/top_k.h"
#include "model/llama.h"
#include "model/model_config.h"
#include "train/task.h"

namespace edgedistill::distill {

// What one micro-batch offers the loss. Logits are flattened to [N, V]; the forward outputs carry
// hidden states and q/k/v when the options asked for them.
struct DistillBatch {
  torch::Tensor student_logits;                     // [N, V], differentiable
  torch::Tensor targets;                            // [N] hard labels
  torch::Tensor mask;                               // [N] rows that count, or undefined for all
  torch::Tensor teacher_logits;                     // [N, V] dense teacher, or undefined
  const TopKDistribution* teacher_top_k = nullptr;  // cached teacher, when no dense logits
  const model::ForwardOutput* student = nullptr;    // llama outputs (representation terms)
  const model::ForwardOutput* teacher = nullptr;
  // uld: the teacher's logits over its own vocabulary [M, V_t] at the M positions paired with
  // student rows `aligned_rows` [M] (distill/tokenizer_alignment.h); undefined aligned_rows: one
  // teacher row per student row (the same tokenizer).
  torch::Tensor aligned_teacher_logits;
  torch::Tensor aligned_rows;
};

class DistillLoss {
 public:
  // `teacher` is the teacher's model config (for widths and depth); llama terms need both configs.
  DistillLoss(const std::vector<LossTerm>& terms, const model::ModelConfig& student,
              const model::ModelConfig& teacher);

  // The learned modules of the terms, or null when no term learns anything.
  torch::nn::Module* modules() { return has_modules_ ? modules_.get() : nullptr; }
  // What each model's forward pass must capture for these terms.
  model::ForwardOptions student_options() const { return student_options_; }
  model::ForwardOptions teacher_options() const { return teacher_options_; }
  bool needs_teacher_logits() const { return needs_teacher_logits_; }
  // Whether a term (uld) reads DistillBatch::aligned_teacher_logits.
  bool needs_aligned_teacher() const { return needs_aligned_teacher_; }

  // The weighted sum and each term on its own ("loss_<kind>", unweighted).
  train::MicroBatchLoss compute(const DistillBatch& batch) const;

 private:
  struct Term {
    LossTerm config;
    std::string name;
    std::shared_ptr<torch::nn::Module> module;  // hidden / contrastive
    int student_layer = 0, teacher_layer = 0, relation_heads = 0;
  };
  std::vector<Term> terms_;
  std::shared_ptr<torch::nn::Module> modules_ = std::make_shared<torch::nn::Module>();
  bool has_modules_ = false;
  model::ForwardOptions student_options_, teacher_options_;
  bool needs_teacher_logits_ = false;
  bool needs_aligned_teacher_ = false;
};

}  // namespace edgedistill::distill
