// Fused CPU kernels for the elementwise parts of the llama block, as autograd functions.
//
// Each op has a reference twin: the plain LibTorch composition of the same formula (the
// *_reference functions below). The fused version runs on float32 CPU tensors — one memory pass
// forward and one backward instead of several, through the per-instruction-set kernels of
// fused_kernels.h — and everything else (float64, CUDA) takes the reference path.
// tests/test_model.cpp compares the two, values and gradients, and the kernel builds with each
// other.
//
// Reductions over rows use fixed blocks of rows summed in a fixed order, so results do not depend
// on the number of threads.
#pragma once

#include <torch/torch.h>

namespace edgedistill::model {

// RMSNorm (Zhang & Sennrich 2019): y = x / sqrt(mean(x^2) + eps) * w over the last dimension.
// x: [..., dim], w: [dim] -> [..., dim].
torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& w, double eps);
torch::Tensor rms_norm_reference(const torch::Tensor& x, const torch::Tensor& w, double eps);

// RoPE on adjacent pairs (llama.cpp's convention): (x[2i], x[2i+1]) of each head is rotated by
// the angle whose cosine and sine are cos[t][i], sin[t][i]. x: [B, T, heads, D];
// cos, sin: [T, D/2] (constants: no gradient flows to them) -> [B, T, heads, D].
torch::Tensor apply_rope(const torch::Tensor& x, const torch::Tensor& cos,
                         const torch::Tensor& sin);
torch::Tensor apply_rope_reference(const torch::Tensor& x, const torch::Tensor& cos,
                                   const torch::Tensor& sin);

// SwiGLU (Shazeer 2020) over the fused gate|up projection: silu(gate) * up, where gate and up are
// the two halves of the last dimension. gate_up: [..., 2F] -> [..., F]. Taking the fused GEMM's
// output directly means its gradient is written in one piece (no split and concatenation).
torch::Tensor swiglu(const torch::Tensor& gate_up);
torch::Tensor swiglu_reference(const torch::Tensor& gate_up);

// The fused q|k|v projection split into the layouts grouped-query attention multiplies, with RoPE
// applied to q and k on the way. qkv: [B, T, (H + 2 Hk) D] (q heads, then k heads, then v heads);
// q is rotated by (cos_q, sin_q) and k by (cos_k, sin_k), tables [T, D/2]. Outputs:
//   q: [B*Hk, G*T, D], G = H / Hk: row g*T + t of batch entry b*Hk + j is query head j*G + g
//   k, v: [B*Hk, T, D]
struct AttentionHeads {
  torch::Tensor q, k, v;
};
AttentionHeads split_attention_heads(const torch::Tensor& qkv, int64_t n_heads, int64_t n_kv_heads,
                                     const torch::Tensor& cos_q, const torch::Tensor& sin_q,
                                     const torch::Tensor& cos_k, const torch::Tensor& sin_k);
AttentionHeads split_attention_heads_reference(const torch::Tensor& qkv, int64_t n_heads,
                                               int64_t n_kv_heads, const torch::Tensor& cos_q,
                                               const torch::Tensor& sin_q,
                                               const torch::Tensor& cos_k,
                                               const torch::Tensor& sin_k);

// Mean next-token cross entropy: logits [N, V] float, targets [N] int64 -> scalar. The fused
// version computes log-softmax and its gradient in one pass each, without materialising
// log-probabilities or a one-hot gradient.
torch::Tensor cross_entropy(const torch::Tensor& logits, const torch::Tensor& targets);
torch::Tensor cross_entropy_reference(const torch::Tensor& logits, const torch::Tensor& targets);

}  // namespace edgedistill::model
