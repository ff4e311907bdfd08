// Next-token sampling: greedy, or temperature with top-k and top-p (nucleus, Holtzman et al. 2020,
// "The Curious Case of Neural Text Degeneration") filtering.
//
// With temperature T > 0 the probabilities are softmax(logits / T), computed as
// exp((l_i - l_max) / T) / sum so that no exponent overflows. Keeping the top_k most probable and
// renormalising is the same as taking the softmax over those k logits alone, so only they are
// exponentiated. The nucleus is measured on that renormalised top-k distribution (as llama.cpp's
// top-k then top-p chain does): the smallest prefix, by descending probability, whose mass reaches
// top_p, never fewer than one token.
//
// The draw: u = core::Rng::uniform() (the generator's top 53 bits times 2^-53, uniform on [0, 1))
// scaled by the kept mass; the token is the first, in descending probability, whose cumulative
// mass exceeds u. Candidates are ordered by logit, then by id, so equal logits keep the lowest id
// first and top_k = 1 is exactly greedy.
#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace edgedistill::runtime {
namespace {

// Higher logit first; the lower id first among equal logits.
bool ranks_before(const std::pair<float, int32_t>& a, const std::pair<float, int32_t>& b) {
  return a.first > b.first || (a.first == b.first && a.second < b.second);
}

[[noreturn]] void throw_nan_logit(int32_t id) {
  throw RunError(str("the logit of token ", id,
                     " is NaN: the model produced a non-finite value (damaged weights or an "
                     "overflow); check the model with `edgedistill verify`"));
}

// The lowest id among the largest logits.
int32_t argmax(const float* logits, int32_t vocab) {
  int32_t best = 0;
  for (int32_t i = 0; i < vocab; ++i) {
    if (std::isnan(logits[i])) throw_nan_logit(i);
    if (logits[i] > logits[best]) best = i;
  }
  return best;
}

}  // namespace

Sampler::Sampler(const SamplerOptions& options) : options_(options), rng_(options.seed) {
  if (!std::isfinite(options.temperature)) {
    throw InputError(str("sampling temperature is ", options.temperature,
                         "; expected 0 (greedy) or a positive number"));
  }
  if (options.top_k < 0) {
    throw InputError(
        str("sampling top_k is ", options.top_k, "; expected 0 (no cut) or a positive count"));
  }
  if (!(options.top_p >= 0.0f && options.top_p <= 1.0f)) {
    throw InputError(
        str("sampling top_p is ", options.top_p, "; expected a mass in [0, 1] (1: no cut)"));
  }
}

int32_t Sampler::sample(const float* logits, int32_t vocab) {
  ED_CHECK(vocab > 0, "vocab=", vocab);
  if (options_.temperature <= 0.0f) return argmax(logits, vocab);

  // resize() keeps the capacity: no allocation once the first call has sized the vector.
  candidates_.resize(static_cast<size_t>(vocab));
  for (int32_t i = 0; i < vocab; ++i) {
    if (std::isnan(logits[i])) throw_nan_logit(i);
    candidates_[static_cast<size_t>(i)] = {logits[i], i};
  }
  const auto begin = candidates_.begin();
  const size_t kept =
      options_.top_k > 0 ? std::min(static_cast<size_t>(options_.top_k), static_cast<size_t>(vocab))
                         : static_cast<size_t>(vocab);
  const bool nucleus = options_.top_p < 1.0f;
  if (kept < candidates_.size()) {
    std::partial_sort(begin, begin + static_cast<ptrdiff_t>(kept), candidates_.end(), ranks_before);
  } else if (nucleus) {
    std::sort(begin, candidates_.end(), ranks_before);
  }  // else every candidate is kept and the order does not matter

  float max_logit = candidates_[0].first;
  for (size_t i = 1; i < kept; ++i) max_logit = std::max(max_logit, candidates_[i].first);
  if (!std::isfinite(max_logit)) {
    throw RunError(str("the largest logit is ", max_logit,
                       ": the model produced a non-finite value; check the model with "
                       "`edgedistill verify`"));
  }
  // Unnormalised probabilities exp((l - l_max) / T) of the kept candidates, in place.
  const double temperature = options_.temperature;
  double mass = 0.0;
  for (size_t i = 0; i < kept; ++i) {
    const auto p = static_cast<float>(
        std::exp((static_cast<double>(candidates_[i].first) - max_logit) / temperature));
    candidates_[i].first = p;
    mass += p;
  }

  size_t drawn_from = kept;
  if (nucleus) {
    const double target = static_cast<double>(options_.top_p) * mass;
    double prefix = 0.0;
    drawn_from = 0;
    while (drawn_from < kept) {
      prefix += candidates_[drawn_from++].first;
      if (prefix >= target) break;
    }
    mass = prefix;
  }

  const double u = rng_.uniform() * mass;
  double cumulative = 0.0;
  for (size_t i = 0; i < drawn_from; ++i) {
    cumulative += candidates_[i].first;
    if (u < cumulative) return candidates_[i].second;
  }
  return candidates_[drawn_from - 1].second;  // u within rounding of the total
}

}  // namespace edgedistill::runtime
