// Token masks for the representation losses: a [B, T] float or bool tensor of the positions that
// count (its [B * T] flattening is accepted too), or an undefined tensor meaning all of them.
#pragma once

#include <torch/torch.h>

#include <cstdint>

namespace edgedistill::distill {

// The mask as [batch, length] weights with `options`' dtype and device (ones when undefined).
torch::Tensor token_weights(const torch::Tensor& mask, int64_t batch, int64_t length,
                            const torch::TensorOptions& options);

// The mean of per-token values [B, T] over the tokens that count: sum(values * w) / max(sum w, 1),
// so 0 when none counts. Stays on the device (no host synchronisation).
torch::Tensor masked_token_mean(const torch::Tensor& values, const torch::Tensor& mask);

}  // namespace edgedistill::distill
