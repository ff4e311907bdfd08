#include "distill/top_k.h"

#include "core/error.h"

namespace edgedistill::distill {

TopKDistribution top_k_distribution(const torch::Tensor& logits, int64_t k) {
  ED_CHECK(logits.dim() == 2, "logits must be [rows, vocab]");
  const int64_t vocab = logits.size(1);
  ED_CHECK(k >= 1 && k <= vocab, "k must be in [1, vocab]");
  const auto compute_type =
      logits.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
  const auto logprobs = torch::log_softmax(logits.to(compute_type), -1);
  auto [values, ids] = logprobs.topk(k, -1, /*largest=*/true, /*sorted=*/true);
  TopKDistribution out;
  out.ids = ids;
  out.logprobs = values;
  out.vocab_size = vocab;
  // The tail as 1 - sum p_topk underflows to rounding noise when the top-k holds almost all the
  // mass; the sum over the other tokens is exact (and exactly 0 when k == V).
  if (k == vocab) {
    out.tail = torch::zeros({logits.size(0)}, values.options());
  } else {
    const auto rest = logprobs.exp().scatter(1, ids, 0.0);
    out.tail = rest.sum(-1);
  }
  return out;
}

}  // namespace edgedistill::distill
