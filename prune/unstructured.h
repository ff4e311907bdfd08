// Unstructured and N:M pruning of a llama model's block matrices by magnitude or Wanda
// (docs/pruning.md, "Unstructured and N:M"). The token embedding, the norms and the output head
// are kept dense, as in the Wanda paper. No weight is updated besides the zeros.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "model/checkpoint.h"
#include "model/llama.h"
#include "prune/masks.h"

namespace edgedistill::prune {

struct UnstructuredOptions {
  std::string method = "wanda";  // "magnitude" or "wanda"
  double sparsity = 0.5;         // share of each matrix's weights to zero (ignored with a pattern)
  NmPattern pattern;             // N:M within each group of m inputs of a row
  // One threshold over all block matrices instead of the same share in each. Wanda per matrix
  // compares within each output row; magnitude per matrix within the whole matrix.
  bool global = false;
  int64_t chunk_windows = 16;  // calibration windows per forward pass (Wanda)
};

struct LayerSparsity {
  std::string name;
  int64_t weights = 0;
  int64_t zeros = 0;  // weights the mask removes
};

struct UnstructuredResult {
  model::WeightMasks masks;  // every pruned matrix by parameter name
  std::vector<LayerSparsity> layers;
};

// Prunes `model` in place. Wanda needs `windows` [n, T] of calibration tokens; per matrix it runs
// sequentially (each block calibrated on the already pruned blocks before it), with `global` on
// the dense model. Magnitude ignores `windows`.
UnstructuredResult prune_unstructured(model::LlamaModelImpl& model, const torch::Tensor& windows,
                                      const UnstructuredOptions& options);

}  // namespace edgedistill::prune
