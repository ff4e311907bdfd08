#include "distill/logit_losses.h"

#include <cmath>
#include <functional>

#include "core/error.h"

namespace edgedistill::distill {
namespace {

torch::ScalarType compute_type(const torch::Tensor& logits) {
  return logits.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
}

torch::Tensor divergence(const torch::Tensor& lq, const torch::Tensor& lp,
                         const LogitLossOptions& options) {
  switch (options.divergence) {
    case Divergence::forward_kl:
      return forward_kl(lq, lp);
    case Divergence::reverse_kl:
      return reverse_kl(lq, lp);
    case Divergence::jsd:
      return generalized_jsd(lq, lp, options.beta);
    case Divergence::skew_kl:
      return skew_kl(lq, lp, options.lambda);
    case Divergence::skew_reverse_kl:
      return skew_reverse_kl(lq, lp, options.lambda);
  }
  ED_CHECK(false, "unknown divergence");
  return {};
}

// log(w a + (1 - w) b) from log a and log b, for mixture weights w in [0, 1].
torch::Tensor log_mixture(const torch::Tensor& la, const torch::Tensor& lb, double w) {
  if (w <= 0) return lb;
  if (w >= 1) return la;
  return torch::logaddexp(la + std::log(w), lb + std::log1p(-w));
}

// sum over buckets of exp(la) * (la - lb): KL between two bucket rows, 0 log 0 taken as 0.
torch::Tensor kl_rows(const torch::Tensor& la, const torch::Tensor& lb) {
  const auto a = la.exp();
  return torch::where(a > 0, a * (la - lb), torch::zeros_like(a)).sum(-1);
}

// Runs `rows_loss(first, count)` -> per-row losses over chunks of rows and returns the masked mean
// (times T^2 when asked).
torch::Tensor chunked_mean(int64_t rows, int64_t vocab, const torch::Tensor& mask,
                           const LogitLossOptions& options,
                           const std::function<torch::Tensor(int64_t, int64_t)>& rows_loss) {
  ED_CHECK(!mask.defined() || mask.numel() == rows, "mask must have one entry per row");
  const int64_t chunk = options.chunk_rows > 0 ? options.chunk_rows
                                               : std::max<int64_t>(1, (int64_t{1} << 22) / vocab);
  torch::Tensor total;
  for (int64_t first = 0; first < rows; first += chunk) {
    const int64_t count = std::min(chunk, rows - first);
    auto losses = rows_loss(first, count);
    if (mask.defined()) losses = losses * mask.narrow(0, first, count).to(losses.scalar_type());
    const auto sum = losses.sum();
    total = total.defined() ? total + sum : sum;
  }
  const double denominator =
      mask.defined() ? mask.to(torch::kFloat64).sum().item<double>() : static_cast<double>(rows);
  auto mean = total / std::max(denominator, 1.0);
  if (options.scale_by_t2) mean = mean * (options.temperature * options.temperature);
  return mean;
}

}  // namespace

Divergence parse_divergence(const std::string& name) {
  if (name == "forward_kl") return Divergence::forward_kl;
  if (name == "reverse_kl") return Divergence::reverse_kl;
  if (name == "jsd") return Divergence::jsd;
  if (name == "skew_kl") return Divergence::skew_kl;
  if (name == "skew_reverse_kl") return Divergence::skew_reverse_kl;
  throw InputError(str("unknown divergence '", name,
                       "'; use forward_kl, reverse_kl, jsd, skew_kl or skew_reverse_kl"));
}

torch::Tensor forward_kl(const torch::Tensor& lq, const torch::Tensor& lp) {
  return kl_rows(lp, lq);
}

torch::Tensor reverse_kl(const torch::Tensor& lq, const torch::Tensor& lp) {
  return kl_rows(lq, lp);
}

torch::Tensor generalized_jsd(const torch::Tensor& lq, const torch::Tensor& lp, double beta) {
  if (beta <= 0) return forward_kl(lq, lp);
  if (beta >= 1) return reverse_kl(lq, lp);
  const auto lm = log_mixture(lp, lq, beta);
  return beta * kl_rows(lp, lm) + (1 - beta) * kl_rows(lq, lm);
}

torch::Tensor skew_kl(const torch::Tensor& lq, const torch::Tensor& lp, double lambda) {
  return kl_rows(lp, log_mixture(lp, lq, lambda));
}

torch::Tensor skew_reverse_kl(const torch::Tensor& lq, const torch::Tensor& lp, double lambda) {
  return kl_rows(lq, log_mixture(lq, lp, lambda));
}

torch::Tensor logit_loss(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits,
                         const torch::Tensor& mask, const LogitLossOptions& options) {
  ED_CHECK(student_logits.dim() == 2 && student_logits.sizes() == teacher_logits.sizes(),
           "student and teacher logits must both be [rows, vocab]");
  const auto type = compute_type(student_logits);
  const double inv_t = 1.0 / options.temperature;
  const auto teacher = teacher_logits.detach();
  return chunked_mean(
      student_logits.size(0), student_logits.size(1), mask, options,
      [&](int64_t first, int64_t count) {
        const auto lq =
            torch::log_softmax(student_logits.narrow(0, first, count).to(type) * inv_t, -1);
        const auto lp = torch::log_softmax(teacher.narrow(0, first, count).to(type) * inv_t, -1);
        return divergence(lq, lp, options);
      });
}

torch::Tensor logit_loss(const torch::Tensor& student_logits, const TopKDistribution& teacher,
                         const torch::Tensor& mask, const LogitLossOptions& options) {
  ED_CHECK(student_logits.dim() == 2 && student_logits.size(0) == teacher.rows(),
           "student logits must be [rows, vocab] with one row per teacher row");
  const int64_t vocab = student_logits.size(1), k = teacher.k();
  if (teacher.vocab_size != vocab) {
    throw InputError(str("the teacher distribution covers ", teacher.vocab_size,
                         " tokens but the student has ", vocab,
                         "; teacher and student need the same tokenizer"));
  }
  const auto type = compute_type(student_logits);
  const double inv_t = 1.0 / options.temperature;
  const bool has_tail = k < vocab;
  // The teacher's tail as V - k tokens of equal probability, tempered: (V - k) (tail / (V -
  // k))^(1/T).
  const double log_rest = has_tail ? std::log(static_cast<double>(vocab - k)) : 0.0;
  return chunked_mean(
      student_logits.size(0), vocab, mask, options, [&](int64_t first, int64_t count) {
        const auto ids = teacher.ids.narrow(0, first, count);
        auto lp = teacher.logprobs.narrow(0, first, count).to(type) * inv_t;
        const auto ls =
            torch::log_softmax(student_logits.narrow(0, first, count).to(type) * inv_t, -1);
        auto lq = ls.gather(1, ids);
        if (has_tail) {
          // A tail that underflowed to 0 is floored far below any real bucket.
          const auto tail = teacher.tail.narrow(0, first, count).to(type).clamp_min(1e-30).log();
          lp = torch::cat({lp, (log_rest + (tail - log_rest) * inv_t).unsqueeze(1)}, 1);
          const auto rest = ls.scatter(1, ids, -std::numeric_limits<double>::infinity());
          lq = torch::cat({lq, torch::logsumexp(rest, {1}, /*keepdim=*/true)}, 1);
        }
        lp = lp - torch::logsumexp(lp, {1}, /*keepdim=*/true);
        return divergence(lq, lp, options);
      });
}

}  // namespace edgedistill::distill
