// Next-token sampling from logits: greedy, or temperature with top-k and top-p (nucleus)
// filtering, from a seeded generator so a run repeats exactly.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "core/rng.h"

namespace edgedistill::runtime {

struct SamplerOptions {
  float temperature = 0.0f;  // 0: greedy (argmax)
  int top_k = 40;            // 0: no top-k cut
  float top_p = 0.95f;       // 1: no nucleus cut
  uint64_t seed = 1234;
};

class Sampler {
 public:
  explicit Sampler(const SamplerOptions& options);
  // Chooses a token from logits [vocab]. Greedy breaks ties at the lowest id. With temperature:
  // softmax(logits / T), keep the top_k most probable, then the smallest prefix (by descending
  // probability) whose mass reaches top_p, renormalise and draw.
  int32_t sample(const float* logits, int32_t vocab);

 private:
  SamplerOptions options_;
  core::Rng rng_;
  std::vector<std::pair<float, int32_t>> candidates_;  // reused between calls
};

}  // namespace edgedistill::runtime
