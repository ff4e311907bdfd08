#include "prune/unstructured.h"

#include "core/error.h"
#include "prune/calibration_pass.h"

namespace edgedistill::prune {

namespace {

// One block matrix: its parameter name, its weight, and the name of the linear layer.
struct Matrix {
  std::string name;
  std::string linear;
  torch::Tensor weight;
};

std::vector<Matrix> block_matrices(model::LlamaModelImpl& model, int block) {
  std::vector<Matrix> matrices;
  for (const auto& [linear, layer] : model.blk[block]->as<model::LlamaBlockImpl>()->linears()) {
    matrices.push_back({str("blk.", block, ".", linear, ".weight"), linear, (*layer)->weight});
  }
  return matrices;
}

// The scores of one block's matrix: |W|, or |W| * ||X|| with the block's input statistics.
torch::Tensor scores_of(const Matrix& matrix, const UnstructuredOptions& options,
                        const BlockActivations* stats) {
  if (options.method == "magnitude") return magnitude_scores(matrix.weight);
  ED_CHECK(options.method == "wanda" && stats != nullptr, "wanda needs calibration statistics");
  return wanda_scores(matrix.weight, stats->input_of(matrix.linear));
}

torch::Tensor mask_of(const torch::Tensor& scores, const UnstructuredOptions& options) {
  if (options.pattern.enabled()) return nm_mask(scores, options.pattern);
  return lowest_share_mask(scores, options.sparsity, options.method == "wanda");
}

}  // namespace

UnstructuredResult prune_unstructured(model::LlamaModelImpl& model, const torch::Tensor& windows,
                                      const UnstructuredOptions& options) {
  torch::NoGradGuard no_grad;
  const int layers = model.config().n_layers;
  UnstructuredResult result;
  const auto keep = [&](Matrix& matrix, const torch::Tensor& mask) {
    matrix.weight.mul_(mask);
    result.masks[matrix.name] = mask;
    result.layers.push_back({matrix.name, mask.numel(), (mask == 0).sum().item<int64_t>()});
  };
  const bool wanda = options.method == "wanda";
  if (wanda && !(windows.defined() && windows.numel() > 0)) {
    throw InputError("wanda pruning needs calibration tokens (--calib-tokens > 0)");
  }
  if (!options.global) {
    const auto prune_block = [&](int block, const BlockActivations* stats) {
      for (auto& matrix : block_matrices(model, block)) {
        keep(matrix, mask_of(scores_of(matrix, options, stats), options));
      }
    };
    if (wanda) {
      calibrate_blocks(
          model, windows, options.chunk_windows,
          [&](int block, const BlockActivations& stats) { prune_block(block, &stats); });
    } else {
      for (int block = 0; block < layers; ++block) prune_block(block, nullptr);
    }
    return result;
  }
  ED_CHECK(!options.pattern.enabled(), "an N:M pattern is per group, not global");
  std::vector<BlockActivations> stats;
  if (wanda) stats = calibrate_blocks(model, windows, options.chunk_windows);
  std::vector<Matrix> matrices;
  std::vector<torch::Tensor> scores;
  for (int block = 0; block < layers; ++block) {
    for (auto& matrix : block_matrices(model, block)) {
      scores.push_back(scores_of(matrix, options, wanda ? &stats[block] : nullptr));
      matrices.push_back(std::move(matrix));
    }
  }
  const auto masks = global_share_masks(scores, options.sparsity);
  for (size_t i = 0; i < matrices.size(); ++i) keep(matrices[i], masks[i]);
  return result;
}

}  // namespace edgedistill::prune
