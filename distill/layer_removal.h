// Progressive layer removal: which student block hurts least when deleted, measured on held-out
// batches (docs/distillation.md; ShortGPT arXiv:2403.03853 for block influence).
#pragma once

#include <torch/torch.h>

#include <functional>
#include <vector>

#include "model/llama.h"

namespace edgedistill::distill {

// Per block, its influence 1 - cos(x_in, x_out): the mean over every token of `batches` (each
// [rows, seq_len + 1]; inputs are all but the last column) of one minus the cosine similarity of
// the block's input and output hidden states. A block that leaves its input unchanged scores 0.
std::vector<double> block_influence(model::LlamaModelImpl& model,
                                    const std::vector<torch::Tensor>& batches);

// Per block, how much `loss` rises when that block alone is skipped: loss(scales with a 0 at the
// block) - loss(all ones). `loss(block_scales)` evaluates the model on the held-out data with
// ForwardOptions::block_scales set to its argument.
std::vector<double> skip_loss_increase(
    int layers, const std::function<double(const std::vector<double>& block_scales)>& loss);

}  // namespace edgedistill::distill
