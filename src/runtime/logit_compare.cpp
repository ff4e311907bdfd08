#include "runtime/logit_compare.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace edgedistill::runtime {

double log_sum_exp(const float* x, int64_t n) {
  const float max_value = *std::max_element(x, x + n);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(static_cast<double>(x[i]) - max_value);
  return max_value + std::log(sum);
}

int64_t argmax(const float* x, int64_t n) {
  return std::max_element(x, x + n) - x;
}

void LogitComparison::add(const float* logits, int32_t target, int64_t vocab) {
  ED_CHECK(target >= 0 && target < vocab, "target ", target);
  nll_sum_ += log_sum_exp(logits, vocab) - logits[target];
  ++positions_;
}

void LogitComparison::add(const float* logits, const float* reference, int32_t target,
                          int64_t vocab) {
  ED_CHECK(target >= 0 && target < vocab, "target ", target);
  const double lse = log_sum_exp(logits, vocab), reference_lse = log_sum_exp(reference, vocab);
  nll_sum_ += lse - logits[target];
  ++positions_;
  reference_nll_sum_ += reference_lse - reference[target];
  double kl = 0;
  for (int64_t i = 0; i < vocab; ++i) {
    const double log_p_ref = reference[i] - reference_lse, log_p = logits[i] - lse;
    kl += std::exp(log_p_ref) * (log_p_ref - log_p);
  }
  kl_sum_ += std::max(0.0, kl);  // rounding can leave a tiny negative for identical inputs
  top1_same_ += argmax(logits, vocab) == argmax(reference, vocab) ? 1 : 0;
  ++compared_;
}

double LogitComparison::perplexity() const {
  return positions_ == 0 ? NAN : std::exp(nll_sum_ / positions_);
}
double LogitComparison::reference_perplexity() const {
  return compared_ == 0 ? NAN : std::exp(reference_nll_sum_ / compared_);
}
double LogitComparison::mean_kl() const {
  return compared_ == 0 ? NAN : kl_sum_ / compared_;
}
double LogitComparison::top1_agreement() const {
  return compared_ == 0 ? NAN : static_cast<double>(top1_same_) / compared_;
}

}  // namespace edgedistill::runtime
