#include "distill/attention_relation.h"

#include <cmath>
#include <limits>

#include "core/error.h"
#include "distill/token_mask.h"

namespace edgedistill::distill {

namespace {

void check_relation_input(const torch::Tensor& x, int relation_heads, const char* what) {
  if (x.dim() != 3) {
    throw InputError(str("attention relation: the ", what, " are ", x.sizes(),
                         "; expected [batch, length, width]"));
  }
  if (relation_heads < 1 || x.size(2) % relation_heads != 0) {
    throw InputError(str("attention relation: the ", what, "' width ", x.size(2),
                         " is not divisible by relation_heads ", relation_heads,
                         "; choose a head count that divides both models' n_heads * head_dim"));
  }
}

// KL(p || q) per query row, summed over keys: teacher and student log-probabilities
// [B, R, T, T] -> [B, R, T]. The future's -inf log-probabilities are zeroed first, so that
// 0 * (-inf - -inf) never makes a NaN, in the value or in the gradient.
torch::Tensor relation_kl(const torch::Tensor& teacher, const torch::Tensor& student,
                          const torch::Tensor& future) {
  const auto lp = teacher.masked_fill(future, 0.0), lq = student.masked_fill(future, 0.0);
  return (teacher.exp() * (lp - lq)).sum(-1);
}

}  // namespace

torch::Tensor relation_matrix(const torch::Tensor& a, const torch::Tensor& b, int relation_heads) {
  check_relation_input(a, relation_heads, "relation inputs");
  ED_CHECK(a.sizes() == b.sizes(), "relation inputs ", a.sizes(), " and ", b.sizes(), " differ");
  const int64_t batch = a.size(0), length = a.size(1), head_width = a.size(2) / relation_heads;
  const auto type = a.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
  auto heads = [&](const torch::Tensor& x) {  // [B, T, W] -> [B, R, T, W / R]
    return x.to(type).reshape({batch, length, relation_heads, head_width}).transpose(1, 2);
  };
  const auto scores = torch::matmul(heads(a), heads(b).transpose(2, 3)) /
                      std::sqrt(static_cast<double>(head_width));  // [B, R, T, T]
  const auto future =
      torch::ones({length, length}, a.options().dtype(torch::kBool)).triu(1);  // [T, T]
  return torch::log_softmax(scores.masked_fill(future, -std::numeric_limits<double>::infinity()),
                            -1);
}

torch::Tensor attention_relation_loss(
    const torch::Tensor& student_q, const torch::Tensor& student_k, const torch::Tensor& student_v,
    const torch::Tensor& teacher_q, const torch::Tensor& teacher_k, const torch::Tensor& teacher_v,
    int relation_heads, const torch::Tensor& mask) {
  check_relation_input(student_q, relation_heads, "student's queries");
  check_relation_input(teacher_q, relation_heads, "teacher's queries");
  ED_CHECK(student_q.sizes().slice(0, 2) == teacher_q.sizes().slice(0, 2), "student ",
           student_q.sizes(), " and teacher ", teacher_q.sizes(), " cover different tokens");
  const int64_t length = student_q.size(1);
  const auto future =
      torch::ones({length, length}, student_q.options().dtype(torch::kBool)).triu(1);
  const auto qk = relation_kl(relation_matrix(teacher_q, teacher_k, relation_heads),
                              relation_matrix(student_q, student_k, relation_heads), future);
  const auto vv = relation_kl(relation_matrix(teacher_v, teacher_v, relation_heads),
                              relation_matrix(student_v, student_v, relation_heads), future);
  return masked_token_mean((qk + vv).mean(1), mask);  // [B, R, T] -> [B, T] -> scalar
}

torch::Tensor attention_relation_loss(const model::ForwardOutput& student,
                                      const model::ForwardOutput& teacher, int relation_heads,
                                      const torch::Tensor& mask) {
  ED_CHECK(student.queries.defined() && teacher.queries.defined(),
           "attention relation: run both forward passes with ForwardOptions::relation_layer set");
  return attention_relation_loss(student.queries, student.keys, student.values, teacher.queries,
                                 teacher.keys, teacher.values, relation_heads, mask);
}

}  // namespace edgedistill::distill
