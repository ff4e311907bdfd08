// Helpers for passes that run a model over many rows at once (calibration, pruning statistics,
// layer removal): chunked evaluation without gradients, and a block's influence on the residual
// stream.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <functional>

namespace edgedistill::model {

// Runs fn over x [N, ...] in chunks of `chunk` along dim 0 without gradients and concatenates.
torch::Tensor map_chunks(const torch::Tensor& x, int64_t chunk,
                         const std::function<torch::Tensor(const torch::Tensor&)>& fn);
// The same, for work that returns nothing (accumulating statistics).
void for_chunks(const torch::Tensor& x, int64_t chunk,
                const std::function<void(const torch::Tensor&)>& fn);

// The sum over tokens of 1 - cos(x_in, x_out) (each [..., dim]; float64): a block's influence
// before the mean, from its input and output hidden states.
double influence_sum(const torch::Tensor& x_in, const torch::Tensor& x_out);

}  // namespace edgedistill::model
