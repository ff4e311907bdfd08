// The distillation recipe (configs/recipes/distill-*.json): a training recipe for the student
// plus the teacher, how the student starts, and the weighted loss terms.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "core/config.h"
#include "train/train_config.h"

namespace edgedistill::distill {

// One weighted term of the distillation loss. Which keys a term takes depends on its kind.
struct LossTerm {
  std::string kind = "forward_kl";
  double weight = 1.0;
  // Logit terms (forward_kl, reverse_kl, jsd, skew_kl, skew_reverse_kl) and uld.
  double temperature = 1.0;
  bool scale_by_t2 = true;
  double alpha = 1.0;   // forward_kl: alpha * T^2 KL + (1 - alpha) * CE (Hinton et al. 2015)
  double beta = 0.5;    // jsd
  double lambda = 0.1;  // skew_kl, skew_reverse_kl
  // hidden: student blocks -> teacher blocks (empty: the uniform map), mse or cosine.
  std::string metric = "mse";
  std::vector<int> student_layers, teacher_layers;
  // attention_relation: the blocks compared (-1: the last) and the relation heads (0: automatic).
  int student_layer = -1, teacher_layer = -1, relation_heads = 0;
  // contrastive: InfoNCE over pooled final hidden states, projection width, memory bank size.
  double tau = 0.07;
  int proj_dim = 128;
  int memory_bank = 0;

  bool is_logit_term() const;
  // uld (distill/uld_loss.h): compares sorted probabilities, so the teacher may use another
  // tokenizer than the student.
  bool is_cross_tokenizer_term() const { return kind == "uld"; }
  bool needs_hidden_states() const { return kind == "hidden" || kind == "contrastive"; }

  template <class V>
  void visit(V& v) {
    v.choice("kind", kind,
             {"ce", "forward_kl", "reverse_kl", "jsd", "skew_kl", "skew_reverse_kl", "hidden",
              "attention_relation", "contrastive", "uld"},
             "the loss: hard-label ce, a logit divergence, a representation loss, or uld "
             "(universal logit distillation: sum_i |sorted q_i - sorted p_i| per position, for a "
             "teacher with another tokenizer)");
    v.field("weight", weight, "the term's weight in the total loss");
    if (is_logit_term() || is_cross_tokenizer_term()) {
      v.field("temperature", temperature,
              "softmax temperature T of teacher and student (uld: before the probabilities are "
              "sorted)");
    }
    if (is_logit_term()) {
      v.field("scale_by_t2", scale_by_t2, "multiply by T^2 so gradients keep their size across T");
    }
    if (kind == "forward_kl") {
      v.field("alpha", alpha, "alpha * T^2 * KL + (1 - alpha) * hard-label CE; 1: KL alone");
    }
    if (kind == "jsd") {
      v.field("beta", beta, "generalized JSD mixture weight; 0: forward KL, 1: reverse KL");
    }
    if (kind == "skew_kl" || kind == "skew_reverse_kl") {
      v.field("lambda", lambda, "skew: KL(p || lambda p + (1 - lambda) q), in [0, 1)");
    }
    if (kind == "hidden") {
      v.choice("metric", metric, {"mse", "cosine"}, "distance between mapped hidden states");
      v.field("student_layers", student_layers,
              "student blocks whose outputs are matched; empty: every block");
      v.field("teacher_layers", teacher_layers,
              "the teacher block for each student block; empty: the uniform map");
    }
    if (kind == "attention_relation") {
      v.field("student_layer", student_layer, "student block (-1: the last)");
      v.field("teacher_layer", teacher_layer, "teacher block (-1: the last)");
      v.field("relation_heads", relation_heads,
              "relation heads splitting q, k and v (0: the most heads dividing both widths)");
    }
    if (kind == "contrastive") {
      v.field("tau", tau, "InfoNCE temperature");
      v.field("proj_dim", proj_dim, "width of the learned projection heads");
      v.field("memory_bank", memory_bank, "past teacher representations kept as extra negatives");
    }
  }
  void validate(const std::string& at) const;
};

// How the student's weights start.
struct StudentInit {
  std::string init = "scratch";
  std::vector<int> layers;
  int stride = 0;
  std::string from;

  template <class V>
  void visit(V& v) {
    v.choice("init", init, {"scratch", "teacher-layers", "checkpoint"},
             "scratch (random), teacher-layers: copy embeddings, norms and chosen blocks, or "
             "checkpoint: start from a saved model (e.g. a pruned one, to heal it)");
    if (init == "teacher-layers") {
      v.field("layers", layers, "teacher blocks copied into student blocks 0, 1, ...");
      v.field("stride", stride, "or: copy teacher blocks 0, stride, 2 stride, ... (DistilBERT: 2)");
    }
    if (init == "checkpoint") {
      v.field("from", from,
              "checkpoint or run directory; its model.json replaces the recipe's model section and "
              "its mask.safetensors (a pruned model) keeps the pruned weights at zero");
    }
  }
  void validate(const std::string& at) const;
};

// Progressive layer dropping (Zhang & He 2020): each step keeps block l of L (1-based) with
// probability p_l = 1 - (l / L) (1 - theta(t)), theta(t) = (1 - theta_bar) exp(-gamma t) +
// theta_bar; a dropped block does not run, a kept one's residual branch is scaled by 1 / p_l.
struct LayerDropConfig {
  bool enabled = false;
  double theta_bar = 0.5;
  double gamma = 0.001;

  template <class V>
  void visit(V& v) {
    v.field("enabled", enabled, "drop student blocks at random while training (true turns it on)");
    v.field("theta_bar", theta_bar, "the keep ratio theta(t) decays towards (the last block's)");
    v.field("gamma", gamma, "decay rate of theta(t) per optimizer step");
  }
  void validate(const std::string& at) const;
};

// Progressive layer removal: one student block deleted for good at each scheduled step, the one
// whose removal hurts least on held-out data, until target_layers remain.
struct LayerRemovalConfig {
  int target_layers = 0;
  std::vector<int64_t> at_steps;
  int64_t every_steps = 0;
  std::string criterion = "influence";
  int64_t held_out_tokens = 8192;

  bool enabled() const { return target_layers > 0; }

  template <class V>
  void visit(V& v) {
    v.field("target_layers", target_layers, "the student's final depth; 0: no removal");
    v.field("at_steps", at_steps, "the steps after which one block is removed each");
    v.field("every_steps", every_steps, "or: remove one block every this many steps");
    v.choice("criterion", criterion, {"influence", "loss"},
             "influence: lowest 1 - cos(block input, output); loss: least distillation-loss "
             "increase when the block is skipped");
    v.field("held_out_tokens", held_out_tokens, "valid-split tokens the criterion is measured on");
  }
  void validate(const std::string& at) const;
};

// Teacher queries: the student scores each item (sequence or token window) by its uncertainty and
// only the items above an online threshold, a `budget` share of them, go through the teacher.
struct QueryConfig {
  std::string policy = "none";
  double budget = 0.25;
  std::string unit = "sequence";
  int window = 32;
  double dropout = 0.1;
  int64_t window_items = 128;
  int64_t bandit_every = 10;
  int64_t held_out_tokens = 4096;
  int64_t probe_items = 64;

  bool enabled() const { return policy != "none"; }

  template <class V>
  void visit(V& v) {
    v.choice("policy", policy,
             {"none", "entropy", "margin", "dropout_disagreement", "random", "learned"},
             "which items the student sends to the teacher; none: all of them (plain "
             "distillation)");
    v.field("budget", budget, "the share of items sent to the teacher, in [0, 1]");
    v.choice("unit", unit, {"sequence", "window"},
             "an item is a training sequence or a window of `window` tokens");
    v.field("window", window, "tokens per item when unit = window; divides train.seq_len");
    v.field("dropout", dropout, "dropout_disagreement: dropout rate of the two student passes");
    v.field("window_items", window_items,
            "the online threshold is a quantile of this many recent item scores");
    v.field("bandit_every", bandit_every, "learned: optimizer steps per bandit round");
    v.field("held_out_tokens", held_out_tokens,
            "learned: valid-split tokens whose loss rewards each round");
    v.field("probe_items", probe_items,
            "training items whose gain from asking the teacher is measured at each valid "
            "evaluation, against the policy's selection score (0: no probe)");
  }
  void validate(const std::string& at) const;
};

struct DistillSection {
  std::vector<LossTerm> losses = {LossTerm{}};
  LayerDropConfig layer_drop;
  LayerRemovalConfig layer_removal;
  QueryConfig queries;

  template <class V>
  void visit(V& v) {
    v.field("losses", losses, "weighted loss terms, each logged on its own in metrics.jsonl");
    v.field("layer_drop", layer_drop, "progressive layer dropping of the student's blocks");
    v.field("layer_removal", layer_removal, "progressive removal of the student's blocks");
    v.field("queries", queries, "which items the student asks the teacher about");
  }
  void validate(const std::string& at) const;
};

// A training recipe for the student (model = the student's config) plus the distillation keys.
struct DistillRecipe {
  train::TrainRecipe base;
  std::filesystem::path teacher;        // checkpoint or run directory (--teacher)
  std::filesystem::path teacher_cache;  // top-k cache directory (--teacher-cache)
  StudentInit student;
  DistillSection distill;

  template <class V>
  void visit(V& v) {
    base.visit(v);
    v.field("teacher", teacher,
            "the teacher: a checkpoint or finished run directory (or give --teacher)");
    v.field("teacher_cache", teacher_cache,
            "a top-k teacher cache (edgedistill teacher-cache) used instead of running the "
            "teacher for the logit terms (or give --teacher-cache)");
    v.field("student", student, "how the student's weights start");
    v.field("distill", distill, "the distillation loss");
  }
  void validate(const std::string& at) const;

  // Whether any term needs the live teacher (hidden states or attention), not only logits.
  bool needs_live_teacher() const;
  bool needs_teacher() const;  // any term besides ce
  // Whether a term distils across tokenizers (uld): the teacher then runs on the student's text
  // re-encoded with its own tokenizer.
  bool distills_across_tokenizers() const;
};

}  // namespace edgedistill::distill
