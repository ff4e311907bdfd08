// Attention-relation transfer: the student learns the teacher's self-attention relations, the
// query-key and value-value similarity distributions over the (causally visible) positions. Both
// are T x T per relation head, so the two models may differ in width and in head count.
#pragma once

#include <torch/torch.h>

#include "model/llama.h"

namespace edgedistill::distill {

// Relation log-probabilities (MiniLM arXiv:2002.10957; relation heads as in MiniLMv2
// arXiv:2012.15828): a and b [B, T, W] are split into R heads of W / R columns, and row t of head r
// is log_softmax over keys u <= t of a_r[t] . b_r[u] / sqrt(W / R) (causal mask). Returns
// [B, R, T, T] float32 (float64 for float64 inputs), -inf above the diagonal.
// InputError when W is not divisible by relation_heads.
torch::Tensor relation_matrix(const torch::Tensor& a, const torch::Tensor& b, int relation_heads);

// MiniLM's loss (arXiv:2002.10957) with MiniLMv2's relation heads (arXiv:2012.15828):
// KL(teacher QK relation || student QK relation) + KL(teacher VV relation || student VV relation),
// each KL summed over keys and averaged over relation heads and the query positions that count.
// q, k, v: a layer's attention inputs as ForwardOutput::queries, keys, values give them,
// [B, T, W_student] and [B, T, W_teacher] (W = n_heads * head_dim); the teacher's are not
// differentiated. mask: [B, T] query positions that count, or undefined for all. Returns a scalar.
// InputError when a width is not divisible by relation_heads.
torch::Tensor attention_relation_loss(
    const torch::Tensor& student_q, const torch::Tensor& student_k, const torch::Tensor& student_v,
    const torch::Tensor& teacher_q, const torch::Tensor& teacher_k, const torch::Tensor& teacher_v,
    int relation_heads, const torch::Tensor& mask);
// The same from two forward passes run with ForwardOptions::relation_layer set.
torch::Tensor attention_relation_loss(const model::ForwardOutput& student,
                                      const model::ForwardOutput& teacher, int relation_heads,
                                      const torch::Tensor& mask);

}  // namespace edgedistill::distill
