#include "distill/distill_config.h"

namespace edgedistill::distill {

using core::config_fail;
using core::key_path;

bool LossTerm::is_logit_term() const {
  return kind == "forward_kl" || kind == "reverse_kl" || kind == "jsd" || kind == "skew_kl" ||
         kind == "skew_reverse_kl";
}

void LossTerm::validate(const std::string& at) const {
  if (!(weight >= 0)) config_fail(key_path(at, "weight"), "must be >= 0");
  if (!(temperature > 0)) config_fail(key_path(at, "temperature"), "must be positive");
  if (alpha < 0 || alpha > 1) config_fail(key_path(at, "alpha"), "must be in [0, 1]");
  if (beta < 0 || beta > 1) config_fail(key_path(at, "beta"), "must be in [0, 1]");
  if (lambda < 0 || lambda >= 1) config_fail(key_path(at, "lambda"), "must be in [0, 1)");
  if (!teacher_layers.empty() && teacher_layers.size() != student_layers.size()) {
    config_fail(key_path(at, "teacher_layers"),
                str("has ", teacher_layers.size(), " entries but student_layers has ",
                    student_layers.size(), "; give one teacher block per student block"));
  }
  if (relation_heads < 0) config_fail(key_path(at, "relation_heads"), "must be >= 0");
  if (!(tau > 0)) config_fail(key_path(at, "tau"), "must be positive");
  if (proj_dim <= 0) config_fail(key_path(at, "proj_dim"), "must be positive");
  if (memory_bank < 0) config_fail(key_path(at, "memory_bank"), "must be >= 0");
}

void StudentInit::validate(const std::string& at) const {
  if (init == "teacher-layers" && layers.empty() && stride <= 0) {
    config_fail(key_path(at, "layers"),
                "teacher-layers needs the teacher blocks to copy: give layers (e.g. [0, 2, 4]) "
                "or stride (e.g. 2)");
  }
  if (!layers.empty() && stride > 0) {
    config_fail(key_path(at, "stride"), "give either layers or stride, not both");
  }
}

void DistillSection::validate(const std::string& at) const {
  if (losses.empty()) {
    config_fail(key_path(at, "losses"),
                "is empty; give at least one term, e.g. [{\"kind\": \"forward_kl\"}]");
  }
}

void DistillRecipe::validate(const std::string& at) const {
  base.validate(at);
  if (base.model.arch == "mlp") {
    for (size_t i = 0; i < distill.losses.size(); ++i) {
      const auto& term = distill.losses[i];
      if (term.kind != "ce" && !term.is_logit_term()) {
        config_fail(key_path(at, str("distill.losses[", i, "].kind")),
                    str("'", term.kind,
                        "' needs a llama model's hidden states; an mlp classifier takes ce and the "
                        "logit divergences"));
      }
    }
  }
}

bool DistillRecipe::needs_live_teacher() const {
  for (const auto& term : distill.losses) {
    if (term.kind == "hidden" || term.kind == "attention_relation" || term.kind == "contrastive")
      return true;
  }
  return false;
}

bool DistillRecipe::needs_teacher() const {
  for (const auto& term : distill.losses) {
    if (term.kind != "ce") return true;
  }
  return false;
}

}  // namespace edgedistill::distill
