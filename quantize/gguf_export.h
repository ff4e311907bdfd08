// Export of a trained llama checkpoint (model.json + weights.safetensors) to a GGUF file that
// llama.cpp runs unchanged (docs/runtime.md, "What export writes"): llama.* hyperparameters with
// the exact KV types llama.cpp checks, the SentencePiece vocabulary as a "llama" tokenizer,
// provenance keys under edgedistill.*, and the weights as F32, F16 or round-to-nearest Q8_0 / Q4_0
// / Q4_1.
//
// Our parameter names are GGUF's tensor names and our RoPE rotates adjacent pairs as llama.cpp's
// "llama" architecture does (model/llama.h), so tensors map one to one with no row permutation;
// only the dims are reversed (ggml order).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "io/gguf.h"
#include "model/model_meta.h"

namespace edgedistill::quant {

namespace fs = std::filesystem;

struct GgufExportOptions {
  io::GgmlType type = io::GgmlType::f16;  // the block and FFN matrices
  // token_embd and output; nullopt: q8_0 for 4-bit files (common practice: the embedding and
  // the head are the most sensitive tensors), else `type`.
  std::optional<io::GgmlType> embedding_type;
  std::string name;        // general.name; empty: the checkpoint directory's name
  fs::path tokenizer_dir;  // empty: <data_dir>/tokenizer from model.json
  // Per-matrix types (a resolved mixed-precision plan, quant_plan.h); they win over the two above.
  std::map<std::string, io::GgmlType> tensor_types;
  // Extra string metadata (e.g. edgedistill.quantization.method).
  std::map<std::string, std::string> metadata;
  // general.file_type and the summary's name when a named mix (q4_k_m, ...) chose the types;
  // else `type`'s.
  std::optional<uint32_t> file_type;
  std::string file_type_name;
};

// The rows of a weight matrix, produced by a quantizer: `rows` x `cols` floats (row-major,
// PyTorch [out, in]) -> the type's bytes. Round-to-nearest (io::quantize_rows) by default;
// GPTQ and AWQ plug in their own.
using MatrixQuantizer = std::function<std::vector<uint8_t>(
    const std::string& name, io::GgmlType type, const float* data, int64_t rows, int64_t cols)>;

// The float values of a checkpoint tensor by name (PyTorch shape, row-major). By default they are
// read from weights.safetensors; a pass that changed the weights in memory (AWQ) supplies its own.
using TensorSource = std::function<std::vector<float>(const std::string& name)>;

struct GgufExportSummary {
  uint64_t file_bytes = 0;
  int64_t tensors = 0;
  int64_t parameters = 0;
  std::string file_type;  // "q4_0" ...
  std::string weights_sha256;
};

// The weight matrices of a llama model in file order: token_embd, output (unless tied), then each
// block's attn_q, attn_k, attn_v, attn_output, ffn_gate, ffn_up, ffn_down.
std::vector<std::string> llama_matrix_names(const model::LlamaConfig& config);

// Whether token_embd and output stay at q8_0 by default when the matrices are `type`: for the
// types below 6 bits (q4_0, q4_1, q4_k, q5_k), whose error there costs the most.
bool keeps_embedding_at_q8_0(io::GgmlType type);

// The type each tensor of a llama checkpoint gets under `options` (norms: f32), for rows of `row`
// elements: a K-quant whose rows are not whole 256-element super-blocks falls back as llama.cpp's
// quantizer does (q4_k -> q5_0, q5_k -> q5_1, q6_k -> q8_0; f16 when the row is not even a
// multiple of 32).
io::GgmlType export_tensor_type(const std::string& name, int64_t row,
                                const GgufExportOptions& options);
// Every weight matrix of `config` in file order with the type `options` gives it, and the type it
// asked for before any fallback.
struct MatrixType {
  std::string name;
  io::GgmlType type;
  io::GgmlType wanted;
  int64_t row;
};
std::vector<MatrixType> export_matrix_types(const model::LlamaConfig& config,
                                            const GgufExportOptions& options);
// The type `type` falls back to for rows of `row` elements (itself when they fit).
io::GgmlType k_quant_fallback(io::GgmlType type, int64_t row);

// Checks that every matrix row length fits the block size of its type; an InputError names the
// tensor, its row length and the rule otherwise.
void check_export_widths(const model::LlamaConfig& config, const GgufExportOptions& options);

// Writes the checkpoint at `model_dir` (a checkpoint directory) to `out` (atomically).
GgufExportSummary export_llama_gguf(const fs::path& model_dir, const GgufExportOptions& options,
                                    const fs::path& out, const MatrixQuantizer& quantizer = {},
                                    const TensorSource& source = {});

}  // namespace edgedistill::quant
