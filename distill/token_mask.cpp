#include "distill/token_mask.h"

#include "core/error.h"

namespace edgedistill::distill {

torch::Tensor token_weights(const torch::Tensor& mask, int64_t batch, int64_t length,
                            const torch::TensorOptions& options) {
  if (!mask.defined()) return torch::ones({batch, length}, options);
  ED_CHECK(mask.numel() == batch * length, "mask ", mask.sizes(), " does not cover [", batch, ", ",
           length, "] tokens");
  return mask.reshape({batch, length}).to(options);
}

torch::Tensor masked_token_mean(const torch::Tensor& values, const torch::Tensor& mask) {
  ED_CHECK(values.dim() == 2, "per-token values must be [batch, length], got ", values.sizes());
  const auto weights = token_weights(mask, values.size(0), values.size(1), values.options());
  return (values * weights).sum() / weights.sum().clamp_min(1.0);
}

}  // namespace edgedistill::distill
