#include "model/model_config.h"

#include <algorithm>
#include <cmath>

namespace edgedistill::model {

using core::config_fail;
using core::key_path;

void LlamaConfig::validate(const std::string& at) const {
  // GGUF quant blocks are 32 elements along each row (docs/quantization.md), so every row
  // length of every weight — dim, ffn_dim and the attention widths — must be a multiple of 32.
  constexpr int kRowMultiple = 32;
  if (vocab_size < 0)
    config_fail(key_path(at, "vocab_size"), "must be 0 (from the tokenizer) or positive");
  if (dim <= 0 || dim % kRowMultiple != 0) {
    config_fail(key_path(at, "dim"),
                str("must be a positive multiple of 32 (GGUF quant block rows), found ", dim));
  }
  if (ffn_dim <= 0 || ffn_dim % kRowMultiple != 0) {
    config_fail(key_path(at, "ffn_dim"),
                str("must be a positive multiple of 32 (GGUF quant block rows), found ", ffn_dim));
  }
  if (n_layers <= 0)
    config_fail(key_path(at, "n_layers"), str("must be positive, found ", n_layers));
  if (attention_head_dim < 0) {
    config_fail(key_path(at, "head_dim"),
                str("must be 0 (dim / n_heads) or positive, found ", attention_head_dim));
  }
  if (n_heads <= 0 || (attention_head_dim == 0 && dim % n_heads != 0)) {
    config_fail(key_path(at, "n_heads"), str("must divide dim (", dim, "), found ", n_heads));
  }
  if (n_kv_heads <= 0 || n_heads % n_kv_heads != 0) {
    config_fail(key_path(at, "n_kv_heads"),
                str("must divide n_heads (", n_heads, "), found ", n_kv_heads));
  }
  if (head_dim() % 2 != 0) {
    config_fail(key_path(at, "n_heads"),
                str("the head width ", head_dim(), " must be even (RoPE rotates pairs)"));
  }
  if ((n_kv_heads * head_dim()) % kRowMultiple != 0) {
    config_fail(key_path(at, "n_kv_heads"),
                str("n_kv_heads * head_dim = ", n_kv_heads * head_dim(),
                    " must be a multiple of 32 (the attn_output row length and k/v widths)"));
  }
  if (max_seq_len <= 0) config_fail(key_path(at, "max_seq_len"), "must be positive");
  if (!(rope_theta > 0)) config_fail(key_path(at, "rope_theta"), "must be positive");
  if (!(norm_eps > 0) || norm_eps > 0.1)
    config_fail(key_path(at, "norm_eps"), "must be in (0, 0.1]");
  if (!(init_std > 0)) config_fail(key_path(at, "init_std"), "must be positive");
  rope_scaling.validate(key_path(at, "rope_scaling"), head_dim());
}

void RopeScaling::validate(const std::string& at, int head_dim) const {
  if ((type == "linear" || type == "llama3") && !(factor >= 1.0)) {
    config_fail(key_path(at, "factor"), str("must be at least 1, found ", factor));
  }
  if (type == "llama3") {
    if (!(low_freq_factor > 0) || !(high_freq_factor > low_freq_factor)) {
      config_fail(
          key_path(at, "high_freq_factor"),
          str("must exceed low_freq_factor (", low_freq_factor, ") > 0, found ", high_freq_factor));
    }
    if (original_context <= 0) config_fail(key_path(at, "original_context"), "must be positive");
  }
  if (type == "divisors") {
    if (static_cast<int>(divisors.size()) != head_dim / 2) {
      config_fail(key_path(at, "divisors"),
                  str("needs head_dim / 2 = ", head_dim / 2, " entries, found ", divisors.size()));
    }
    for (double d : divisors) {
      if (!(d > 0)) config_fail(key_path(at, "divisors"), str("must be positive, found ", d));
    }
  }
}

std::vector<double> rope_divisors(const LlamaConfig& config) {
  const int half = config.head_dim() / 2;
  const RopeScaling& s = config.rope_scaling;
  if (s.type == "divisors") return s.divisors;
  std::vector<double> divisors(static_cast<size_t>(half), 1.0);
  if (s.type == "linear") std::fill(divisors.begin(), divisors.end(), s.factor);
  if (s.type == "llama3") {
    // Wavelengths shorter than original_context / high_freq_factor keep their frequency, longer
    // than original_context / low_freq_factor are divided by `factor`, and in between the
    // frequency blends linearly in original_context / wavelength (Llama 3.1's reference rule).
    const double pi = 3.14159265358979323846;
    const double low_wavelength = s.original_context / s.low_freq_factor;
    const double high_wavelength = s.original_context / s.high_freq_factor;
    for (int i = 0; i < half; ++i) {
      const double frequency = std::pow(config.rope_theta, -2.0 * i / config.head_dim());
      const double wavelength = 2 * pi / frequency;
      if (wavelength < high_wavelength) continue;
      if (wavelength > low_wavelength) {
        divisors[i] = s.factor;
        continue;
      }
      const double smooth = (s.original_context / wavelength - s.low_freq_factor) /
                            (s.high_freq_factor - s.low_freq_factor);
      divisors[i] = 1.0 / ((1.0 - smooth) / s.factor + smooth);
    }
  }
  return divisors;
}

std::vector<double> rope_frequencies(const LlamaConfig& config) {
  const std::vector<double> divisors = rope_divisors(config);
  std::vector<double> frequencies(divisors.size());
  for (size_t i = 0; i < divisors.size(); ++i) {
    frequencies[i] =
        std::pow(config.rope_theta, -2.0 * static_cast<double>(i) / config.head_dim()) /
        divisors[i];
  }
  return frequencies;
}

void MlpConfig::validate(const std::string& at) const {
  if (input_dim <= 0) config_fail(key_path(at, "input_dim"), "must be positive");
  if (n_classes < 2) config_fail(key_path(at, "n_classes"), "must be at least 2");
  for (size_t i = 0; i < hidden.size(); ++i) {
    if (hidden[i] <= 0) config_fail(str(key_path(at, "hidden"), "[", i, "]"), "must be positive");
  }
  if (dropout < 0 || dropout >= 1) config_fail(key_path(at, "dropout"), "must be in [0, 1)");
  if (input_dropout < 0 || input_dropout >= 1) {
    config_fail(key_path(at, "input_dropout"), "must be in [0, 1)");
  }
}

void ModelConfig::validate(const std::string& at) const {
  if (arch == "llama") llama.validate(at);
  if (arch == "mlp") mlp.validate(at);
}

ParameterCounts count_parameters(const LlamaConfig& c) {
  ParameterCounts counts;
  const int64_t dim = c.dim, vocab = c.vocab_size, kv_width = int64_t{c.n_kv_heads} * c.head_dim();
  const int64_t q_width = int64_t{c.n_heads} * c.head_dim();
  const int64_t biases = c.qkv_bias ? q_width + 2 * kv_width : 0;
  const int64_t attention = dim * q_width * 2 + dim * kv_width * 2 + biases;  // q, output; k, v
  const int64_t ffn = 3 * dim * int64_t{c.ffn_dim};                           // gate, up, down
  counts.embedding = vocab * dim;
  counts.head = vocab * dim;
  counts.norms = (2 * int64_t{c.n_layers} + 1) * dim;
  counts.non_embedding = int64_t{c.n_layers} * (attention + ffn);
  counts.total =
      counts.embedding + (c.tie_embeddings ? 0 : counts.head) + counts.norms + counts.non_embedding;
  return counts;
}

}  // namespace edgedistill::model
