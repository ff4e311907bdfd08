#include "cli/pipeline_config.h"

namespace edgedistill::cli {

using core::config_fail;
using core::key_path;

void PipelineQuantize::validate(const std::string& at) const {
  const bool float_type = type == "f16" || type == "f32";
  if (float_type && method != "rtn") {
    config_fail(key_path(at, "method"),
                str("'", method, "' rounds to a block type; ", type,
                    " is written as it is: set method to rtn, or type to q4_0, q4_1 or q8_0"));
  }
  if (method != "rtn" && calib_tokens <= 0) {
    config_fail(key_path(at, "calib_tokens"), str("must be > 0: ", method, " calibrates"));
  }
  if (calib_context <= 0) config_fail(key_path(at, "calib_context"), "must be > 0");
  if (block_size <= 0 || block_size % 32 != 0) {
    config_fail(key_path(at, "block_size"), str("is ", block_size, "; use a multiple of 32"));
  }
  if (!(damp > 0)) config_fail(key_path(at, "damp"), "must be > 0");
}

void PipelineVerify::validate(const std::string& at) const {
  if (context <= 0) config_fail(key_path(at, "context"), "must be > 0");
  if (max_tokens < 0) config_fail(key_path(at, "max_tokens"), "must be >= 0 (0: the whole split)");
}

namespace {

void validate_prune(const PipelinePrune& prune, const std::string& at) {
  if (!prune.enabled) return;
  const bool structured = prune.method == "structured";
  const bool unstructured_targets = prune.sparsity > 0 || !prune.pattern.empty();
  const bool structured_targets =
      prune.heads > 0 || prune.ffn > 0 || prune.layers > 0 || prune.params > 0;
  if (structured && !structured_targets) {
    config_fail(key_path(at, "method"),
                "structured pruning needs a target: set heads, ffn, layers or params");
  }
  if (structured && unstructured_targets) {
    config_fail(key_path(at, prune.sparsity > 0 ? "sparsity" : "pattern"),
                "is for method magnitude or wanda; structured takes heads, ffn, layers, params");
  }
  if (!structured && !unstructured_targets) {
    config_fail(key_path(at, "sparsity"),
                str("method ", prune.method, " needs a target: set sparsity or pattern"));
  }
  if (!structured && structured_targets) {
    config_fail(key_path(at, "method"), "heads, ffn, layers and params are for method structured");
  }
  if (prune.calib_tokens <= 0 && prune.method != "magnitude") {
    config_fail(key_path(at, "calib_tokens"), "must be > 0: the method calibrates");
  }
  if (prune.calib_context <= 0) config_fail(key_path(at, "calib_context"), "must be > 0");
}

}  // namespace

void PipelineRecipe::validate(const std::string& at) const {
  if (threads < 0) config_fail(key_path(at, "threads"), "must be >= 0 (0 uses all cores)");
  if (name.empty() || name.find('/') != std::string::npos) {
    config_fail(key_path(at, "name"), "must be a non-empty name without '/'");
  }
  if (data.kind != "text") {
    config_fail(key_path(at, "data.kind"),
                "a pipeline makes a language model: use a text data config (e.g. "
                "../data/kjv.json)");
  }
  if (teacher.checkpoint.empty() && teacher.recipe.model.arch != "llama") {
    config_fail(key_path(at, "teacher.recipe.model.arch"),
                "a pipeline's teacher is a llama model (GGUF exports llama models only)");
  }
  if (distill.enabled && distill.recipe.base.model.arch != "llama" &&
      distill.recipe.student.init != "checkpoint") {
    config_fail(key_path(at, "distill.recipe.model.arch"),
                "a pipeline's student is a llama model (GGUF exports llama models only)");
  }
  validate_prune(prune, key_path(at, "prune"));
}

bool looks_like_pipeline(const nlohmann::json& json) {
  if (!json.is_object()) return false;
  for (const char* key : {"quantize", "verify", "prune"}) {
    if (json.contains(key)) return true;
  }
  return json.contains("teacher") && json["teacher"].is_object();
}

}  // namespace edgedistill::cli
