// Next-token prediction on a prepared text dataset's token shards.
#pragma once

#include <functional>
#include <memory>

#include "data/prepared_data.h"
#include "model/llama.h"
#include "train/task.h"
#include "train/token_windows.h"
#include "train/train_config.h"

namespace edgedistill::train {

class LanguageModelTask : public TrainingTask {
 public:
  // `data` must outlive the task. `aligned_windows`: training windows at offset 0 in every epoch
  // (those a teacher cache covers; see TokenWindows).
  LanguageModelTask(model::LlamaModel model, const data::PreparedData& data,
                    const TrainRecipe& recipe, torch::Device device, bool aligned_windows = false);

  torch::nn::Module& model() override { return *model_; }
  MicroBatchLoss next_micro_batch_loss() override;
  std::vector<Metric> evaluate(const std::string& split) override;
  std::string headline_metric() const override { return "valid_ppl"; }
  std::string item_unit() const override { return "tok"; }
  void shard_data(int rank, int world_size) override { windows_.set_shard(rank, world_size); }
  nlohmann::json data_cursor() const override { return windows_.cursor(); }
  void restore_data_cursor(const nlohmann::json& cursor) override { windows_.restore(cursor); }
  model::CheckpointMeta checkpoint_meta(int64_t step) const override;

  const model::LlamaModel& llama() const { return model_; }
  // The next training batch [B, seq_len + 1] on the device (advancing the data cursor); `starts`
  // receives each window's first position in the train shard.
  torch::Tensor next_batch(std::vector<int64_t>* starts = nullptr);
  int64_t batch_size() const { return batch_size_; }
  int64_t seq_len() const { return seq_len_; }
  int64_t eval_tokens() const { return eval_tokens_; }
  const data::TokenShard& shard(const std::string& split) const;
  const data::PreparedData& data() const { return data_; }

 private:
  model::LlamaModel model_;
  const data::PreparedData& data_;
  model::ModelConfig model_config_;
  int64_t batch_size_, seq_len_, eval_tokens_;
  torch::Device device_;
  data::TokenShard train_shard_, valid_shard_, test_shard_;
  TokenWindows windows_;
};

// The token-weighted mean of `per_token(batch)` over the evaluation windows of `shard` (the first
// `max_tokens` targets; 0: all), in batches of `batch_size` windows [rows, seq_len + 1] on
// `device`, under NoGradGuard. `per_token` returns a batch's mean per target token. Returns {mean,
// tokens}.
std::pair<double, int64_t> evaluation_mean(
    const data::TokenShard& shard, int64_t seq_len, int64_t batch_size, int64_t max_tokens,
    torch::Device device, const std::function<torch::Tensor(const torch::Tensor&)>& per_token);

// Mean next-token cross entropy of `model` over the first `max_tokens` targets of `shard`
// (0: all), in batches of `batch_size` windows. Returns {mean loss in nats, tokens scored}.
std::pair<double, int64_t> language_model_loss(model::LlamaModelImpl& model,
                                               const data::TokenShard& shard, int64_t seq_len,
                                               int64_t batch_size, int64_t max_tokens,
                                               torch::Device device);

}  // namespace edgedistill::train
