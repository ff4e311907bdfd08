// One calibration pass over a llama model, block by block: what each linear layer of each block
// sees of the calibration data, for activation-aware pruning (Wanda's input norms, Minitron's head
// and channel importance, block influence).
#pragma once

#include <torch/torch.h>

#include <functional>
#include <string>
#include <vector>

#include "model/llama.h"

namespace edgedistill::prune {

// Per-channel sums of squares, over every calibration token, of the inputs of one block's linear
// layers (float64). The square root of an entry is that input channel's L2 norm.
struct BlockActivations {
  torch::Tensor attn_in;     // [dim]: the input of attn_q, attn_k, attn_v (attn_norm(x))
  torch::Tensor context;     // [n_heads * head_dim]: the input of attn_output (the merged heads)
  torch::Tensor ffn_in;      // [dim]: the input of ffn_gate, ffn_up (ffn_norm(h))
  torch::Tensor ffn_hidden;  // [ffn_dim]: the input of ffn_down (silu(gate) * up)
  int64_t tokens = 0;
  // The block's influence: the mean over the tokens of 1 - cos(block input, block output), as the
  // block is before its after_block call (distill/layer_removal.h).
  double influence = 0;

  // The statistics of the input of `linear` ("attn_q", ..., "ffn_down").
  const torch::Tensor& input_of(const std::string& linear) const;
};

// Called once block `index`'s statistics are complete; it may change the block's weights.
using AfterBlock = std::function<void(int index, const BlockActivations& stats)>;

// Runs `windows` [n, T] (int64 tokens) through the blocks in order, `chunk` windows at a time. The
// statistics of block b are measured on the outputs of blocks 0 .. b-1 as they are after their
// after_block calls: with a pruning after_block this is sequential pruning, each block calibrated
// on what the already pruned blocks before it produce (as Wanda's reference code does).
std::vector<BlockActivations> calibrate_blocks(model::LlamaModelImpl& model,
                                               const torch::Tensor& windows, int64_t chunk,
                                               const AfterBlock& after_block = {});

}  // namespace edgedistill::prune
