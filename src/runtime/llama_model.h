// A llama model read from a GGUF file for the runtime: hyperparameters, the vocabulary and weight
// matrices that point into the file's memory map (nothing is copied but the small norm vectors).
//
// Everything is validated on load (docs/runtime.md, "Reading a file"):
// general.architecture "llama", the llama.* keys with llama.cpp's types, every tensor present with
// the shape the hyperparameters imply, norms in F32, matrices in a type the kernels run. A file
// that fails is a FileError naming the key or tensor; it is never half-loaded.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "io/gguf.h"
#include "runtime/kernels.h"
#include "tokenizer/vocab.h"

namespace edgedistill::runtime {

namespace fs = std::filesystem;

struct LlamaHParams {
  int64_t vocab_size = 0;
  int64_t dim = 0;
  int64_t n_layers = 0;
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t ffn_dim = 0;
  int64_t context_length = 0;
  float rope_theta = 10000.0f;
  // Each RoPE frequency theta^(-2i/D) is divided by rope_divisors[i] (D/2 entries): 1 without
  // scaling, llama.rope.scaling.factor for linear scaling, times rope_freqs.weight when present.
  std::vector<float> rope_divisors;
  float norm_eps = 1e-5f;
  bool tied_embeddings = false;  // no output.weight: the head is token_embd
};

struct LlamaLayerWeights {
  std::vector<float> attn_norm, ffn_norm;  // [dim]
  WeightMatrix attn_q;                     // [n_heads * head_dim, dim]
  WeightMatrix attn_k, attn_v;             // [n_kv_heads * head_dim, dim]
  WeightMatrix attn_output;                // [dim, n_heads * head_dim]
  WeightMatrix ffn_gate, ffn_up;           // [ffn_dim, dim]
  WeightMatrix ffn_down;                   // [dim, ffn_dim]
  // attn_q.bias, attn_k.bias, attn_v.bias (Qwen2-style models); empty when the file has none.
  std::vector<float> q_bias, k_bias, v_bias;
};

class LlamaModel {
 public:
  explicit LlamaModel(const fs::path& path);

  const io::GgufReader& file() const { return file_; }
  const LlamaHParams& hparams() const { return hparams_; }
  const tok::Vocab& vocab() const { return *vocab_; }

  const WeightMatrix& token_embd() const { return token_embd_; }  // [vocab, dim]
  const WeightMatrix& output() const { return output_; }          // [vocab, dim]
  const std::vector<float>& output_norm() const { return output_norm_; }
  const std::vector<LlamaLayerWeights>& layers() const { return layers_; }

  // out [dim] = the embedding row of `token` (dequantized).
  void embed(int32_t token, float* out) const;
  // Bytes of weight data (all tensors).
  uint64_t weight_bytes() const;
  // "q4_0" etc.: the type of most matrix elements.
  std::string dominant_type() const;

 private:
  WeightMatrix matrix(const std::string& name, int64_t rows, int64_t cols) const;
  // A vector tensor of `length` f32 values (norm weights, biases, rope_freqs).
  std::vector<float> vector(const std::string& name, int64_t length) const;
  std::vector<float> norm(const std::string& name) const { return vector(name, hparams_.dim); }

  io::GgufReader file_;
  LlamaHParams hparams_;
  std::unique_ptr<tok::Vocab> vocab_;
  WeightMatrix token_embd_, output_;
  std::vector<float> output_norm_;
  std::vector<LlamaLayerWeights> layers_;
};

}  // namespace edgedistill::runtime
