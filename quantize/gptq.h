// GPTQ (Frantar et al. 2022, arXiv:2210.17323; docs/quantization.md, "GPTQ"): rounds a weight
// matrix to a GGUF block type column by column, feeding each column's rounding error forward into
// the columns not yet rounded so that the layer's output on calibration inputs moves as little as
// possible. The grid of each 32-column group (scale, and minimum for Q4_1) is the reference
// quantizer's, and that of each 256-column K-quant super-block (sub-block scales and minimums) our
// K-quant search's, computed from the already-updated weights when the group starts (or, with
// act-order, from the original weights: "static groups"), its scales rounded as stored before any
// code is chosen, so the codes written are exactly the codes whose error was fed back.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "io/gguf_types.h"

namespace edgedistill::quant {

struct GptqOptions {
  int block_size = 128;    // columns per lazy batch (a multiple of 32)
  double damp = 0.01;      // added to the diagonal: damp * mean(diag H)
  bool act_order = false;  // columns by descending diag H, with static groups
};

struct GptqResult {
  std::vector<uint8_t> bytes;  // the rows in `type`'s blocks, ggml_row_bytes(type, cols) each
  torch::Tensor dequantized;   // [rows, cols] float32: exactly what `bytes` decode to
  int64_t dead_inputs = 0;     // inputs never active in calibration (their columns set to 0)
  double damp = 0.0;           // the relative damping used (raised when H + damp was not SPD)
};

// An InputError naming `name` (the layer the activations enter) unless every value is finite.
void check_finite_activations(const torch::Tensor& inputs, const std::string& name);

// The Hessian of the layerwise squared error, H = sum over calibration inputs of x x^T, for a
// batch of inputs [..., cols], accumulated into `hessian` ([cols, cols] float64; created when
// undefined). A non-finite input is an InputError naming `name`.
void accumulate_hessian(torch::Tensor& hessian, const torch::Tensor& inputs,
                        const std::string& name);

// Rounds `weight` ([rows, cols] float, PyTorch [out, in]) to `type` with GPTQ on `hessian`
// ([cols, cols]): q8_0, q4_0, q4_1, q5_0, q5_1 (cols a multiple of 32), or q4_k, q5_k, q6_k (cols
// a multiple of 256; each super-block's scales and minimums are chosen by the K-quant search,
// weighted by diag H, from the weights as updated when its first column comes up; lazy batches
// are then rounded up to whole super-blocks). `name` labels errors.
GptqResult gptq_quantize(const torch::Tensor& weight, const torch::Tensor& hessian,
                         io::GgmlType type, const GptqOptions& options, const std::string& name);

// Relative errors of a rounding `rounded` of `weight` (both [rows, cols]): in the weights,
// ||W - Q|| / ||W||, and in the layer's outputs on the calibration inputs behind `hessian`,
// sqrt(tr((W - Q) H (W - Q)^T) / tr(W H W^T)). NaN for the output error when hessian is undefined.
struct RoundingError {
  double weight = 0.0;
  double output = 0.0;
};
RoundingError rounding_error(const torch::Tensor& weight, const torch::Tensor& rounded,
                             const torch::Tensor& hessian);

// Round-to-nearest (the GGUF reference quantizers) of a [rows, cols] float tensor: the bytes and
// what they decode to. `importance` ([cols], or null) weights the K-quants' scale search.
std::vector<uint8_t> rtn_bytes(const torch::Tensor& weight, io::GgmlType type,
                               const std::vector<float>* importance = nullptr);
torch::Tensor dequantize_bytes(const std::vector<uint8_t>& bytes, io::GgmlType type, int64_t rows,
                               int64_t cols);

}  // namespace edgedistill::quant
