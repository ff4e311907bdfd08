// Unstructured pruning masks: which weights of a matrix to zero, from a score per weight
// (docs/pruning.md, "Unstructured and N:M"). A mask is a float tensor of the weight's shape, 1
// where the weight stays and 0 where it is pruned (model::WeightMasks holds them by parameter
// name).
#pragma once

#include <torch/torch.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace edgedistill::prune {

// N:M semi-structured sparsity: at most n non-zero weights in every m consecutive inputs of a row
// (2:4 keeps 2 of every 4). m = 0: no pattern.
struct NmPattern {
  int n = 0, m = 0;
  bool enabled() const { return m > 0; }
  double sparsity() const { return enabled() ? 1.0 - static_cast<double>(n) / m : 0.0; }
};
// "2:4" -> {2, 4}; nullopt unless 0 < n < m.
std::optional<NmPattern> parse_nm_pattern(std::string_view text);

// Magnitude scores |W|.
torch::Tensor magnitude_scores(const torch::Tensor& weight);
// Wanda scores |W_ij| * ||X_j||_2 (Sun et al. 2023): `input_sq` [cols] is the sum over the
// calibration tokens of each input's square, so its root is the input's norm.
torch::Tensor wanda_scores(const torch::Tensor& weight, const torch::Tensor& input_sq);

// Prunes the round(share * count) lowest scores of each row (`per_row`) or of the whole matrix;
// ties go to the earlier index. Exactly that many zeros per row or per matrix.
torch::Tensor lowest_share_mask(const torch::Tensor& scores, double share, bool per_row);
// Keeps the n highest scores of each group of m consecutive inputs in every row (cols % m == 0).
torch::Tensor nm_mask(const torch::Tensor& scores, NmPattern pattern);
// One threshold over several matrices: prunes the round(share * total) lowest scores of all of
// them together, so each matrix's own sparsity follows its scores.
std::vector<torch::Tensor> global_share_masks(const std::vector<torch::Tensor>& scores,
                                              double share);

}  // namespace edgedistill::prune
