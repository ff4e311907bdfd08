// Model configurations, validated up front so that every shipped or user model exports to GGUF
// and runs in llama.cpp (docs/runtime.md: row lengths multiples of 32, head counts
// consistent).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/config.h"

namespace edgedistill::model {

// How RoPE's frequencies are stretched for longer contexts. Every kind divides each frequency
// theta^(-2i/D) by a divisor (rope_divisors below):
//   none:    1 everywhere;
//   linear:  `factor` everywhere (position interpolation; Hugging Face "linear", GGUF
//            llama.rope.scaling.type "linear");
//   llama3:  Llama 3.1's rule: 1 for wavelengths below original_context / high_freq_factor,
//            `factor` above original_context / low_freq_factor, and a smooth blend between;
//   divisors: the list itself (a GGUF file's rope_freqs.weight, whose rule is not recorded).
struct RopeScaling {
  std::string type = "none";
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int original_context = 8192;
  std::vector<double> divisors;

  template <class V>
  void visit(V& v) {
    v.choice("type", type, {"none", "linear", "llama3", "divisors"},
             "frequency scaling: none, linear (position interpolation), llama3, or explicit "
             "divisors");
    if (type == "linear" || type == "llama3") {
      v.field("factor", factor, "how much longer the context gets (frequencies divided by it)");
    }
    if (type == "llama3") {
      v.field("low_freq_factor", low_freq_factor, "llama3: the low-frequency wavelength bound");
      v.field("high_freq_factor", high_freq_factor, "llama3: the high-frequency wavelength bound");
      v.field("original_context", original_context, "llama3: the context trained before scaling");
    }
    if (type == "divisors") v.field("divisors", divisors, "one divisor per frequency (head_dim/2)");
  }
  void validate(const std::string& at, int head_dim) const;
};

// A llama-style decoder: token embedding, pre-norm blocks (RMSNorm; attention with RoPE and
// grouped-query heads; SwiGLU FFN), final RMSNorm, tied or untied output head. With qkv_bias the
// q, k and v projections carry biases (Qwen2).
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
  bool qkv_bias = false;
  RopeScaling rope_scaling;

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
    v.field("rope_scaling", rope_scaling, "RoPE frequency scaling for long contexts");
    v.field("norm_eps", norm_eps, "RMSNorm epsilon");
    v.field("tie_embeddings", tie_embeddings, "share the output head with the token embedding");
    v.field("init_std", init_std, "standard deviation of the initial weights");
    v.field(
        "head_dim", attention_head_dim,
        "width of one attention head; 0: dim / n_heads (pruned models keep their heads' width)");
    v.field("qkv_bias", qkv_bias, "biases on the q, k and v projections (Qwen2)");
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

// The divisor of each RoPE frequency i < head_dim/2 under config.rope_scaling (see RopeScaling).
std::vector<double> rope_divisors(const LlamaConfig& config);
// The RoPE angle per position of each pair i < head_dim/2: rope_theta^(-2i/head_dim) / divisor_i.
std::vector<double> rope_frequencies(const LlamaConfig& config);

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
