#include "train/language_model_task.h"

#include <cmath>

namespace edgedistill::train {

LanguageModelTask::LanguageModelTask(model::LlamaModel model, const data::PreparedData& data,
                                     const TrainRecipe& recipe, torch::Device device,
                                     bool aligned_windows)
    : model_(std::move(model)),
      data_(data),
      model_config_(recipe.model),
      batch_size_(recipe.train.batch_size),
      seq_len_(recipe.train.seq_len),
      eval_tokens_(recipe.train.eval_tokens),
      device_(device),
      train_shard_(data.shard("train")),
      valid_shard_(data.shard("valid")),
      test_shard_(data.shard("test")),
      windows_(train_shard_, recipe.train.seq_len, static_cast<uint64_t>(recipe.seed),
               aligned_windows) {
  // More embedding rows than tokens is a padded vocabulary (pretrained models such as Qwen2.5
  // pad theirs); fewer would leave tokens without a row.
  if (data.tokenizer().vocab_size() > model_->config().vocab_size) {
    throw InputError(str("the model has vocab_size ", model_->config().vocab_size,
                         " but the data's tokenizer has ", data.tokenizer().vocab_size(),
                         " tokens; set model.vocab_size to 0 to take the tokenizer's"));
  }
  for (const auto* shard : {&valid_shard_, &test_shard_}) {
    if (evaluation_window_count(*shard, seq_len_, 0) == 0) {
      throw InputError(str("token shard '", shard->path().string(), "' has ", shard->size(),
                           " tokens, fewer than one evaluation window of ", seq_len_,
                           "; lower train.seq_len or give the split more data"));
    }
  }
}

torch::Tensor LanguageModelTask::next_batch(std::vector<int64_t>* starts) {
  return windows_.next(batch_size_, starts).to(device_);
}

const data::TokenShard& LanguageModelTask::shard(const std::string& split) const {
  if (split == "train") return train_shard_;
  return split == "test" ? test_shard_ : valid_shard_;
}

MicroBatchLoss LanguageModelTask::next_micro_batch_loss() {
  const auto batch = next_batch();
  const auto inputs = batch.narrow(1, 0, seq_len_);
  const auto targets = batch.narrow(1, 1, seq_len_);
  const auto logits = model_->forward(inputs).logits;  // [B, T, V]
  MicroBatchLoss out;
  out.loss = model::cross_entropy(logits.reshape({-1, logits.size(-1)}), targets.reshape({-1}));
  out.items = batch_size_ * seq_len_;
  return out;
}

std::pair<double, int64_t> evaluation_mean(
    const data::TokenShard& shard, int64_t seq_len, int64_t batch_size, int64_t max_tokens,
    torch::Device device, const std::function<torch::Tensor(const torch::Tensor&)>& per_token) {
  torch::NoGradGuard no_grad;
  const int64_t windows = evaluation_window_count(shard, seq_len, max_tokens);
  double total = 0.0;
  int64_t tokens = 0;
  for (int64_t first = 0; first < windows; first += batch_size) {
    const int64_t rows = std::min(batch_size, windows - first);
    const auto batch = evaluation_windows(shard, seq_len, first, rows).to(device);
    total += per_token(batch).item<double>() * static_cast<double>(rows * seq_len);
    tokens += rows * seq_len;
  }
  return {tokens > 0 ? total / static_cast<double>(tokens) : 0.0, tokens};
}

std::pair<double, int64_t> language_model_loss(model::LlamaModelImpl& model,
                                               const data::TokenShard& shard, int64_t seq_len,
                                               int64_t batch_size, int64_t max_tokens,
                                               torch::Device device) {
  const bool was_training = model.is_training();
  model.eval();
  const auto result = evaluation_mean(
      shard, seq_len, batch_size, max_tokens, device, [&](const torch::Tensor& batch) {
        const auto logits = model.forward(batch.narrow(1, 0, seq_len)).logits;
        return model::cross_entropy(logits.reshape({-1, logits.size(-1)}),
                                    batch.narrow(1, 1, seq_len).reshape({-1}));
      });
  if (was_training) model.train();
  return result;
}

std::vector<Metric> LanguageModelTask::evaluate(const std::string& split) {
  const auto [loss, tokens] =
      language_model_loss(*model_, shard(split), seq_len_, batch_size_, eval_tokens_, device_);
  return {{split + "_loss", loss},
          {split + "_ppl", std::exp(loss)},
          {split + "_tokens", static_cast<double>(tokens)}};
}

model::CheckpointMeta LanguageModelTask::checkpoint_meta(int64_t step) const {
  model::CheckpointMeta meta;
  meta.config = model_config_;
  meta.config.llama = model_->config();  // the depth may have changed (layer removal)
  meta.tokenizer_hash = data_.tokenizer().hash();
  meta.data_dir = data_.dir();
  meta.step = step;
  return meta;
}

}  // namespace edgedistill::train
