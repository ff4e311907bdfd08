#include "cli/reference_eval.h"

#include <algorithm>
#include <memory>

#include "core/error.h"
#include "core/progress.h"
#include "data/prepared_data.h"
#include "runtime/llama_session.h"

namespace edgedistill::cli {

namespace fs = std::filesystem;

void check_export_of(const runtime::LlamaModel& model, const std::string& model_name,
                     const distill::Teacher& reference) {
  if (!reference.is_llama()) {
    throw InputError(str("--reference ", reference.dir.string(), " is not a llama model"));
  }
  const auto& h = model.hparams();
  const auto& config = reference.meta.config.llama;
  if (config.vocab_size != h.vocab_size || config.dim != h.dim || config.n_layers != h.n_layers) {
    throw InputError(str(model_name, " (vocab ", h.vocab_size, ", dim ", h.dim, ", ", h.n_layers,
                         " layers) is not an export of ", reference.dir.string(), " (vocab ",
                         config.vocab_size, ", dim ", config.dim, ", ", config.n_layers,
                         " layers)"));
  }
  if (const auto* hash = model.file().find("edgedistill.tokenizer_hash");
      hash != nullptr && !reference.meta.tokenizer_hash.empty() &&
      hash->text != reference.meta.tokenizer_hash) {
    throw InputError(str(model_name, " was exported with another tokenizer than ",
                         reference.dir.string(), " was trained with"));
  }
}

ReferenceEval evaluate_against_reference(const std::vector<const runtime::LlamaModel*>& models,
                                         runtime::ThreadPool& pool,
                                         const distill::Teacher& reference,
                                         const ReferenceEvalOptions& options) {
  ED_CHECK(!models.empty(), "evaluate_against_reference: no model");
  ReferenceEval eval;
  eval.data_dir = options.data.empty() ? reference.meta.data_dir : options.data;
  if (eval.data_dir.empty()) {
    throw InputError(
        str(reference.dir.string(), " records no data directory; pass --data DIR (prepared data)"));
  }
  const data::PreparedData data(eval.data_dir);
  const data::TokenShard shard = data.shard(options.split);
  if (data.tokenizer().hash() != reference.meta.tokenizer_hash) {
    throw InputError(str("the data at ", eval.data_dir.string(), " uses another tokenizer than ",
                         reference.dir.string(), "; pass the data it was trained on"));
  }
  const int64_t vocab = models.front()->hparams().vocab_size;
  int64_t context = options.context;
  for (const auto* model : models)
    context = std::min<int64_t>(context, model->hparams().context_length);
  const int64_t whole_split = (shard.size() - 1) / context;
  eval.context = context;
  eval.windows = options.max_tokens > 0
                     ? std::min(whole_split, std::max<int64_t>(1, options.max_tokens / context))
                     : whole_split;
  if (eval.windows < 1) {
    throw InputError(str("the ", options.split, " split of ", eval.data_dir.string(), " has ",
                         shard.size(), " tokens, fewer than one window of ", context + 1,
                         "; lower --ctx"));
  }

  std::vector<std::unique_ptr<runtime::LlamaSession>> sessions;
  for (const auto* model : models) {
    sessions.push_back(std::make_unique<runtime::LlamaSession>(*model, pool, context, context));
  }
  eval.comparisons.resize(models.size());
  std::vector<int64_t> window(context + 1);
  std::vector<int32_t> window32(context + 1);
  torch::NoGradGuard no_grad;
  core::Progress progress("evaluate", eval.windows, "windows");
  for (int64_t w = 0; w < eval.windows; ++w) {
    shard.read(w * context, context + 1, window.data());
    for (int64_t i = 0; i <= context; ++i) window32[i] = static_cast<int32_t>(window[i]);
    const auto inputs = torch::from_blob(window.data(), {1, context}, torch::kInt64);
    const auto ref = reference.llama().forward(inputs).logits.contiguous();
    const float* ref_logits = ref.data_ptr<float>();
    for (size_t m = 0; m < models.size(); ++m) {
      sessions[m]->reset();
      const float* logits = sessions[m]->forward(window32.data(), context, true);
      for (int64_t t = 0; t < context; ++t) {
        eval.comparisons[m].add(logits + t * vocab, ref_logits + t * vocab, window32[t + 1], vocab);
      }
    }
    progress.update(w + 1, str("ppl ", eval.comparisons.back().perplexity()));
  }
  progress.finish(eval.windows);
  return eval;
}

}  // namespace edgedistill::cli
