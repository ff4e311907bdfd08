// A teacher distribution kept as its k most likely tokens plus one tail bucket: what the teacher
// cache stores per position, and what the logit losses accept in place of dense teacher logits.
#pragma once

#include <torch/torch.h>

#include <cstdint>

namespace edgedistill::distill {

struct TopKDistribution {
  torch::Tensor ids;       // [N, k] int64, most likely first
  torch::Tensor logprobs;  // [N, k] float32: log p(id) at temperature 1
  torch::Tensor tail;      // [N] float32: 1 - sum_k p, the mass of the other V - k tokens (>= 0)
  int64_t vocab_size = 0;  // V

  int64_t rows() const { return ids.size(0); }
  int64_t k() const { return ids.size(1); }
};

// The top-k of softmax(logits) per row: logits [N, V] (any float type) -> ids, float32 log-probs
// and the tail mass, computed in float32 (or float64 for float64 logits). Requires 1 <= k <= V.
TopKDistribution top_k_distribution(const torch::Tensor& logits, int64_t k);

}  // namespace edgedistill::distill
