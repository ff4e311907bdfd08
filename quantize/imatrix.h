// Importance matrices (docs/quantization.md, "Importance matrices"): for each weight matrix, the
// mean square of every input column over calibration tokens, E[x_j^2]. Rounding column j of a
// matrix moves the layer's output by (delta w_j) x_j, so with inputs roughly uncorrelated the
// expected squared output error is sum_j E[x_j^2] (delta w_j)^2: the K-quant scale searches
// weight each value's error by its column's importance.
//
// Files are llama.cpp's, read and written both ways:
// - GGUF (what llama-imatrix writes by default): general.type = "imatrix", the keys
//   imatrix.datasets (string array), imatrix.chunk_count and imatrix.chunk_size (UINT32), and per
//   matrix two F32 tensors: "<name>.in_sum2" (ggml dims [cols, n_mat]: the raw sums of x^2) and
//   "<name>.counts" ([1, n_mat]: the tokens summed). Importance = in_sum2 / counts.
// - The legacy .dat: int32 entry count; per entry int32 name length, the name, int32 ncall,
//   int32 nval, nval float32 values (each the mean square times ncall); then optionally int32
//   chunk count, int32 dataset-name length and the name. Importance = value / ncall.
// An entry keeps its values and counts as the file has them, so both formats give their
// importance by the same division (legacy: counts = {ncall}).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "model/llama.h"

namespace edgedistill::quant {

namespace fs = std::filesystem;

struct ImatrixEntry {
  std::vector<float> sums;    // n_mat * cols
  std::vector<float> counts;  // n_mat (one for a dense model)
};

struct Imatrix {
  std::map<std::string, ImatrixEntry> entries;
  std::vector<std::string> datasets;
  uint32_t chunk_count = 0;
  uint32_t chunk_size = 0;
  bool legacy = false;  // read from a .dat file

  // The importance of each input column of matrix `name` (sums / counts; 1 where a count is 0,
  // as llama.cpp does for experts calibration never reached); empty when the file has no entry.
  std::vector<float> importance(const std::string& name) const;
};

// Reads a GGUF or legacy .dat imatrix (told apart by the GGUF magic). A FileError naming the file
// and what is wrong for a truncated or malformed file, non-finite or negative values.
Imatrix read_imatrix(const fs::path& path);

enum class ImatrixFormat { gguf, dat };
// Writes atomically. The legacy format stores each entry's mean times ncall =
// ceil(max count / chunk_size), as llama-imatrix does.
void write_imatrix(const Imatrix& imatrix, const fs::path& path, ImatrixFormat format);

// Checks the entries against the model's matrices: every entry must name one of them (a tied
// model's head is token_embd.weight) with sums of n_mat * cols values, n_mat == 1. An InputError
// naming `path`, the first entry that does not fit and why; also when no entry names a matrix.
void check_imatrix_fits(const Imatrix& imatrix, model::LlamaModelImpl& model, const fs::path& path);

// Collects an importance matrix of `model` (float, unchanged) on calibration windows [N, T]
// (int64): every matrix's inputs are summed as the model computes them, in chunks of
// `chunk_windows` windows. token_embd gets an entry only when it is the tied head.
Imatrix collect_imatrix(model::LlamaModelImpl& model, const torch::Tensor& windows,
                        int64_t chunk_windows, const std::vector<std::string>& datasets);

}  // namespace edgedistill::quant
