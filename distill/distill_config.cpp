#include "distill/distill_config.h"

#include <algorithm>

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
  if (init == "checkpoint" && from.empty()) {
    config_fail(key_path(at, "from"),
                "init checkpoint needs the model to start from: a checkpoint or run directory "
                "(or pass --student DIR)");
  }
}

void DistillSection::validate(const std::string& at) const {
  if (losses.empty()) {
    config_fail(key_path(at, "losses"),
                "is empty; give at least one term, e.g. [{\"kind\": \"forward_kl\"}]");
  }
}

void LayerDropConfig::validate(const std::string& at) const {
  if (!(theta_bar > 0 && theta_bar <= 1))
    config_fail(key_path(at, "theta_bar"), "must be in (0, 1]");
  if (!(gamma >= 0)) config_fail(key_path(at, "gamma"), "must be >= 0");
}

void LayerRemovalConfig::validate(const std::string& at) const {
  if (target_layers < 0) config_fail(key_path(at, "target_layers"), "must be >= 0 (0: no removal)");
  if (every_steps < 0) config_fail(key_path(at, "every_steps"), "must be >= 0");
  if (held_out_tokens <= 0) config_fail(key_path(at, "held_out_tokens"), "must be positive");
  if (!enabled()) return;
  if (at_steps.empty() == (every_steps == 0)) {
    config_fail(key_path(at, "at_steps"),
                "give either at_steps (e.g. [100, 200]) or every_steps, not both and not neither");
  }
  for (size_t i = 0; i < at_steps.size(); ++i) {
    if (at_steps[i] <= 0 || (i > 0 && at_steps[i] <= at_steps[i - 1])) {
      config_fail(key_path(at, "at_steps"), "must be positive and increasing");
    }
  }
}

void QueryConfig::validate(const std::string& at) const {
  if (!(budget >= 0 && budget <= 1)) config_fail(key_path(at, "budget"), "must be in [0, 1]");
  if (window <= 0) config_fail(key_path(at, "window"), "must be positive");
  if (!(dropout > 0 && dropout < 1)) config_fail(key_path(at, "dropout"), "must be in (0, 1)");
  if (window_items <= 0) config_fail(key_path(at, "window_items"), "must be positive");
  if (bandit_every <= 0) config_fail(key_path(at, "bandit_every"), "must be positive");
  if (held_out_tokens <= 0) config_fail(key_path(at, "held_out_tokens"), "must be positive");
  if (probe_items < 0) config_fail(key_path(at, "probe_items"), "must be 0 (off) or positive");
}

namespace {

// The checks between the training-time techniques, the model and the loss terms.
void validate_techniques(const DistillRecipe& recipe, const std::string& at) {
  const auto& d = recipe.distill;
  const bool llama = recipe.base.model.arch == "llama";
  auto has_term = [&](const char* kind) {
    return std::any_of(d.losses.begin(), d.losses.end(),
                       [&](const LossTerm& term) { return term.kind == kind; });
  };
  for (const auto& [on, key] : {std::pair{d.layer_drop.enabled, "layer_drop"},
                                std::pair{d.layer_removal.enabled(), "layer_removal"},
                                std::pair{d.queries.enabled(), "queries"}}) {
    if (on && !llama) {
      config_fail(key_path(at, str("distill.", key)),
                  "applies to llama students; an mlp classifier distils without it");
    }
  }
  if (d.layer_drop.enabled && has_term("attention_relation")) {
    config_fail(key_path(at, "distill.layer_drop"),
                "cannot drop the block an attention_relation term reads; drop one of the two");
  }
  const auto& removal = d.layer_removal;
  if (removal.enabled() && recipe.base.train.early_stop_patience > 0) {
    config_fail(key_path(at, "train.early_stop_patience"),
                "cannot keep the best weights of a student that loses blocks on the way "
                "(distill.layer_removal); set one of the two to 0");
  }
  if (removal.enabled()) {
    const int layers = recipe.base.model.llama.n_layers;
    const auto steps = recipe.base.train.steps;
    if (removal.target_layers >= layers) {
      config_fail(key_path(at, "distill.layer_removal.target_layers"),
                  str(removal.target_layers, " is not below the student's ", layers,
                      " layers; give fewer"));
    }
    const int64_t removals = layers - removal.target_layers;
    if (!removal.at_steps.empty() && static_cast<int64_t>(removal.at_steps.size()) != removals) {
      config_fail(key_path(at, "distill.layer_removal.at_steps"),
                  str("has ", removal.at_steps.size(), " steps but going from ", layers, " to ",
                      removal.target_layers, " layers takes ", removals, " removals"));
    }
    const int64_t last =
        removal.at_steps.empty() ? removal.every_steps * removals : removal.at_steps.back();
    if (last >= steps) {
      config_fail(key_path(at, "distill.layer_removal"),
                  str("the last removal would come at step ", last,
                      ", not before train.steps = ", steps, "; remove earlier or train longer"));
    }
    if (has_term("hidden") || has_term("attention_relation")) {
      config_fail(key_path(at, "distill.layer_removal"),
                  "cannot renumber the student blocks a hidden or attention_relation term maps; "
                  "drop one of the two");
    }
  }
  if (recipe.distills_across_tokenizers()) {
    // uld runs the teacher on re-encoded text: it has no logits or internals at the student's
    // own positions for another term, a query or a loss-based removal score to use.
    for (size_t i = 0; i < d.losses.size(); ++i) {
      const auto& kind = d.losses[i].kind;
      if (kind != "ce" && !d.losses[i].is_cross_tokenizer_term()) {
        config_fail(key_path(at, str("distill.losses[", i, "].kind")),
                    str("'", kind,
                        "' needs the teacher on the student's own tokens, which a recipe with a "
                        "uld term does not run; uld combines with ce only"));
      }
    }
    if (d.queries.enabled()) {
      config_fail(key_path(at, "distill.queries"),
                  "picks student token windows for the teacher, but a uld term re-encodes every "
                  "window with the teacher's tokenizer; drop one of the two");
    }
    if (removal.enabled() && removal.criterion == "loss") {
      config_fail(key_path(at, "distill.layer_removal.criterion"),
                  "'loss' scores blocks by a logit divergence on the student's tokens, which a "
                  "uld recipe does not compute; use influence");
    }
  }
  const auto& queries = d.queries;
  if (queries.enabled()) {
    if (recipe.needs_live_teacher()) {
      config_fail(key_path(at, "distill.queries"),
                  "works with ce and the logit terms; hidden, attention_relation and contrastive "
                  "need the teacher on every item");
    }
    if (!std::any_of(d.losses.begin(), d.losses.end(),
                     [](const LossTerm& term) { return term.is_logit_term(); })) {
      config_fail(key_path(at, "distill.queries"),
                  "decides which items get the teacher's logits, but no loss term uses them; add "
                  "a logit term such as forward_kl");
    }
    if (queries.unit == "window" && recipe.base.train.seq_len % queries.window != 0) {
      config_fail(
          key_path(at, "distill.queries.window"),
          str(queries.window, " does not divide train.seq_len = ", recipe.base.train.seq_len));
    }
  }
}

}  // namespace

void DistillRecipe::validate(const std::string& at) const {
  base.validate(at);
  validate_techniques(*this, at);
  if (base.model.arch == "mlp") {
    for (size_t i = 0; i < distill.losses.size(); ++i) {
      const auto& term = distill.losses[i];
      if (term.is_cross_tokenizer_term()) {
        config_fail(key_path(at, str("distill.losses[", i, "].kind")),
                    "'uld' distils language models across tokenizers; an mlp classifier takes ce "
                    "and the logit divergences");
      }
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

bool DistillRecipe::distills_across_tokenizers() const {
  return std::any_of(distill.losses.begin(), distill.losses.end(),
                     [](const LossTerm& term) { return term.is_cross_tokenizer_term(); });
}

bool DistillRecipe::needs_teacher() const {
  for (const auto& term : distill.losses) {
    if (term.kind != "ce") return true;
  }
  return false;
}

}  // namespace edgedistill::distill
