// Progressive layer dropping (Zhang & He 2020, arXiv:2010.13369; docs/distillation.md):
// the keep schedule and the per-step draw of which student blocks run.
#pragma once

#include <cstdint>
#include <vector>

#include "distill/distill_config.h"

namespace edgedistill::distill {

// theta(t) = (1 - theta_bar) exp(-gamma t) + theta_bar at optimizer step t (0-based).
double keep_ratio(const LayerDropConfig& config, int64_t step);

// p_l = 1 - (l / L)(1 - theta) for block l = block + 1 of L: the first block keeps most often, the
// last with probability theta.
double keep_probability(double theta, int block, int layers);

// One draw for a forward pass: per block 0 (dropped) or 1 / p_l (kept, its residual branch
// scaled so that its expected output is the full block's). Counter-based: the same (seed, draw)
// always gives the same blocks, so a resumed run draws what the uninterrupted one drew.
std::vector<double> draw_block_scales(double theta, int layers, uint64_t seed, uint64_t draw);

}  // namespace edgedistill::distill
