#include "runtime/model_bench.h"

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <vector>

#include "core/rng.h"
#include "core/timing.h"
#include "runtime/llama_session.h"

namespace edgedistill::runtime {
namespace {

using core::median;
using core::seconds_since;

}  // namespace

uint64_t peak_rss_bytes() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<uint64_t>(usage.ru_maxrss) * 1024;  // Linux reports kilobytes
}

ModelBenchResult bench_model(const LlamaModel& model, ThreadPool& pool,
                             const ModelBenchOptions& options) {
  const LlamaHParams& h = model.hparams();
  const int64_t context = std::max(options.prefill_tokens, options.decode_tokens);
  LlamaSession session(model, pool, std::min(context, h.context_length), options.prefill_tokens);
  core::Rng rng(options.seed);
  std::vector<int32_t> tokens(std::max(options.prefill_tokens, options.decode_tokens));
  for (auto& token : tokens) token = static_cast<int32_t>(rng.next() % h.vocab_size);

  std::vector<double> prefill_rates, decode_ms;
  for (int run = 0; run < options.warmup + options.repeats; ++run) {
    session.reset();
    auto start = std::chrono::steady_clock::now();
    session.forward(tokens.data(), options.prefill_tokens);
    const double prefill_s = seconds_since(start);

    session.reset();
    start = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < options.decode_tokens; ++i) session.decode(tokens[i]);
    const double decode_s = seconds_since(start);
    if (run < options.warmup) continue;
    prefill_rates.push_back(options.prefill_tokens / prefill_s);
    decode_ms.push_back(1000.0 * decode_s / options.decode_tokens);
  }
  ModelBenchResult result;
  result.prefill_tokens_per_s = median(prefill_rates);
  result.decode_ms_per_token = median(decode_ms);
  result.decode_tokens_per_s = 1000.0 / result.decode_ms_per_token;
  const auto [pmin, pmax] = std::minmax_element(prefill_rates.begin(), prefill_rates.end());
  const auto [dmin, dmax] = std::minmax_element(decode_ms.begin(), decode_ms.end());
  result.prefill_tokens_per_s_min = *pmin;
  result.prefill_tokens_per_s_max = *pmax;
  result.decode_ms_per_token_min = *dmin;
  result.decode_ms_per_token_max = *dmax;
  result.file_bytes = model.file().file_bytes();
  result.peak_rss_bytes = peak_rss_bytes();
  result.session_bytes = session.allocated_bytes();
  result.threads = pool.size();
  result.isa = runtime_kernels().isa;
  return result;
}

}  // namespace edgedistill::runtime
