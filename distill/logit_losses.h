// Logit distillation losses: divergences between the teacher's and the student's softmax at a
// temperature, over a dense teacher (its logits) or a cached top-k one. Formulas:
// docs/distillation.md.
//
// Both distributions are first brought onto common buckets: the V tokens for a dense teacher; the
// teacher's k tokens plus one tail bucket (the other V - k tokens together) for a top-k teacher,
// the student's probabilities gathered and summed the same way. Each divergence is then a function
// of two rows of bucket log-probabilities. With k = V the buckets are the tokens and the top-k loss
// equals the dense one exactly. Softmaxes run in float32 (float64 for float64 logits), in chunks of
// rows, so a large vocabulary never needs more than one chunk of float32 copies at a time.
#pragma once

#include <torch/torch.h>

#include <string>

#include "distill/top_k.h"

namespace edgedistill::distill {

enum class Divergence { forward_kl, reverse_kl, jsd, skew_kl, skew_reverse_kl };

// "forward_kl", ... -> the enum; InputError for another name.
Divergence parse_divergence(const std::string& name);

// Per-row divergences between student (lq) and teacher (lp) bucket log-probabilities [N, B];
// each returns [N]. q = exp(lq), p = exp(lp).
// Forward KL (Hinton et al. 2015): KL(p || q) = sum p (lp - lq).
torch::Tensor forward_kl(const torch::Tensor& lq, const torch::Tensor& lp);
// Reverse KL (MiniLLM, arXiv:2306.08543): KL(q || p).
torch::Tensor reverse_kl(const torch::Tensor& lq, const torch::Tensor& lp);
// Generalized JSD (GKD, arXiv:2306.13649): beta KL(p || m) + (1 - beta) KL(q || m) with
// m = beta p + (1 - beta) q. It vanishes at both ends of beta, so as in GKD's reference code
// beta = 0 is taken to mean forward KL and beta = 1 reverse KL (JSD / beta and JSD / (1 - beta)
// approach those limits).
torch::Tensor generalized_jsd(const torch::Tensor& lq, const torch::Tensor& lp, double beta);
// Skew KL (DistiLLM, arXiv:2402.03898): KL(p || lambda p + (1 - lambda) q).
torch::Tensor skew_kl(const torch::Tensor& lq, const torch::Tensor& lp, double lambda);
// Skew reverse KL: KL(q || lambda q + (1 - lambda) p).
torch::Tensor skew_reverse_kl(const torch::Tensor& lq, const torch::Tensor& lp, double lambda);

struct LogitLossOptions {
  Divergence divergence = Divergence::forward_kl;
  double temperature = 1.0;
  bool scale_by_t2 = true;  // multiply by T^2 (Hinton et al.: keeps gradient sizes across T)
  double beta = 0.5;        // jsd
  double lambda = 0.1;      // skew_kl, skew_reverse_kl
  int64_t chunk_rows = 0;   // rows per softmax chunk; 0: about 4 M elements per chunk
};

// The divergence averaged over the rows where `mask` [N] is nonzero (undefined mask: all rows).
// student_logits [N, V] (differentiable), teacher_logits [N, V] (not differentiated).
torch::Tensor logit_loss(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits,
                         const torch::Tensor& mask, const LogitLossOptions& options);
// The same against a top-k teacher. At temperature T the teacher's top-k log-probabilities are
// divided by T; its tail bucket is treated as V - k equally likely tokens (exact for T = 1 and for
// k = V, where there is no tail), and the buckets are renormalised.
torch::Tensor logit_loss(const torch::Tensor& student_logits, const TopKDistribution& teacher,
                         const torch::Tensor& mask, const LogitLossOptions& options);

}  // namespace edgedistill::distill
