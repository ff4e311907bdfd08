// Structured pruning that really shrinks a llama model (Minitron, arXiv:2407.14679): whole
// grouped-query attention groups, FFN channels and whole blocks are removed, ranked by what they
// do on calibration data, and the result is an ordinary smaller llama model (fewer kv groups and
// heads of the same width, a narrower FFN, fewer blocks) that exports to GGUF like any other.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "model/llama.h"
#include "prune/calibration_pass.h"

namespace edgedistill::prune {

struct StructuredOptions {
  // Share of the attention heads to remove. Heads go in whole GQA groups (a kv head with its
  // query heads), the same number in every block, so the share is rounded to whole groups.
  double heads = 0;
  // Share of the FFN channels to remove; the kept width is rounded to a multiple of 32.
  double ffn = 0;
  int layers = 0;  // blocks to remove (those of least block influence)
  // Share of the model's parameters to remove: the FFN width is solved for (the widest multiple of
  // 32 that meets it, with heads and layers as given). Exclusive with `ffn`.
  double params = 0;
};

// What plan_structured keeps, and why.
struct StructuredPlan {
  model::LlamaConfig config;                        // the pruned model's
  std::vector<int> removed_layers;                  // original block indices, ascending
  std::vector<std::vector<int64_t>> kept_groups;    // per original block: kv groups, ascending
  std::vector<std::vector<int64_t>> kept_channels;  // per original block: FFN channels, ascending
  // Per original block: each kv group's importance (the L2 norm over the calibration tokens of
  // its query heads' outputs, summed over the group) and each FFN channel's (the L2 norm of its
  // silu(gate) * up activation).
  std::vector<std::vector<double>> group_importance;
  std::vector<torch::Tensor> channel_importance;
  std::vector<double> influence;  // per original block: 1 - cos(x_in, x_out), mean over tokens
};

// Chooses what to remove from `stats` (calibrate_blocks on the unpruned model: channel sums and
// block influence). InputError when a target cannot be met (every head or layer gone, an FFN
// narrower than 32, a parameter share out of reach).
StructuredPlan plan_structured(const model::LlamaConfig& config,
                               const std::vector<BlockActivations>& stats,
                               const StructuredOptions& options);

// A new model of plan.config holding `model`'s kept weights: the rows and columns of the kept
// heads and channels of the kept blocks, and the embeddings, final norm and head as they are.
model::LlamaModel shrink_model(model::LlamaModelImpl& model, const StructuredPlan& plan);

}  // namespace edgedistill::prune
