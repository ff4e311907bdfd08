// Calibration data for post-training quantization: token windows drawn from a prepared dataset's
// split (by default the train split of the data the model was trained on) at seeded random
// offsets, so a run is reproducible and the windows never come from the test split it is scored on.
#pragma once

#include <torch/torch.h>

#include <cstdint>

#include "data/token_shard.h"

namespace edgedistill::quant {

// ceil(tokens / context) windows [n, context] (int64) of consecutive tokens from `shard`, their
// starts uniform over the shard and drawn with core::Rng(seed). An InputError when the shard has
// fewer than `context` tokens.
torch::Tensor calibration_windows(const data::TokenShard& shard, int64_t tokens, int64_t context,
                                  uint64_t seed, const std::string& what);

}  // namespace edgedistill::quant
