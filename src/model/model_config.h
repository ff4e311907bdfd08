// Model configurations, validated up front so that every shipped or user model exports to GGUF
// and runs in llama.cpp (../shared/specs/gguf.md: row lengths multiples of 32, head counts
// consistent).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/config.h"

namespace edgedistill::model {

// A llama-style decoder: token embedding, pre-norm blocks (RMSNorm; attention with RoPE and
// grouped-query heads; SwiGLU FFN), final RMSNorm, tied or untied output head.
struct LlamaConfig {
  int vocab_size = 0;  // 0: take it from the tokenizer of the data the model is trained on
  int dim = 256;
  int n_layers = 6;
  int n_heads = 4;
  int n_kv_heads = 2;
  int ffn_dim = 768;
  int max_seq_len = 512;
  double rope_theta = 10000.0;
  double norm_eps = 1e-5;
  bool tie_embeddings = false;
  double init_std = 0.02;
  // Width of one attention head; 0 takes dim / n_heads. Set when heads were pruned away, so the
  // remaining heads keep their width (GGUF llama.attention.key_length).
  int attention_head_dim = 0;

  int head_dim() const { return attention_head_dim > 0 ? attention_head_dim : dim / n_heads; }

  template <class V>
  void visit(V& v) {
    v.field("vocab_size", vocab_size, "vocabulary size; 0 takes the tokenizer's");
    v.field("dim", dim, "model width (embedding size); a multiple of 32");
    v.field("n_layers", n_layers, "number of transformer blocks");
    v.field("n_heads", n_heads, "attention (query) heads; must divide dim");
    v.field("n_kv_heads", n_kv_heads,
            "key/value heads (grouped-query attention); must divide n_heads");
    v.field("ffn_dim", ffn_dim, "SwiGLU hidden width; a multiple of 32");
    v.field("max_seq_len", max_seq_len,
            "longest context the model is used with (GGUF context_length)");
    v.field("rope_theta", rope_theta, "RoPE frequency base");
    v.field("norm_eps", norm_eps, "RMSNorm epsilon");
    v.field("tie_embeddings", tie_embeddings, "share the output head with the token embedding");
    v.field("init_std", init_std, "standard deviation of the initial weights");
    v.field(
        "head_dim", attention_head_dim,
        "width of one attention head; 0: dim / n_heads (pruned models keep their heads' width)");
  }
  void validate(const std::string& at) const;
};

// A multilayer perceptron classifier (ReLU, dropout), e.g. for Fashion-MNIST.
struct MlpConfig {
  int input_dim = 784;
  std::vector<int> hidden{1200, 1200};
  int n_classes = 10;
  double dropout = 0.5;
  double input_dropout = 0.2;

  template <class V>
  void visit(V& v) {
    v.field("input_dim", input_dim, "input features (28x28 images: 784)");
    v.field("hidden", hidden, "widths of the hidden layers");
    v.field("n_classes", n_classes, "output classes");
    v.field("dropout", dropout, "dropout probability after each hidden layer (training only)");
    v.field("input_dropout", input_dropout, "dropout probability on the inputs (training only)");
  }
  void validate(const std::string& at) const;
};

// The model section of a recipe, or a model config file (configs/models/*.json). The keys of the
// chosen architecture sit beside "arch".
struct ModelConfig {
  std::string arch = "llama";
  LlamaConfig llama;
  MlpConfig mlp;

  template <class V>
  void visit(V& v) {
    v.choice("arch", arch, {"llama", "mlp"}, "architecture: llama decoder or mlp classifier");
    if (arch == "llama") llama.visit(v);
    if (arch == "mlp") mlp.visit(v);
  }
  void validate(const std::string& at) const;
};

// Parameter counts, for reports and for MFU.
struct ParameterCounts {
  int64_t total = 0;
  int64_t embedding = 0;  // the token embedding table (a lookup, not a matmul)
  int64_t head = 0;       // the output projection (shared with the embedding when tied)
  int64_t norms = 0;
  // Parameters in matrix multiplies per token excluding the head: the blocks' linear layers.
  int64_t non_embedding = 0;
};
ParameterCounts count_parameters(const LlamaConfig& config);

}  // namespace edgedistill::model
