#include "distill/layer_drop.h"

#include <cmath>

#include "core/rng.h"

namespace edgedistill::distill {

double keep_ratio(const LayerDropConfig& config, int64_t step) {
  return (1.0 - config.theta_bar) * std::exp(-config.gamma * static_cast<double>(step)) +
         config.theta_bar;
}

double keep_probability(double theta, int block, int layers) {
  return 1.0 - static_cast<double>(block + 1) / static_cast<double>(layers) * (1.0 - theta);
}

std::vector<double> draw_block_scales(double theta, int layers, uint64_t seed, uint64_t draw) {
  const uint64_t stream = core::derive_seed(seed, draw);
  std::vector<double> scales(layers);
  for (int block = 0; block < layers; ++block) {
    const double p = keep_probability(theta, block, layers);
    // 53 random bits -> a uniform double in [0, 1).
    const double u =
        static_cast<double>(core::splitmix64(stream + static_cast<uint64_t>(block)) >> 11) *
        0x1.0p-53;
    scales[block] = u < p ? 1.0 / p : 0.0;
  }
  return scales;
}

}  // namespace edgedistill::distill
