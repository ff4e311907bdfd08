// The llama forward pass over a KV cache: batched prefill and single-token decode.
//
// Per block (pre-norm, docs/runtime.md "The forward pass"):
//   h = x + W_o attention(RoPE(W_q rms(x)), RoPE(W_k rms(x)), W_v rms(x))
//   x' = h + W_down (silu(W_gate rms(h)) * W_up rms(h))
// then logits = W_out rms(x). RoPE rotates adjacent pairs (x[2i], x[2i+1]) of each head by
// pos * theta^(-2i/D), as llama.cpp's "llama" architecture does. Keys and values of every
// processed position stay in the cache, so decode costs one token's matrix-vector products plus
// attention over the cache.
//
// Every buffer is allocated when the session is made: forward() allocates nothing, which is what
// keeps per-token overhead low for small models.
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/linear.h"
#include "runtime/llama_model.h"
#include "runtime/thread_pool.h"

namespace edgedistill::runtime {

class LlamaSession {
 public:
  // context: positions the cache holds (0: the model's context_length); max_batch: tokens one
  // prefill pass processes at once (longer inputs are split).
  LlamaSession(const LlamaModel& model, ThreadPool& pool, int64_t context = 0,
               int64_t max_batch = 64);

  // Runs `n` tokens at positions [position(), position() + n) and appends them to the cache.
  // Returns the logits of the last token [vocab], or with all_logits those of every token
  // [n, vocab] (row t for the token at position() + t before the call). The pointer is valid
  // until the next call. Exceeding the context is an InputError.
  const float* forward(const int32_t* tokens, int64_t n, bool all_logits = false);
  const float* decode(int32_t token) { return forward(&token, 1); }

  int64_t position() const { return position_; }
  int64_t context() const { return context_; }
  // Empties the cache (the next forward starts at position 0).
  void reset() { position_ = 0; }
  // Bytes this session allocated (cache and buffers).
  uint64_t allocated_bytes() const;

 private:
  void forward_chunk(const int32_t* tokens, int64_t n, bool all_logits, float* logits_out);
  void attention(int64_t layer, int64_t n);
  void rope(float* x, int64_t n, int64_t heads) const;

  const LlamaModel& model_;
  const LlamaHParams& h_;
  ThreadPool& pool_;
  const RuntimeKernels& kernels_;
  int64_t context_, max_batch_;
  int64_t position_ = 0;

  std::vector<float> rope_cos_, rope_sin_;  // [context, head_dim / 2]
  std::vector<float> k_cache_, v_cache_;    // [n_layers, context, n_kv_heads * head_dim]
  std::vector<float> x_, xn_;               // [max_batch, dim]
  std::vector<float> q_, k_, v_, attn_;     // [max_batch, heads * head_dim]
  std::vector<float> gate_, up_;            // [max_batch, ffn_dim]
  std::vector<float> proj_;                 // [max_batch, dim]
  std::vector<float> scores_;               // [threads, context]
  std::vector<float> logits_;               // [max_batch, vocab]
  std::vector<float> all_logits_;           // grows to [n, vocab] for all_logits calls
  ActivationScratch scratch_;
};

// out[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w for `rows` rows of `dim`.
void rms_norm_rows(const float* x, const float* w, float eps, int64_t rows, int64_t dim,
                   float* out);

}  // namespace edgedistill::runtime
