// Training and evaluation windows over a token shard.
#pragma once

#include <torch/torch.h>

#include <cstdint>

#include <nlohmann/json.hpp>

#include "data/token_shard.h"

namespace edgedistill::train {

// Windows of `length` = seq_len + 1 tokens (inputs plus the shifted targets), `seq_len` apart.
// Each epoch starts at an offset in [0, seq_len) and visits the windows in a permuted order, both
// derived from (seed, epoch) alone, so the cursor {epoch, index} fully describes the position and
// resuming replays exactly the batches an uninterrupted run would have drawn. With `aligned`, every
// epoch uses offset 0: the windows are then exactly those a teacher cache covers.
class TokenWindows {
 public:
  TokenWindows(const data::TokenShard& shard, int64_t seq_len, uint64_t seed, bool aligned = false);

  // [rows, seq_len + 1] int64 on the CPU; advances the cursor, rolling over to the next epoch.
  // `starts`, when given, receives each row's first shard position.
  torch::Tensor next(int64_t rows, std::vector<int64_t>* starts = nullptr);

  // Data parallel: each next(rows) draws the global batch of rows * world_size windows and
  // returns rank's rows [rank * rows, (rank + 1) * rows) of it, so the ranks together see what
  // one process drawing rows * world_size would, and the cursor stays a position in that one
  // stream (a run resumes with any world size).
  void set_shard(int rank, int world_size);

  nlohmann::json cursor() const;
  void restore(const nlohmann::json& cursor);
  int64_t epoch() const { return epoch_; }
  int64_t windows_per_epoch() const { return static_cast<int64_t>(order_.size()); }

 private:
  void start_epoch(int64_t epoch);

  const data::TokenShard& shard_;
  int64_t seq_len_;
  uint64_t seed_;
  bool aligned_;
  int rank_ = 0;
  int world_size_ = 1;
  int64_t epoch_ = -1;
  int64_t index_ = 0;
  int64_t offset_ = 0;
  std::vector<int64_t> order_;
};

// The evaluation windows: sequential, non-overlapping targets, from the start of the shard.
// Returns how many windows of seq_len + 1 tokens cover at most `max_tokens` targets (0: all).
int64_t evaluation_window_count(const data::TokenShard& shard, int64_t seq_len, int64_t max_tokens);
// Windows [first, first + rows) of that sequence as [rows, seq_len + 1] int64.
torch::Tensor evaluation_windows(const data::TokenShard& shard, int64_t seq_len, int64_t first,
                                 int64_t rows);

}  // namespace edgedistill::train
