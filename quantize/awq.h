// AWQ (Lin et al. 2023, arXiv:2306.00978; docs/quantization.md, "AWQ"): activation-aware scaling.
// Each input channel of a group of linear layers is scaled by s = mean|x|^alpha (normalised by
// sqrt(max s * min s)), alpha searched over 0, 0.05, ..., 0.95 by the output error of the block
// branch with the scaled weights pseudo-quantized; the inverse scale is folded into what produces
// the input (the RMSNorm weight before q/k/v and before gate/up; ffn_up's rows before ffn_down),
// so the model stays an ordinary llama model with the same float function. Then each output row's
// 32-element groups are clipped to the range (1 to 0.5 of their largest magnitude) that minimises
// their output error on the calibration inputs, for every layer but q and k.
//
// attn_v -> attn_output is not scaled: with grouped-query attention the value heads are shared,
// so no per-channel fold exists there (the AWQ reference skips it too when the shapes differ).
#pragma once

#include <torch/torch.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "io/gguf_types.h"
#include "model/llama.h"

namespace edgedistill::quant {

struct AwqOptions {
  int alpha_steps = 20;         // alpha = 0, 1/steps, ..., (steps - 1)/steps
  int clip_steps = 10;          // shrink ratios 1, 1 - 0.5/steps, ..., 0.5
  double max_shrink = 0.5;      // the smallest ratio is 1 - max_shrink
  int64_t search_windows = 32;  // calibration windows the alpha search runs on (the first ones)
  // The clipping search (clip_to_hessian), applied by the pass with --method awq only: when GPTQ
  // rounds after AWQ it would fit the clipped weights instead of the originals.
  bool clip = true;
};

// What AWQ did to one linear layer: before clipping, its weights are
// diag(output_scale) * original * diag(input_scale), and its input is the original input divided
// by input_scale (so original coordinates are recovered exactly, for error reports).
struct AwqLinear {
  torch::Tensor original;      // [rows, cols] the weights before AWQ
  torch::Tensor input_scale;   // [cols]
  torch::Tensor output_scale;  // [rows] (ffn_up: 1 / the scale folded into it for ffn_down)
  double alpha = 0.0;          // the exponent chosen for the layer's input (0: no scaling)
  double mean_clip = 1.0;      // mean shrink ratio chosen over the row groups (1: no clipping)
};

// A block's linear layers by short name ("attn_q", ..., "ffn_down") -> their GGUF type.
using BlockTypes = std::function<io::GgmlType(const std::string& linear)>;

// Searches and folds the scales of one block on its calibration input x [N, T, dim] (changes
// `block`), running the block `chunk` windows at a time. Returns all seven layers, by short name
// (mean_clip stays 1: see clip_to_hessian).
std::map<std::string, AwqLinear> awq_block(model::LlamaBlockImpl& block,
                                           const model::LlamaModelImpl::BlockContext& context,
                                           const torch::Tensor& x, const BlockTypes& types,
                                           const AwqOptions& options, int64_t chunk = 16);

// The clipping search for one layer about to be rounded: each 32-element group of each row is
// clipped to the shrink ratio of its largest magnitude that minimises the group's output error
// (w - Q(clip(w)))^T H_g (w - Q(clip(w))), H_g the group's block of the layer's input Hessian.
// Returns the mean ratio chosen.
double clip_to_hessian(torch::nn::LinearImpl& layer, io::GgmlType type,
                       const torch::Tensor& hessian, const AwqOptions& options);

// The folds, exact up to float rounding: norm.weight /= s and each next layer's columns *= s;
// prev's rows /= s and next's columns *= s.
void fold_scale_into_norm(model::RMSNormImpl& norm, const std::vector<torch::nn::Linear*>& next,
                          const torch::Tensor& s);
void fold_scale_into_linear(torch::nn::LinearImpl& prev, torch::nn::LinearImpl& next,
                            const torch::Tensor& s);

// Round-to-nearest to `type` and back, [rows, cols] float (f32/f16 pass through f16 or unchanged).
torch::Tensor pseudo_quantize(const torch::Tensor& weight, io::GgmlType type);

}  // namespace edgedistill::quant
