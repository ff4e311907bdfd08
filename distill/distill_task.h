// Distillation as a training task: the student learns from the teacher (live, or its top-k cache)
// through the loop of src/train, with the recipe's weighted loss terms.
#pragma once

#include <filesystem>
#include <memory>

#include "data/idx.h"
#include "data/prepared_data.h"
#include "data/tokenizer.h"
#include "distill/distill_config.h"
#include "distill/distill_loss.h"
#include "distill/teacher.h"
#include "distill/teacher_cache.h"
#include "distill/teacher_queries.h"
#include "train/distributed.h"
#include "train/image_classifier_task.h"
#include "train/language_model_task.h"

namespace edgedistill::distill {

class LanguageModelDistillTask : public train::TrainingTask {
 public:
  // `teacher` and `cache` may each be null (not both when a term needs the teacher);
  // `teacher_tokenizer` is the teacher's tokenizer when it differs from the data's (a uld recipe),
  // else null. `data`, `teacher`, `cache` and `teacher_tokenizer` must outlive the task.
  LanguageModelDistillTask(model::LlamaModel student, const data::PreparedData& data,
                           const DistillRecipe& recipe, torch::Device device,
                           const Teacher* teacher, const TeacherCache* cache,
                           const data::Tokenizer* teacher_tokenizer = nullptr);

  torch::nn::Module& model() override { return base_.model(); }
  train::MicroBatchLoss next_micro_batch_loss() override;
  // The student's loss and perplexity, plus the teacher's perplexity and the forward KL from
  // teacher to student (T = 1) when the teacher is live and shares the student's tokenizer.
  std::vector<train::Metric> evaluate(const std::string& split) override;
  std::string headline_metric() const override { return "valid_ppl"; }
  std::string item_unit() const override { return "tok"; }
  void shard_data(int rank, int world_size) override { base_.shard_data(rank, world_size); }
  nlohmann::json data_cursor() const override { return base_.data_cursor(); }
  void restore_data_cursor(const nlohmann::json& cursor) override {
    base_.restore_data_cursor(cursor);
  }
  model::CheckpointMeta checkpoint_meta(int64_t step) const override {
    return base_.checkpoint_meta(step);
  }
  torch::nn::Module* auxiliary() override { return loss_.modules(); }
  // A pruned student's masks (see train::TrainingTask::masks).
  const model::WeightMasks& masks() const override { return masks_; }
  void set_masks(model::WeightMasks masks) { masks_ = std::move(masks); }

  // Layer dropping's keep ratio, the learned query policy's rounds, layer removal.
  void begin_step(int64_t step) override;
  StepEvent end_step(int64_t done) override;
  nlohmann::json state() const override;
  void restore_state(const nlohmann::json& state) override;
  // Data parallel: the teacher's tokens and FLOPs, the blocks run and the queried items become
  // totals over the ranks (so result.json reports the run, and the query budget is global).
  void synchronize(train::ProcessGroup& group) override;
  // Teacher tokens and FLOPs spent (and what running it on every item would have cost), the
  // blocks run under layer dropping, the query statistics.
  std::vector<train::Metric> summary() const override;

 private:
  // The teacher sees only the queried items (distill.queries) of the batch; the rest train on
  // hard labels or the cache.
  train::MicroBatchLoss queried_loss(const torch::Tensor& inputs, const torch::Tensor& targets,
                                     const model::ForwardOutput& student_out,
                                     const std::vector<int64_t>& starts, uint64_t draw);
  torch::Tensor choose_items(const torch::Tensor& inputs, const model::ForwardOutput& student_out,
                             int64_t window, uint64_t draw);
  // The named policies' item scores [B, I] for a batch of `inputs` [B, T].
  std::map<std::string, torch::Tensor> item_scores(const std::vector<std::string>& policies,
                                                   const torch::Tensor& inputs,
                                                   const torch::Tensor& student_logits,
                                                   int64_t window, uint64_t draw);
  // At a valid evaluation: each of `probe_items` training items' gain from asking the teacher,
  // the first-order decrease of the held-out loss from a step on the item's distillation loss
  // instead of its hard labels, grad L_held_out . grad (loss_asked - loss_skipped), and its rank
  // correlation with the policy's selection strength and with the entropy and margin scores.
  std::vector<train::Metric> query_gain_probe(const std::string& split);
  std::vector<double> removal_scores();
  const std::vector<torch::Tensor>& held_out_batches();
  // Runs the teacher for the uld terms and puts its logits, paired with student positions, into
  // `batch`: on the student's own windows when the tokenizers agree, else on each window's text
  // re-encoded with the teacher's tokenizer (distill/tokenizer_alignment.h).
  void add_aligned_teacher(const torch::Tensor& inputs, DistillBatch& batch);
  // Adds the teacher work done for a micro-batch of [rows, length] tokens beside what running the
  // teacher on all of it would have cost.
  void count_teacher(int64_t tokens, double flops, int64_t rows, int64_t length);
  // The cached teacher for the batch's windows (only `rows` of the flattened positions when
  // defined), on the device.
  TopKDistribution cached_teacher(const std::vector<int64_t>& starts, int64_t seq_len,
                                  const torch::Tensor& rows) const;

  train::LanguageModelTask base_;
  model::LlamaModel student_;
  model::WeightMasks masks_;
  const Teacher* teacher_;
  const TeacherCache* cache_;
  const data::Tokenizer* teacher_tokenizer_;  // null: the data's tokenizer
  int64_t teacher_context_ = 0;               // teacher tokens per re-encoded window, at most
  DistillLoss loss_;
  bool run_teacher_;  // the live teacher runs on training batches
  torch::Device device_;
  std::map<std::string, double> teacher_ppl_;  // per split, computed once
  uint64_t seed_;
  int grad_accum_;
  LayerDropConfig layer_drop_;
  LayerRemovalConfig removal_;
  QueryConfig query_config_;
  std::unique_ptr<TeacherQueries> queries_;
  int64_t step_ = 0;
  int micro_ = 0;             // micro-batch within the step
  double theta_ = 1.0;        // layer dropping's keep ratio at this step
  std::vector<int> removed_;  // blocks removed so far, each as numbered when it went
  std::vector<torch::Tensor> held_out_;
  // Totals for the summary.
  int64_t teacher_tokens_ = 0, teacher_tokens_full_ = 0;
  double teacher_flops_ = 0, teacher_flops_full_ = 0;
  int64_t blocks_run_ = 0, block_slots_ = 0;
  std::vector<double> counters() const;  // what synchronize() sums, in its order
  train::SummedCounters summed_;
};

class ImageDistillTask : public train::TrainingTask {
 public:
  ImageDistillTask(model::MlpClassifier student, const data::ImageSplits& splits,
                   const DistillRecipe& recipe, torch::Device device, const Teacher& teacher);

  torch::nn::Module& model() override { return base_.model(); }
  train::MicroBatchLoss next_micro_batch_loss() override;
  std::vector<train::Metric> evaluate(const std::string& split) override {
    return base_.evaluate(split);
  }
  std::string headline_metric() const override { return "valid_accuracy"; }
  std::string item_unit() const override { return "img"; }
  void shard_data(int rank, int world_size) override { base_.shard_data(rank, world_size); }
  nlohmann::json data_cursor() const override { return base_.data_cursor(); }
  void restore_data_cursor(const nlohmann::json& cursor) override {
    base_.restore_data_cursor(cursor);
  }
  model::CheckpointMeta checkpoint_meta(int64_t step) const override {
    return base_.checkpoint_meta(step);
  }

 private:
  train::ImageClassifierTask base_;
  const Teacher& teacher_;
  DistillLoss loss_;
};

// Everything a distillation run needs, built from the recipe.
struct DistillSetup {
  DistillRecipe recipe;  // vocabulary resolved, teacher paths absolute
  std::unique_ptr<Teacher> teacher;
  std::unique_ptr<TeacherCache> cache;
  std::unique_ptr<data::Tokenizer> teacher_tokenizer;  // when it differs from the data's (uld)
  std::unique_ptr<data::PreparedData> text_data;
  std::unique_ptr<data::ImageSplits> images;
  std::unique_ptr<train::TrainingTask> task;
  torch::Device device = torch::kCPU;
};

// Checks the teacher sources against the recipe and the data (clear InputErrors: no teacher, a
// cache where the live teacher is needed, another tokenizer without a uld term naming both
// tokenizers, a cache for other data), prepares or
// reuses the data under `cache_root`, builds the student (seeded by recipe.seed; from the teacher's
// blocks when student.init says so) and the task.
DistillSetup prepare_distillation(DistillRecipe recipe, const std::filesystem::path& cache_root);

// Mean forward KL(teacher || student) at T = 1 per token over the evaluation windows of `shard`
// (the first `max_tokens` targets; 0: all). Returns {KL in nats, tokens}.
std::pair<double, int64_t> teacher_student_kl(model::LlamaModelImpl& student,
                                              model::LlamaModelImpl& teacher,
                                              const data::TokenShard& shard, int64_t seq_len,
                                              int64_t batch_size, int64_t max_tokens,
                                              torch::Device device);

}  // namespace edgedistill::distill
