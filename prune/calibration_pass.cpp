#include "prune/calibration_pass.h"

#include "core/error.h"
#include "core/progress.h"
#include "model/tensor_chunks.h"

namespace edgedistill::prune {

const torch::Tensor& BlockActivations::input_of(const std::string& linear) const {
  if (linear == "attn_q" || linear == "attn_k" || linear == "attn_v") return attn_in;
  if (linear == "attn_output") return context;
  if (linear == "ffn_gate" || linear == "ffn_up") return ffn_in;
  ED_CHECK(linear == "ffn_down", "no linear layer ", linear, " in a llama block");
  return ffn_hidden;
}

std::vector<BlockActivations> calibrate_blocks(model::LlamaModelImpl& model,
                                               const torch::Tensor& windows, int64_t chunk,
                                               const AfterBlock& after_block) {
  torch::NoGradGuard no_grad;
  const auto context = model.block_context(windows.size(1), windows.device());
  auto x = model::map_chunks(windows, chunk,
                             [&](const torch::Tensor& c) { return model.token_embd(c); });
  const auto channel_sq = [](const torch::Tensor& t) {
    return t.to(torch::kFloat64).square().sum(torch::IntArrayRef{0, 1});
  };
  std::vector<BlockActivations> all;
  const int layers = model.config().n_layers;
  core::Progress progress("calibrate", layers, "blocks");
  for (int index = 0; index < layers; ++index) {
    auto& block = *model.blk[index]->as<model::LlamaBlockImpl>();
    BlockActivations stats;
    std::vector<torch::Tensor> outputs;
    model::for_chunks(x, chunk, [&](const torch::Tensor& c) {
      const auto trace = block.trace(c, context.cos, context.sin, context.mask);
      const auto add = [&](torch::Tensor& sum, const torch::Tensor& part) {
        sum = sum.defined() ? sum + channel_sq(part) : channel_sq(part);
      };
      add(stats.attn_in, trace.attn_in);
      add(stats.context, trace.context);
      add(stats.ffn_in, trace.ffn_in);
      add(stats.ffn_hidden, trace.ffn_hidden);
      stats.tokens += c.size(0) * c.size(1);
      stats.influence += model::influence_sum(c, trace.out);
      outputs.push_back(trace.out);
    });
    stats.influence /= static_cast<double>(std::max<int64_t>(1, stats.tokens));
    if (after_block) {
      after_block(index, stats);
      x = model::map_chunks(x, chunk, [&](const torch::Tensor& c) {
        return block.forward(c, context.cos, context.sin, context.mask, nullptr, nullptr);
      });
    } else {
      x = torch::cat(outputs);
    }
    all.push_back(std::move(stats));
    progress.update(index + 1);
  }
  progress.finish(layers);
  return all;
}

}  // namespace edgedistill::prune
