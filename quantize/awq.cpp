#include "quantize/awq.h"

#include <cmath>
#include <limits>
#include <tuple>

#include "core/error.h"
#include "io/gguf_quants.h"
#include "model/tensor_chunks.h"
#include "quantize/gptq.h"

namespace edgedistill::quant {
namespace {

using model::map_chunks;

using Linear = torch::nn::Linear;

// The scale for one group of layers sharing input x: the alpha whose scaled, pseudo-quantized
// weights change inspect(x) least (mean squared error). Leaves the weights as they were.
torch::Tensor search_scale(const torch::Tensor& x,
                           const std::vector<std::pair<std::string, Linear*>>& layers,
                           const BlockTypes& types,
                           const std::function<torch::Tensor(const torch::Tensor&)>& inspect,
                           const AwqOptions& options, double& best_alpha) {
  const int64_t cols = x.size(-1);
  best_alpha = 0.0;
  std::vector<std::pair<Linear*, io::GgmlType>> quantized;
  for (const auto& [name, layer] : layers) {
    if (io::ggml_type_traits(types(name)).quantized) quantized.emplace_back(layer, types(name));
  }
  if (quantized.empty()) return torch::ones({cols});
  const auto mean_abs = x.abs().reshape({-1, cols}).mean(0);
  const auto reference = inspect(x);
  std::vector<torch::Tensor> originals;
  for (const auto& [layer, type] : quantized)
    originals.push_back((*layer)->weight.detach().clone());
  double best_loss = std::numeric_limits<double>::infinity();
  torch::Tensor best_scale = torch::ones({cols});
  for (int step = 0; step < options.alpha_steps; ++step) {
    const double alpha = static_cast<double>(step) / options.alpha_steps;
    auto s = mean_abs.pow(alpha).clamp_min(1e-4);
    s = s / (s.max() * s.min()).sqrt();
    for (size_t i = 0; i < quantized.size(); ++i) {
      (*quantized[i].first)
          ->weight.copy_(pseudo_quantize(originals[i] * s, quantized[i].second) / s);
    }
    const double loss = (inspect(x) - reference).pow(2).mean().item<double>();
    if (loss < best_loss) {
      best_loss = loss;
      best_alpha = alpha;
      best_scale = s;
    }
  }
  for (size_t i = 0; i < quantized.size(); ++i) (*quantized[i].first)->weight.copy_(originals[i]);
  return best_scale;
}

}  // namespace

double clip_to_hessian(torch::nn::LinearImpl& layer, io::GgmlType type,
                       const torch::Tensor& hessian, const AwqOptions& options) {
  torch::NoGradGuard no_grad;
  const int64_t rows = layer.weight.size(0), cols = layer.weight.size(1);
  const int64_t groups = cols / io::kQuantBlock;
  // The 32 x 32 diagonal blocks of H, one per group: [G, 32, 32].
  const auto h_groups = hessian.view({groups, io::kQuantBlock, groups, io::kQuantBlock})
                            .diagonal(0, 0, 2)
                            .permute({2, 0, 1});
  const auto w = layer.weight.detach().view({rows, groups, io::kQuantBlock});
  const auto amax = w.abs().amax(-1, true);
  auto best_error =
      torch::full({rows, groups}, std::numeric_limits<double>::infinity(), torch::kFloat64);
  auto best_ratio = torch::ones({rows, groups, 1});
  for (int step = 0; step <= options.clip_steps; ++step) {
    const double ratio = 1.0 - options.max_shrink * step / options.clip_steps;
    const auto limit = amax * ratio;
    const auto clipped = torch::max(torch::min(w, limit), -limit);
    const auto rounded = pseudo_quantize(clipped.reshape({rows, cols}), type).view(w.sizes());
    const auto delta = (w - rounded).to(torch::kFloat64);
    const auto error = torch::einsum("rgi,gij,rgj->rg", {delta, h_groups, delta});
    const auto better = error < best_error;
    best_error = torch::where(better, error, best_error);
    best_ratio =
        torch::where(better.unsqueeze(-1), torch::full_like(best_ratio, ratio), best_ratio);
  }
  const auto limit = amax * best_ratio;
  layer.weight.copy_(torch::max(torch::min(w, limit), -limit).reshape({rows, cols}));
  return best_ratio.mean().item<double>();
}

torch::Tensor pseudo_quantize(const torch::Tensor& weight, io::GgmlType type) {
  if (type == io::GgmlType::f32) return weight.to(torch::kFloat32).clone();
  const auto w = weight.to(torch::kFloat32).contiguous();
  return dequantize_bytes(rtn_bytes(w, type), type, w.size(0), w.size(1));
}

void fold_scale_into_norm(model::RMSNormImpl& norm, const std::vector<torch::nn::Linear*>& next,
                          const torch::Tensor& s) {
  torch::NoGradGuard no_grad;
  norm.weight.div_(s);
  for (auto* layer : next) (*layer)->weight.mul_(s);
}

void fold_scale_into_linear(torch::nn::LinearImpl& prev, torch::nn::LinearImpl& next,
                            const torch::Tensor& s) {
  torch::NoGradGuard no_grad;
  prev.weight.div_(s.unsqueeze(1));
  next.weight.mul_(s);
}

std::map<std::string, AwqLinear> awq_block(model::LlamaBlockImpl& block,
                                           const model::LlamaModelImpl::BlockContext& context,
                                           const torch::Tensor& x_all, const BlockTypes& types,
                                           const AwqOptions& options, int64_t chunk) {
  torch::NoGradGuard no_grad;
  // The search runs the block branches once per alpha: on a subset of the windows.
  const torch::Tensor x = x_all.narrow(0, 0, std::min(options.search_windows, x_all.size(0)));
  std::map<std::string, AwqLinear> result;
  for (const auto& [name, layer] : block.linears()) {
    AwqLinear& entry = result[name];
    entry.original = (*layer)->weight.detach().clone();
    entry.input_scale = torch::ones({(*layer)->weight.size(1)});
    entry.output_scale = torch::ones({(*layer)->weight.size(0)});
  }
  auto record = [&](const std::vector<std::pair<std::string, Linear*>>& layers,
                    const torch::Tensor& s, double alpha) {
    for (const auto& [name, layer] : layers) {
      result[name].input_scale = result[name].input_scale * s;
      result[name].alpha = alpha;
    }
  };
  auto attention = [&](const torch::Tensor& h) {
    return map_chunks(h, chunk, [&](const torch::Tensor& c) {
      return block.attention_branch(c, context.cos, context.sin, context.mask);
    });
  };

  // q, k, v read attn_norm's output.
  check_finite_activations(x, "the block");
  const std::vector<std::pair<std::string, Linear*>> qkv = {
      {"attn_q", &block.attn_q}, {"attn_k", &block.attn_k}, {"attn_v", &block.attn_v}};
  double alpha = 0.0;
  auto s =
      search_scale(map_chunks(x, chunk, [&](const torch::Tensor& c) { return block.attn_norm(c); }),
                   qkv, types, attention, options, alpha);
  fold_scale_into_norm(*block.attn_norm, {&block.attn_q, &block.attn_k, &block.attn_v}, s);
  record(qkv, s, alpha);

  // gate and up read ffn_norm's output.
  const auto ffn_in = map_chunks(x, chunk, [&](const torch::Tensor& c) {
    return block.ffn_norm(
        c + block.attention_branch(block.attn_norm(c), context.cos, context.sin, context.mask));
  });
  const std::vector<std::pair<std::string, Linear*>> gate_up = {{"ffn_gate", &block.ffn_gate},
                                                                {"ffn_up", &block.ffn_up}};
  s = search_scale(
      ffn_in, gate_up, types,
      [&](const torch::Tensor& h) {
        return map_chunks(h, chunk, [&](const torch::Tensor& c) { return block.ffn_branch(c); });
      },
      options, alpha);
  fold_scale_into_norm(*block.ffn_norm, {&block.ffn_gate, &block.ffn_up}, s);
  record(gate_up, s, alpha);

  // down reads silu(gate) * up, which is linear in up's rows.
  auto traced = [&](torch::Tensor model::BlockTrace::*field) {
    return map_chunks(x, chunk, [&](const torch::Tensor& c) {
      return block.trace(c, context.cos, context.sin, context.mask).*field;
    });
  };
  const std::vector<std::pair<std::string, Linear*>> down = {{"ffn_down", &block.ffn_down}};
  s = search_scale(
      traced(&model::BlockTrace::ffn_hidden), down, types,
      [&](const torch::Tensor& h) { return block.ffn_down(h); }, options, alpha);
  fold_scale_into_linear(*block.ffn_up, *block.ffn_down, s);
  record(down, s, alpha);
  result["ffn_up"].output_scale = result["ffn_up"].output_scale / s;

  return result;
}

}  // namespace edgedistill::quant
