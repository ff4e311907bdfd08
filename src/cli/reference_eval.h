// Scoring GGUF models in the runtime against the float LibTorch model they came from, on a split
// of prepared data (edgedistill verify, and quantize's report). The reference runs once per window
// for all models, so comparing several roundings of one model costs one reference pass.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "distill/teacher.h"
#include "runtime/llama_model.h"
#include "runtime/logit_compare.h"
#include "runtime/thread_pool.h"

namespace edgedistill::cli {

struct ReferenceEvalOptions {
  std::filesystem::path data;  // empty: the data the reference was trained on
  std::string split = "test";
  int64_t context = 128;   // tokens per scored window (capped by the model's context)
  int64_t max_tokens = 0;  // 0: the whole split
};

struct ReferenceEval {
  std::vector<runtime::LogitComparison> comparisons;  // one per model
  std::filesystem::path data_dir;
  int64_t context = 0;
  int64_t windows = 0;
};

// An InputError unless `model` is an export of `reference` (sizes, tokenizer hash).
void check_export_of(const runtime::LlamaModel& model, const std::string& model_name,
                     const distill::Teacher& reference);

ReferenceEval evaluate_against_reference(const std::vector<const runtime::LlamaModel*>& models,
                                         runtime::ThreadPool& pool,
                                         const distill::Teacher& reference,
                                         const ReferenceEvalOptions& options);

}  // namespace edgedistill::cli
