#include "prune/unstructured.h"

#include "core/error.h"
#include "prune/calibration_pass.h"

namespace edgedistill::prune {

namespace {

std::string weight_name(int block, const std::string& linear) {
  return str("blk.", block, ".", linear, ".weight");
}

torch::Tensor& linear_weight(model::LlamaModelImpl& model, int block, const std::string& linear) {
  auto& b = *model.blk[block]->as<model::LlamaBlockImpl>();
  torch::nn::Linear* layers[] = {&b.attn_q,   &b.attn_k, &b.attn_v,  &b.attn_output,
                                 &b.ffn_gate, &b.ffn_up, &b.ffn_down};
  const auto& names = block_linear_names();
  for (size_t i = 0; i < names.size(); ++i) {
    if (names[i] == linear) return (*layers[i])->weight;
  }
  ED_CHECK(false, "no linear layer ", linear);
  return b.attn_q->weight;
}

// The scores of one block's matrix: |W|, or |W| * ||X|| with the block's input statistics.
torch::Tensor scores_of(model::LlamaModelImpl& model, int block, const std::string& linear,
                        const UnstructuredOptions& options, const BlockActivations* stats) {
  const auto& weight = linear_weight(model, block, linear);
  if (options.method == "magnitude") return magnitude_scores(weight);
  ED_CHECK(options.method == "wanda" && stats != nullptr, "wanda needs calibration statistics");
  return wanda_scores(weight, stats->input_of(linear));
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
  const auto& linears = block_linear_names();
  UnstructuredResult result;
  const auto keep = [&](int block, const std::string& linear, const torch::Tensor& mask) {
    const auto name = weight_name(block, linear);
    linear_weight(model, block, linear).mul_(mask);
    result.masks[name] = mask;
    result.layers.push_back({name, mask.numel(), (mask == 0).sum().item<int64_t>()});
  };
  const bool wanda = options.method == "wanda";
  if (wanda && !(windows.defined() && windows.numel() > 0)) {
    throw InputError("wanda pruning needs calibration tokens (--calib-tokens > 0)");
  }
  if (!options.global) {
    const auto prune_block = [&](int block, const BlockActivations* stats) {
      for (const auto& linear : linears) {
        keep(block, linear, mask_of(scores_of(model, block, linear, options, stats), options));
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
  std::vector<torch::Tensor> scores;
  for (int block = 0; block < layers; ++block) {
    for (const auto& linear : linears) {
      scores.push_back(scores_of(model, block, linear, options, wanda ? &stats[block] : nullptr));
    }
  }
  const auto masks = global_share_masks(scores, options.sparsity);
  size_t i = 0;
  for (int block = 0; block < layers; ++block) {
    for (const auto& linear : linears) keep(block, linear, masks[i++]);
  }
  return result;
}

}  // namespace edgedistill::prune
