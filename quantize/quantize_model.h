// The quantization pass over a llama model: round-to-nearest, GPTQ, AWQ, or AWQ then GPTQ, each
// matrix to the type its mixed-precision plan gives it.
//
// Blocks are processed in order, each calibrated on the outputs of the blocks before it as already
// quantized; inside a block the layers are rounded in the order they compute (q/k/v, then
// attn_output on the context of the rounded q/k/v, then gate/up, then down), each on the inputs it
// sees at that point. AWQ's search for a block runs first, on the block's input. The model is
// changed in place: afterwards every quantized layer holds exactly the weights its codes decode to,
// and AWQ's folded norms and scales, so the LibTorch model is the GGUF model in float.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "io/gguf_types.h"
#include "model/llama.h"
#include "quantize/awq.h"
#include "quantize/gptq.h"

namespace edgedistill::quant {

enum class QuantMethod { rtn, gptq, awq, awq_gptq };

std::optional<QuantMethod> parse_quant_method(std::string_view name);  // "rtn", "awq+gptq", ...
std::string_view quant_method_name(QuantMethod method);
const std::vector<std::string>& quant_method_names();

struct QuantizeOptions {
  QuantMethod method = QuantMethod::gptq;
  std::map<std::string, io::GgmlType> tensor_types;  // every matrix (resolve_plan)
  GptqOptions gptq;
  AwqOptions awq;
  int64_t chunk_windows = 16;  // calibration windows per forward pass
  // Per matrix, its input columns' importances (an importance matrix, imatrix.h): round-to-nearest
  // into a K-quant then weights each value's error by them in the scale search. Matrices without
  // an entry, and the other types, round as without.
  std::map<std::string, std::vector<float>> importance;
  // Called with each matrix's input Hessian (sum of x x^T over the calibration tokens, float64)
  // before the matrix is rounded, when there are calibration windows.
  std::function<void(const std::string& name, const torch::Tensor& hessian)> observe;
};

// One matrix. Both errors are measured in the float model's coordinates (AWQ's scales undone) on
// the calibration inputs this layer saw in the pass: `method` is the rounding written (after AWQ's
// scaling and clipping when used), `rtn` is round-to-nearest of the original weights.
struct LayerReport {
  std::string name;
  io::GgmlType type = io::GgmlType::f32;
  int64_t rows = 0, cols = 0;
  std::string rounding;  // "gptq", "rtn", or "rtn+imatrix" (importance-weighted scale search)
  RoundingError method;
  RoundingError rtn;
  int64_t dead_inputs = 0;
  double awq_alpha = -1.0;  // -1: AWQ not used on this layer
  double awq_clip = -1.0;
  double seconds = 0.0;
};

struct QuantizeResult {
  std::map<std::string, std::vector<uint8_t>> bytes;  // every block-typed matrix, by name
  std::vector<LayerReport> layers;
  int64_t calibration_tokens = 0;
  double seconds = 0.0;
};

// `windows`: calibration tokens [N, T] (int64). Undefined is allowed for rtn only: then layers
// report weight errors alone.
QuantizeResult quantize_llama(model::LlamaModelImpl& model, const torch::Tensor& windows,
                              const QuantizeOptions& options);

}  // namespace edgedistill::quant
