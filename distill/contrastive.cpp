#include "distill/contrastive.h"

#include <algorithm>
#include <limits>

#include "core/error.h"
#include "distill/token_mask.h"

namespace edgedistill::distill {

namespace F = torch::nn::functional;

namespace {

torch::ScalarType compute_type(const torch::Tensor& x) {
  return x.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
}

// s [N, P], t [M, P] -> cosine similarities over tau, [N, M].
torch::Tensor similarity_logits(const torch::Tensor& s, const torch::Tensor& t, double tau) {
  ED_CHECK(s.dim() == 2 && t.dim() == 2 && s.size(1) == t.size(1) && t.size(0) >= s.size(0),
           "InfoNCE needs s [N, P] and t [M >= N, P], got ", s.sizes(), " and ", t.sizes());
  const auto type = compute_type(s);
  const auto options = F::NormalizeFuncOptions().dim(1);
  return torch::matmul(F::normalize(s.to(type), options), F::normalize(t.to(type), options).t()) /
         tau;
}

// -mean_i log softmax(logits[i])[i]: row i's positive is column i.
torch::Tensor nce_from_logits(const torch::Tensor& logits) {
  return -torch::log_softmax(logits, 1).diagonal().mean();
}

void check_tau(double tau) {
  if (!(tau > 0)) {
    throw InputError(str("contrastive loss: tau must be positive (about 0.07 to 0.1), got ", tau));
  }
}

}  // namespace

torch::Tensor pool_sequences(const torch::Tensor& hidden, const torch::Tensor& mask) {
  ED_CHECK(hidden.dim() == 3, "hidden states must be [batch, length, dim], got ", hidden.sizes());
  const auto type = compute_type(hidden);
  const auto weights = token_weights(mask, hidden.size(0), hidden.size(1),
                                     hidden.options().dtype(type));   // [B, T]
  const auto sums = (hidden.to(type) * weights.unsqueeze(2)).sum(1);  // [B, D]
  return sums / weights.sum(1, /*keepdim=*/true).clamp_min(1.0);
}

torch::Tensor info_nce(const torch::Tensor& s, const torch::Tensor& t, double tau) {
  check_tau(tau);
  return nce_from_logits(similarity_logits(s, t, tau));
}

ContrastiveLossImpl::ContrastiveLossImpl(int64_t student_dim, int64_t teacher_dim, int64_t proj_dim,
                                         double tau, int64_t memory_bank)
    : tau_(tau) {
  if (student_dim < 1 || teacher_dim < 1 || proj_dim < 1 || memory_bank < 0) {
    throw InputError(str("contrastive loss needs positive widths and memory_bank >= 0; got ",
                         "student_dim ", student_dim, ", teacher_dim ", teacher_dim, ", proj_dim ",
                         proj_dim, ", memory_bank ", memory_bank));
  }
  check_tau(tau);
  student_head = register_module("student_head", torch::nn::Linear(student_dim, proj_dim));
  teacher_head = register_module("teacher_head", torch::nn::Linear(teacher_dim, proj_dim));
  if (memory_bank > 0) {
    bank = register_buffer("bank", torch::zeros({memory_bank, teacher_dim}));
    bank_fill = register_buffer("bank_fill", torch::zeros({2}, torch::kInt64));
  }
}

int64_t ContrastiveLossImpl::bank_rows() const {
  return bank.defined() ? bank_fill[0].item<int64_t>() : 0;
}

torch::Tensor ContrastiveLossImpl::forward(const torch::Tensor& student_pooled,
                                           const torch::Tensor& teacher_pooled) {
  ED_CHECK(student_pooled.dim() == 2 && teacher_pooled.dim() == 2 &&
               student_pooled.size(0) == teacher_pooled.size(0),
           "pooled representations must be [N, dim] each, got ", student_pooled.sizes(), " and ",
           teacher_pooled.sizes());
  const auto s = student_head(student_pooled);  // [N, P]
  if (!bank.defined()) return info_nce(s, teacher_head(teacher_pooled), tau_);
  // Every bank row joins the softmax (a fixed shape, no host synchronisation), and the rows not
  // yet filled get -inf logits, which gives them zero weight.
  const int64_t n = s.size(0), capacity = bank.size(0);
  const auto t = teacher_head(torch::cat({teacher_pooled.to(bank.dtype()), bank}));  // [N + C, P]
  const auto fill = bank_fill.to(torch::kInt64);
  const auto empty_row = torch::arange(capacity, fill.options()) >= fill[0];  // [C]
  const auto ignored = torch::cat({torch::zeros({n}, empty_row.options()), empty_row});
  const auto logits =
      similarity_logits(s, t, tau_)
          .masked_fill(ignored, -std::numeric_limits<double>::infinity());  // [N, N + C]
  auto loss = nce_from_logits(logits);
  if (is_training()) push_to_bank(teacher_pooled);
  return loss;
}

void ContrastiveLossImpl::push_to_bank(const torch::Tensor& teacher_pooled) {
  torch::NoGradGuard no_grad;
  const int64_t capacity = bank.size(0);
  // A batch larger than the bank leaves only its last `capacity` rows.
  const int64_t n = std::min(teacher_pooled.size(0), capacity);
  const auto rows = teacher_pooled.narrow(0, teacher_pooled.size(0) - n, n).to(bank.dtype());
  // Read as int64 whatever the buffer became: Module::to(dtype) converts every buffer.
  const auto fill = bank_fill.to(torch::kInt64);  // {rows filled, next row to write}
  const auto slots = (fill[1] + torch::arange(n, fill.options())) % capacity;
  bank.index_copy_(0, slots, rows);
  bank_fill.copy_(torch::stack({(fill[0] + n).clamp_max(capacity), (fill[1] + n) % capacity}));
}

}  // namespace edgedistill::distill
