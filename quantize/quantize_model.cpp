#include "quantize/quantize_model.h"

#include <chrono>
#include <cmath>
#include <functional>

#include "core/error.h"
#include "core/progress.h"
#include "core/timing.h"
#include "model/tensor_chunks.h"

namespace edgedistill::quant {
namespace {

using model::map_chunks;

bool uses_awq(QuantMethod method) {
  return method == QuantMethod::awq || method == QuantMethod::awq_gptq;
}
bool is_k_quant(io::GgmlType type) {
  return io::ggml_type_traits(type).block_elems == io::kSuperBlock;
}
bool uses_gptq(QuantMethod method) {
  return method == QuantMethod::gptq || method == QuantMethod::awq_gptq;
}

class Pass {
 public:
  Pass(model::LlamaModelImpl& model, const QuantizeOptions& options, QuantizeResult& result)
      : model_(model), options_(options), result_(result) {}

  // Rounds `weight` (a parameter) in place to the plan's type on `hessian` (the layer's inputs;
  // may be undefined), recording its bytes and report. `awq`: what AWQ did to the layer, or null.
  void round(const std::string& name, torch::Tensor& weight, const torch::Tensor& hessian,
             const AwqLinear* awq) {
    if (options_.observe && hessian.defined()) options_.observe(name, hessian);
    const io::GgmlType type = options_.tensor_types.at(name);
    if (!io::ggml_type_traits(type).quantized) return;  // f32/f16 matrices stay float
    const auto start = std::chrono::steady_clock::now();
    LayerReport report;
    report.name = name;
    report.type = type;
    report.rows = weight.size(0);
    report.cols = weight.size(1);
    const auto w = weight.detach().clone();
    std::vector<uint8_t> bytes;
    torch::Tensor rounded;
    if (uses_gptq(options_.method) && hessian.defined()) {
      GptqResult gptq = gptq_quantize(w, hessian, type, options_.gptq, name);
      bytes = std::move(gptq.bytes);
      rounded = gptq.dequantized;
      report.rounding = "gptq";
      report.dead_inputs = gptq.dead_inputs;
    } else {
      const auto importance = options_.importance.find(name);
      const bool weighted = importance != options_.importance.end() && is_k_quant(type);
      bytes = rtn_bytes(w, type, weighted ? &importance->second : nullptr);
      rounded = dequantize_bytes(bytes, type, report.rows, report.cols);
      report.rounding = weighted ? "rtn+imatrix" : "rtn";
    }
    // Errors in the original coordinates: W_t = diag(out) W diag(in), x_t = x / in.
    torch::Tensor original = w, rounded_original = rounded, h = hessian;
    if (awq != nullptr) {
      report.awq_alpha = awq->alpha;
      report.awq_clip = awq->mean_clip;
      original = awq->original;
      rounded_original = rounded / awq->output_scale.unsqueeze(1) / awq->input_scale;
      if (h.defined()) {
        const auto in = awq->input_scale.to(torch::kFloat64);
        h = h * in.unsqueeze(1) * in.unsqueeze(0);
      }
    }
    report.method = rounding_error(original, rounded_original, h);
    // Plain round-to-nearest of unscaled weights is its own baseline.
    report.rtn =
        report.rounding == "rtn" && awq == nullptr
            ? report.method
            : rounding_error(
                  original,
                  dequantize_bytes(rtn_bytes(original, type), type, report.rows, report.cols), h);
    {
      torch::NoGradGuard no_grad;
      weight.copy_(rounded);
    }
    result_.bytes[name] = std::move(bytes);
    report.seconds = core::seconds_since(start);
    result_.layers.push_back(std::move(report));
  }

  // The Hessian of a layer input over all calibration windows (undefined when uncalibrated).
  torch::Tensor hessian_of(const torch::Tensor& inputs, const std::string& name) {
    torch::Tensor hessian;
    if (inputs.defined()) accumulate_hessian(hessian, inputs, name);
    return hessian;
  }

  // Rounds a group of layers that read the same input.
  void round_group(const std::string& prefix, const torch::Tensor& inputs,
                   const std::vector<std::pair<std::string, torch::nn::Linear*>>& layers,
                   std::map<std::string, AwqLinear>& awq) {
    const torch::Tensor hessian = hessian_of(inputs, prefix + layers.front().first);
    for (const auto& [linear, module] : layers) {
      const std::string name = prefix + linear + ".weight";
      const auto it = awq.find(linear);
      AwqLinear* entry = it == awq.end() ? nullptr : &it->second;
      // AWQ's clipping search, on the inputs the layer is rounded for (not q and k: their error
      // is amplified by the softmax, which a per-layer output error does not see).
      if (entry != nullptr && options_.method == QuantMethod::awq && options_.awq.clip &&
          hessian.defined() && linear != "attn_q" && linear != "attn_k" &&
          io::ggml_type_traits(options_.tensor_types.at(name)).quantized) {
        entry->mean_clip =
            clip_to_hessian(**module, options_.tensor_types.at(name), hessian, options_.awq);
      }
      round(name, (*module)->weight, hessian, entry);
    }
  }

  void run(const torch::Tensor& windows) {
    torch::NoGradGuard no_grad;
    const auto& config = model_.config();
    const bool calibrated = windows.defined() && windows.numel() > 0;
    ED_CHECK(calibrated || options_.method == QuantMethod::rtn,
             "GPTQ and AWQ need calibration windows");
    const int64_t chunk = options_.chunk_windows;
    torch::Tensor x;
    if (calibrated) {
      result_.calibration_tokens = windows.numel();
      context_ = model_.block_context(windows.size(1), torch::Device(torch::kCPU));
      x = map_chunks(windows, chunk, [&](const torch::Tensor& c) { return model_.token_embd(c); });
    }
    // Each stage's inputs, computed with the layers before it already rounded; undefined when
    // uncalibrated.
    auto stage = [&](const std::function<torch::Tensor(const torch::Tensor&)>& fn,
                     const torch::Tensor& input) {
      return calibrated ? map_chunks(input, chunk, fn) : torch::Tensor();
    };
    core::Progress progress("quantize", config.n_layers, "blocks");
    for (int layer = 0; layer < config.n_layers; ++layer) {
      auto& block = *model_.blk[layer]->as<model::LlamaBlockImpl>();
      const std::string prefix = str("blk.", layer, ".");
      std::map<std::string, AwqLinear> awq;
      if (uses_awq(options_.method)) {
        awq = awq_block(
            block, context_, x,
            [&](const std::string& linear) {
              return options_.tensor_types.at(prefix + linear + ".weight");
            },
            options_.awq, chunk);
      }
      const auto attn_in = stage([&](const torch::Tensor& c) { return block.attn_norm(c); }, x);
      round_group(prefix, attn_in,
                  {{"attn_q", &block.attn_q}, {"attn_k", &block.attn_k}, {"attn_v", &block.attn_v}},
                  awq);
      const auto context = stage(
          [&](const torch::Tensor& c) {
            return block.attention_context(c, context_.cos, context_.sin, context_.mask);
          },
          attn_in);
      round_group(prefix, context, {{"attn_output", &block.attn_output}}, awq);
      torch::Tensor after_attention;
      if (calibrated)
        after_attention = x + map_chunks(context, chunk, [&](const torch::Tensor& c) {
                            return block.attn_output(c);
                          });
      const auto ffn_in =
          stage([&](const torch::Tensor& c) { return block.ffn_norm(c); }, after_attention);
      round_group(prefix, ffn_in, {{"ffn_gate", &block.ffn_gate}, {"ffn_up", &block.ffn_up}}, awq);
      const auto hidden =
          stage([&](const torch::Tensor& c) { return block.ffn_hidden(c); }, ffn_in);
      round_group(prefix, hidden, {{"ffn_down", &block.ffn_down}}, awq);
      if (calibrated) {
        x = after_attention +
            map_chunks(hidden, chunk, [&](const torch::Tensor& c) { return block.ffn_down(c); });
      }
      progress.update(layer + 1, prefix.substr(0, prefix.size() - 1));
    }
    progress.finish(config.n_layers);

    // The head, on the last block's normalised output. Tied to the embedding, the one matrix
    // is rounded for the head (a lookup has no input correlations to exploit, the head does);
    // untied, the embedding is rounded to nearest.
    const auto head_in = stage([&](const torch::Tensor& c) { return model_.output_norm(c); }, x);
    if (model_.output) {
      round("output.weight", model_.output->weight, hessian_of(head_in, "output.weight"), nullptr);
      round("token_embd.weight", model_.token_embd->weight, torch::Tensor(), nullptr);
    } else {
      round("token_embd.weight", model_.token_embd->weight,
            hessian_of(head_in, "token_embd.weight (the tied head)"), nullptr);
    }
  }

 private:
  model::LlamaModelImpl& model_;
  const QuantizeOptions& options_;
  QuantizeResult& result_;
  model::LlamaModelImpl::BlockContext context_;
};

}  // namespace

std::optional<QuantMethod> parse_quant_method(std::string_view name) {
  if (name == "rtn") return QuantMethod::rtn;
  if (name == "gptq") return QuantMethod::gptq;
  if (name == "awq") return QuantMethod::awq;
  if (name == "awq+gptq") return QuantMethod::awq_gptq;
  return std::nullopt;
}

std::string_view quant_method_name(QuantMethod method) {
  switch (method) {
    case QuantMethod::rtn:
      return "rtn";
    case QuantMethod::gptq:
      return "gptq";
    case QuantMethod::awq:
      return "awq";
    case QuantMethod::awq_gptq:
      return "awq+gptq";
  }
  return "?";
}

const std::vector<std::string>& quant_method_names() {
  static const std::vector<std::string> names = {"rtn", "gptq", "awq", "awq+gptq"};
  return names;
}

QuantizeResult quantize_llama(model::LlamaModelImpl& model, const torch::Tensor& windows,
                              const QuantizeOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  QuantizeResult result;
  Pass(model, options, result).run(windows);
  result.seconds = core::seconds_since(start);
  return result;
}

}  // namespace edgedistill::quant
