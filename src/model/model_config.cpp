#include "model/model_config.h"

namespace edgedistill::model {

using core::config_fail;
using core::key_path;

void LlamaConfig::validate(const std::string& at) const {
  // GGUF quant blocks are 32 elements along each row (../shared/specs/gguf.md), so every row
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
  const int64_t attention = dim * q_width * 2 + dim * kv_width * 2;  // q, output; k, v
  const int64_t ffn = 3 * dim * int64_t{c.ffn_dim};                  // gate, up, down
  counts.embedding = vocab * dim;
  counts.head = vocab * dim;
  counts.norms = (2 * int64_t{c.n_layers} + 1) * dim;
  counts.non_embedding = int64_t{c.n_layers} * (attention + ffn);
  counts.total =
      counts.embedding + (c.tie_embeddings ? 0 : counts.head) + counts.norms + counts.non_embedding;
  return counts;
}

}  // namespace edgedistill::model
