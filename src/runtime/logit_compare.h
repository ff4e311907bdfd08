// Accuracy of a model's next-token logits on held-out text, alone and against a reference model
// on the same tokens: perplexity, mean KL divergence KL(P_ref || P) (as llama-perplexity's
// --kl-divergence reports it) and top-1 agreement. Sums in double.
#pragma once

#include <cstdint>

namespace edgedistill::runtime {

class LogitComparison {
 public:
  // One position: `logits` and `reference` [vocab] predict `target`.
  void add(const float* logits, const float* reference, int32_t target, int64_t vocab);
  // One position without a reference (perplexity only).
  void add(const float* logits, int32_t target, int64_t vocab);

  int64_t positions() const { return positions_; }
  double perplexity() const;            // exp(mean NLL) of `logits`
  double reference_perplexity() const;  // the same for `reference`
  double mean_kl() const;               // nats
  double top1_agreement() const;        // share of positions whose argmax agree

 private:
  int64_t positions_ = 0, compared_ = 0, top1_same_ = 0;
  double nll_sum_ = 0, reference_nll_sum_ = 0, kl_sum_ = 0;
};

// log(sum(exp(x))) over n values, stably.
double log_sum_exp(const float* x, int64_t n);
// Index of the largest value (the lowest index on ties).
int64_t argmax(const float* x, int64_t n);

}  // namespace edgedistill::runtime
