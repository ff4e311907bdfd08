// `edgedistill bench --model FILE.gguf`: prefill and decode speed the way llama-bench measures them
// (a prompt of `prefill_tokens` processed as one batch into an empty cache; `decode_tokens`
// tokens generated one at a time from an empty cache), median of `repeats` runs after a warm-up.
#pragma once

#include <cstdint>
#include <string>

#include "runtime/llama_model.h"
#include "runtime/thread_pool.h"

namespace edgedistill::runtime {

struct ModelBenchOptions {
  int64_t prefill_tokens = 64;
  int64_t decode_tokens = 64;
  int repeats = 5;
  int warmup = 1;
  uint64_t seed = 1234;  // the random token ids fed in
};

struct ModelBenchResult {
  double prefill_tokens_per_s = 0;
  double decode_tokens_per_s = 0;
  double decode_ms_per_token = 0;
  // The spread over repeats: the slowest and fastest run.
  double prefill_tokens_per_s_min = 0, prefill_tokens_per_s_max = 0;
  double decode_ms_per_token_min = 0, decode_ms_per_token_max = 0;
  uint64_t file_bytes = 0;
  uint64_t peak_rss_bytes = 0;  // of this process, after the runs
  uint64_t session_bytes = 0;   // KV cache and buffers
  int threads = 0;
  std::string isa;
};

ModelBenchResult bench_model(const LlamaModel& model, ThreadPool& pool,
                             const ModelBenchOptions& options);

// Peak resident set size of this process (getrusage), in bytes.
uint64_t peak_rss_bytes();

}  // namespace edgedistill::runtime
