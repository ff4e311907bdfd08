// Teacher queries, "the student asks the teacher" (docs/distillation.md, "Teacher queries"): the
// student scores each item of a batch (a sequence, or a window of tokens) by its own uncertainty,
// and only the items inside a band of the score distribution, a `budget` share of them, go to the
// teacher. The band's edges are online thresholds that track the budget over the stream of items.
// The `learned` policy is a bandit over (score, band) arms rewarded by held-out loss decrease per
// teacher query.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "distill/distill_config.h"
#include "train/task.h"

namespace edgedistill::distill {

// Item scores from the student's logits [B, T, V] (no gradient): each token's score averaged over
// the item's `window` consecutive tokens -> [B, T / window] float64 on the CPU.
torch::Tensor entropy_scores(const torch::Tensor& logits, int64_t window);  // -sum p log p
torch::Tensor margin_scores(const torch::Tensor& logits, int64_t window);   // 1 - (p1 - p2)
// Total variation 0.5 |p_a - p_b|_1 between two stochastic passes' predictions.
torch::Tensor disagreement_scores(const torch::Tensor& logits_a, const torch::Tensor& logits_b,
                                  int64_t window);

// The score above which a share `share_above` of `recent` lies: its (1 - share_above) quantile,
// linearly interpolated; +infinity for shares <= 0 and -infinity for shares >= 1.
double threshold_for_share(std::vector<double> recent, double share_above);

// Spearman's rank correlation of two equally long samples (tied values share their mean rank);
// 0 when either sample is constant or has fewer than two values.
double rank_correlation(const std::vector<double>& x, const std::vector<double>& y);

// One way of choosing items: a score and the band of its distribution that is queried, given as
// shares of items above the band's edges. A top arm queries [0, w), the most uncertain items; a
// middle arm [0.5 - w/2, 0.5 + w/2), the items around the median; w is the budget.
struct QueryArm {
  std::string name;    // e.g. "entropy/top"
  std::string policy;  // entropy, margin, dropout_disagreement, random
  bool middle = false;
};

// The query decisions of one run and their bookkeeping (rates, teacher tokens, score samples,
// the bandit), with the state a resume restores.
class TeacherQueries {
 public:
  TeacherQueries(const QueryConfig& config, uint64_t seed);

  // The scores the current step needs, computed by the caller: the chosen arm's, and for the
  // learned policy every arm's so that all thresholds keep tracking.
  const std::vector<std::string>& needed_scores() const { return needed_; }
  // Uniform [0, 1) scores for the random policy, counter-based on (seed, draw).
  torch::Tensor random_scores(int64_t rows, int64_t items, uint64_t draw) const;

  // Which items [B, I] of a batch to query (bool, CPU) given each needed policy's scores, by the
  // online threshold: the band's edges are quantiles of the last `window_items` scores of the
  // arm's policy (the batch's own scores while there are none), for a band width of
  //   w = clamp(budget + (budget * items so far - items asked so far) / window_items, 0, 1),
  // so on a stationary stream the share asked converges to the budget, and when the scores drift
  // (they fall as the student learns) the debt term pulls the realised share back to it. Then
  // adds the batch's scores to the windows and records the asked and skipped ones.
  torch::Tensor decide(const std::map<std::string, torch::Tensor>& scores);
  double band_width() const;  // w above, for the next batch
  // The learned policy's rounds: a round starts every `bandit_every` steps. The caller measures
  // the held-out loss when round_due(step) and hands it to next_round, which rewards the arm of
  // the round that ended (if any) and picks the next arm.
  bool learned() const { return config_.policy == "learned"; }
  bool round_due(int64_t step) const { return learned() && step % config_.bandit_every == 0; }
  bool round_open() const { return round_open_; }
  void next_round(double held_out_loss);

  // Metrics of the last decided batch (query_threshold, the mean scores of asked and
  // skipped items, the learned policy's arm), for the micro-batch's log terms.
  std::vector<train::Metric> batch_metrics() const { return batch_metrics_; }
  std::vector<train::Metric> summary() const;  // totals over the run, for result.json
  // Items scored and items asked so far (data parallel: kept as totals over the ranks, so the
  // budget's debt, and so the share asked, is global).
  std::vector<double> counters() const {
    return {static_cast<double>(items_), static_cast<double>(asked_)};
  }
  void set_counters(const std::vector<double>& totals) {
    items_ = static_cast<int64_t>(totals.at(0));
    asked_ = static_cast<int64_t>(totals.at(1));
  }
  nlohmann::json state() const;
  void restore(const nlohmann::json& state);

  const QueryArm& arm() const { return arms_[current_]; }
  const std::vector<QueryArm>& arms() const { return arms_; }
  // The arm the policy relies on: for the learned policy the one with the most rounds (the first
  // of those on a tie), else the only one.
  int preferred_arm() const;
  // How strongly `arm` wants each item [B, I], given its policy's scores: the score itself for a
  // top arm; for a middle arm, minus the score's distance from the median of the policy's recent
  // scores (of `scores` while there are none). Float64 on the CPU.
  torch::Tensor selection_strength(const std::map<std::string, torch::Tensor>& scores,
                                   int arm) const;

 private:
  int choose_arm() const;

  QueryConfig config_;
  uint64_t seed_;
  std::vector<QueryArm> arms_;
  std::map<std::string, std::vector<double>> recent_;  // per policy, the last window_items scores
  std::vector<std::string> needed_;
  int current_ = 0;
  // Bandit: discounted pull counts and reward sums per arm (discounted UCB), the reward scale.
  std::vector<double> pulls_, rewards_;
  std::vector<int64_t> rounds_;
  double reward_scale_ = 0;
  bool round_open_ = false;
  double round_start_loss_ = 0;
  int64_t round_queries_ = 0;
  // Totals.
  int64_t items_ = 0, asked_ = 0;
  std::vector<double> asked_scores_, skipped_scores_;  // samples, capped
  std::vector<train::Metric> batch_metrics_;
};

}  // namespace edgedistill::distill
