#include "distill/distill_loss.h"

#include <map>
#include <numeric>

#include "core/error.h"
#include "distill/attention_relation.h"
#include "distill/contrastive.h"
#include "distill/hidden_loss.h"
#include "distill/logit_losses.h"
#include "distill/uld_loss.h"
#include "model/fused_ops.h"

namespace edgedistill::distill {
namespace {

// A block index from the config (-1: the last) checked against the model's depth.
int resolve_block(int block, int layers, const std::string& what) {
  const int resolved = block < 0 ? layers + block : block;
  if (resolved < 0 || resolved >= layers) {
    throw InputError(str(what, " ", block, " does not exist; the model has ", layers,
                         " blocks (0 to ", layers - 1, ", or -1 for the last)"));
  }
  return resolved;
}

// The most relation heads (at most the larger head count) that split both widths evenly.
int automatic_relation_heads(const model::LlamaConfig& student, const model::LlamaConfig& teacher) {
  const int common = std::gcd(student.dim, teacher.dim);
  for (int heads = std::max(student.n_heads, teacher.n_heads); heads > 1; --heads) {
    if (common % heads == 0) return heads;
  }
  return 1;
}

torch::Tensor masked_cross_entropy(const torch::Tensor& logits, const torch::Tensor& targets,
                                   const torch::Tensor& mask) {
  if (!mask.defined()) return model::cross_entropy(logits, targets);
  const auto rows = torch::nonzero(mask).squeeze(1);
  return model::cross_entropy(logits.index_select(0, rows), targets.index_select(0, rows));
}

}  // namespace

DistillLoss::DistillLoss(const std::vector<LossTerm>& terms, const model::ModelConfig& student,
                         const model::ModelConfig& teacher) {
  std::map<std::string, int> kind_count;
  for (const auto& term : terms) ++kind_count[term.kind];
  for (size_t i = 0; i < terms.size(); ++i) {
    Term term;
    term.config = terms[i];
    term.name = "loss_" + term.config.kind + (kind_count[term.config.kind] > 1 ? str("_", i) : "");
    const std::string at = str("distill.losses[", i, "]");
    const auto& kind = term.config.kind;
    if (term.config.is_logit_term()) needs_teacher_logits_ = true;
    if (term.config.is_cross_tokenizer_term()) needs_aligned_teacher_ = true;
    if (kind == "hidden" || kind == "attention_relation" || kind == "contrastive") {
      ED_CHECK(student.arch == "llama" && teacher.arch == "llama",
               "representation terms need llama models (checked by the config)");
    }
    const auto& s = student.llama;
    const auto& t = teacher.llama;
    if (kind == "hidden") {
      std::vector<LayerPair> pairs;
      if (term.config.student_layers.empty()) {
        pairs = uniform_layer_map(s.n_layers, t.n_layers);
      } else {
        for (size_t j = 0; j < term.config.student_layers.size(); ++j) {
          const int sb = resolve_block(term.config.student_layers[j], s.n_layers,
                                       at + ".student_layers: student block");
          const int tb =
              term.config.teacher_layers.empty()
                  ? std::max(
                        0, static_cast<int>(std::lround((sb + 1.0) * t.n_layers / s.n_layers)) - 1)
                  : resolve_block(term.config.teacher_layers[j], t.n_layers,
                                  at + ".teacher_layers: teacher block");
          pairs.push_back({sb + 1, tb + 1});
        }
      }
      term.module = std::make_shared<HiddenStateLossImpl>(pairs, s.dim, t.dim, term.config.metric);
      student_options_.hidden_states = teacher_options_.hidden_states = true;
    }
    if (kind == "attention_relation") {
      term.student_layer = resolve_block(term.config.student_layer, s.n_layers,
                                         at + ".student_layer: student block");
      term.teacher_layer = resolve_block(term.config.teacher_layer, t.n_layers,
                                         at + ".teacher_layer: teacher block");
      term.relation_heads = term.config.relation_heads > 0 ? term.config.relation_heads
                                                           : automatic_relation_heads(s, t);
      for (const auto& [width, who] : {std::pair{s.dim, "student"}, std::pair{t.dim, "teacher"}}) {
        if (width % term.relation_heads != 0) {
          throw InputError(str(at, ".relation_heads: ", term.relation_heads,
                               " does not divide the ", who, "'s width ", width,
                               "; choose a common divisor or 0 for automatic"));
        }
      }
      if (student_options_.relation_layer >= 0 &&
          student_options_.relation_layer != term.student_layer) {
        throw InputError(str(at, ": only one attention_relation layer pair per recipe"));
      }
      student_options_.relation_layer = term.student_layer;
      teacher_options_.relation_layer = term.teacher_layer;
    }
    if (kind == "contrastive") {
      term.module = std::make_shared<ContrastiveLossImpl>(s.dim, t.dim, term.config.proj_dim,
                                                          term.config.tau, term.config.memory_bank);
      student_options_.hidden_states = teacher_options_.hidden_states = true;
    }
    if (term.module) {
      modules_->register_module(str("term", i), term.module);
      has_modules_ = true;
    }
    terms_.push_back(std::move(term));
  }
}

train::MicroBatchLoss DistillLoss::compute(const DistillBatch& batch) const {
  train::MicroBatchLoss out;
  torch::Tensor total;
  auto add = [&](const std::string& name, const torch::Tensor& value, double weight) {
    out.terms.emplace_back(name, value.item<double>());
    const auto weighted = value * weight;
    total = total.defined() ? total + weighted : weighted;
  };
  // [B, T] mask for the representation terms.
  torch::Tensor sequence_mask;
  if (batch.mask.defined() && batch.student != nullptr) {
    sequence_mask = batch.mask.view(batch.student->logits.sizes().slice(0, 2));
  }
  for (const auto& term : terms_) {
    const auto& kind = term.config.kind;
    const double weight = term.config.weight;
    if (kind == "ce") {
      add(term.name, masked_cross_entropy(batch.student_logits, batch.targets, batch.mask), weight);
      continue;
    }
    if (term.config.is_logit_term()) {
      LogitLossOptions options;
      options.divergence = parse_divergence(kind);
      options.temperature = term.config.temperature;
      options.scale_by_t2 = term.config.scale_by_t2;
      options.beta = term.config.beta;
      options.lambda = term.config.lambda;
      const auto divergence =
          batch.teacher_logits.defined()
              ? logit_loss(batch.student_logits, batch.teacher_logits, batch.mask, options)
              : logit_loss(batch.student_logits, *batch.teacher_top_k, batch.mask, options);
      const double alpha = kind == "forward_kl" ? term.config.alpha : 1.0;
      if (alpha < 1.0) {
        const auto ce = masked_cross_entropy(batch.student_logits, batch.targets, batch.mask);
        add(term.name, alpha * divergence + (1 - alpha) * ce, weight);
        out.terms.emplace_back(term.name + "_kl", divergence.item<double>());
        out.terms.emplace_back(term.name + "_ce", ce.item<double>());
      } else {
        add(term.name, divergence, weight);
      }
      continue;
    }
    if (term.config.is_cross_tokenizer_term()) {
      ED_CHECK(batch.aligned_teacher_logits.defined(), "uld needs the aligned teacher logits");
      const auto& rows = batch.aligned_rows;
      const auto student =
          rows.defined() ? batch.student_logits.index_select(0, rows) : batch.student_logits;
      const auto mask =
          rows.defined() && batch.mask.defined() ? batch.mask.index_select(0, rows) : batch.mask;
      UldOptions options;
      options.temperature = term.config.temperature;
      add(term.name, uld_loss(student, batch.aligned_teacher_logits, mask, options), weight);
      continue;
    }
    ED_CHECK(batch.student != nullptr && batch.teacher != nullptr,
             "representation terms need both models' forward outputs");
    if (kind == "hidden") {
      auto& module = static_cast<HiddenStateLossImpl&>(*term.module);
      add(term.name,
          module.forward(batch.student->hidden_states, batch.teacher->hidden_states, sequence_mask),
          weight);
    } else if (kind == "attention_relation") {
      add(term.name,
          attention_relation_loss(batch.student->queries, batch.student->keys,
                                  batch.student->values, batch.teacher->queries,
                                  batch.teacher->keys, batch.teacher->values, term.relation_heads,
                                  sequence_mask),
          weight);
    } else if (kind == "contrastive") {
      auto& module = static_cast<ContrastiveLossImpl&>(*term.module);
      add(term.name,
          module.forward(pool_sequences(batch.student->hidden_states.back(), sequence_mask),
                         pool_sequences(batch.teacher->hidden_states.back(), sequence_mask)),
          weight);
    }
  }
  out.loss = total;
  return out;
}

}  // namespace edgedistill::distill
