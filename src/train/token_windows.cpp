#include "train/token_windows.h"

#include "core/error.h"
#include "core/rng.h"

namespace edgedistill::train {

TokenWindows::TokenWindows(const data::TokenShard& shard, int64_t seq_len, uint64_t seed,
                           bool aligned)
    : shard_(shard), seq_len_(seq_len), seed_(seed), aligned_(aligned) {
  if (shard.size() < 2 * seq_len + 1) {
    throw InputError(str("token shard '", shard.path().string(), "' has ", shard.size(),
                         " tokens, too few for training windows of ", seq_len,
                         " tokens; lower train.seq_len or use more data"));
  }
  start_epoch(0);
}

void TokenWindows::start_epoch(int64_t epoch) {
  core::Rng rng(core::derive_seed(seed_, static_cast<uint64_t>(epoch)));
  offset_ = static_cast<int64_t>(rng.below(static_cast<uint64_t>(seq_len_)));
  if (aligned_) offset_ = 0;
  const int64_t count = (shard_.size() - offset_ - 1) / seq_len_;
  order_.resize(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) order_[static_cast<size_t>(i)] = i;
  rng.shuffle(order_);
  epoch_ = epoch;
  index_ = 0;
}

torch::Tensor TokenWindows::next(int64_t rows, std::vector<int64_t>* starts) {
  auto batch = torch::empty({rows, seq_len_ + 1}, torch::kInt64);
  int64_t* out = batch.data_ptr<int64_t>();
  if (starts != nullptr) starts->clear();
  const int64_t mine = rank_ * rows;
  for (int64_t global = 0; global < rows * world_size_; ++global) {
    if (index_ >= windows_per_epoch()) start_epoch(epoch_ + 1);
    const int64_t begin = offset_ + order_[static_cast<size_t>(index_++)] * seq_len_;
    const int64_t row = global - mine;
    if (row < 0 || row >= rows) continue;
    if (starts != nullptr) starts->push_back(begin);
    shard_.read(begin, seq_len_ + 1, out + row * (seq_len_ + 1));
  }
  return batch;
}

void TokenWindows::set_shard(int rank, int world_size) {
  ED_CHECK(world_size >= 1 && rank >= 0 && rank < world_size, "rank ", rank, " of ", world_size);
  rank_ = rank;
  world_size_ = world_size;
}

nlohmann::json TokenWindows::cursor() const {
  return {{"epoch", epoch_}, {"index", index_}};
}

void TokenWindows::restore(const nlohmann::json& cursor) {
  const int64_t epoch = cursor.at("epoch").get<int64_t>();
  const int64_t index = cursor.at("index").get<int64_t>();
  start_epoch(epoch);
  if (index < 0 || index > windows_per_epoch()) {
    throw FileError(str("checkpoint data cursor index ", index, " is outside epoch ", epoch, " (",
                        windows_per_epoch(), " windows); the checkpoint belongs to other data"));
  }
  index_ = index;
}

int64_t evaluation_window_count(const data::TokenShard& shard, int64_t seq_len,
                                int64_t max_tokens) {
  const int64_t available = (shard.size() - 1) / seq_len;
  if (max_tokens <= 0) return available;
  return std::min(available, std::max<int64_t>(1, max_tokens / seq_len));
}

torch::Tensor evaluation_windows(const data::TokenShard& shard, int64_t seq_len, int64_t first,
                                 int64_t rows) {
  auto batch = torch::empty({rows, seq_len + 1}, torch::kInt64);
  int64_t* out = batch.data_ptr<int64_t>();
  for (int64_t row = 0; row < rows; ++row) {
    shard.read((first + row) * seq_len, seq_len + 1, out + row * (seq_len + 1));
  }
  return batch;
}

}  // namespace edgedistill::train
