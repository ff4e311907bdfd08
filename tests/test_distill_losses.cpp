// Logit distillation losses (distill/logit_losses.h) and the top-k teacher distribution.
#include "torch_catch.h"

#include "distill/top_k.h"

using namespace edgedistill;

TEST_CASE("top_k_distribution keeps the k largest probabilities and the exact tail") {
  torch::manual_seed(3);
  const auto logits = torch::randn({5, 40}, torch::kFloat64) * 3;
  const auto top = distill::top_k_distribution(logits, 8);
  const auto probs = torch::softmax(logits, -1);
  const auto sorted = std::get<0>(probs.sort(-1, /*descending=*/true));
  CHECK(torch::allclose(top.logprobs.exp(), sorted.narrow(1, 0, 8)));
  CHECK(torch::allclose(top.tail, sorted.narrow(1, 8, 32).sum(-1)));
  const auto full = distill::top_k_distribution(logits, 40);
  CHECK(full.tail.abs().max().item<double>() == 0.0);
}
