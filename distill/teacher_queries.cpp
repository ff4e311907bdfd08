#include "distill/teacher_queries.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"
#include "core/rng.h"

namespace edgedistill::distill {
namespace {

constexpr double kInfinity = std::numeric_limits<double>::infinity();
// Discount of the bandit's statistics per round: rewards shrink as training goes on (every arm's
// loss decrease does), so old rounds count less (discounted UCB, Garivier & Moulines 2011).
constexpr double kBanditDiscount = 0.9;
// Exploration weight of the UCB bonus, for rewards in units of their running mean magnitude.
constexpr double kBanditExploration = 1.0;
constexpr size_t kScoreSamples = 50000;  // asked and skipped scores kept for the summary

// [B, T] per-token scores -> [B, T / window] item means, float64 on the CPU.
torch::Tensor item_means(const torch::Tensor& per_token, int64_t window) {
  const int64_t rows = per_token.size(0), length = per_token.size(1);
  ED_CHECK(length % window == 0, "item window ", window, " does not divide length ", length);
  return per_token.to(torch::kFloat64).reshape({rows, length / window, window}).mean(-1).cpu();
}

std::vector<double> to_vector(const torch::Tensor& scores) {
  const auto flat = scores.to(torch::kFloat64).contiguous().cpu().reshape({-1});
  return {flat.data_ptr<double>(), flat.data_ptr<double>() + flat.numel()};
}

double mean_of(const std::vector<double>& values) {
  double sum = 0;
  for (double v : values) sum += v;
  return values.empty() ? 0.0 : sum / static_cast<double>(values.size());
}

double quantile(std::vector<double> values, double q) {
  if (values.empty()) return 0.0;
  std::sort(values.begin(), values.end());
  const double position = q * static_cast<double>(values.size() - 1);
  const auto below = static_cast<size_t>(std::floor(position));
  const size_t above = std::min(values.size() - 1, below + 1);
  return values[below] + (position - static_cast<double>(below)) * (values[above] - values[below]);
}

void keep_sample(std::vector<double>& samples, double value) {
  if (samples.size() < kScoreSamples) samples.push_back(value);
}

}  // namespace

torch::Tensor entropy_scores(const torch::Tensor& logits, int64_t window) {
  torch::NoGradGuard no_grad;
  const auto logp = torch::log_softmax(logits.to(torch::kFloat32), -1);
  return item_means(-(logp.exp() * logp).sum(-1), window);
}

torch::Tensor margin_scores(const torch::Tensor& logits, int64_t window) {
  torch::NoGradGuard no_grad;
  const auto top = std::get<0>(torch::softmax(logits.to(torch::kFloat32), -1).topk(2, -1));
  return item_means(1.0 - (top.select(-1, 0) - top.select(-1, 1)), window);
}

torch::Tensor disagreement_scores(const torch::Tensor& logits_a, const torch::Tensor& logits_b,
                                  int64_t window) {
  torch::NoGradGuard no_grad;
  const auto p = torch::softmax(logits_a.to(torch::kFloat32), -1);
  const auto q = torch::softmax(logits_b.to(torch::kFloat32), -1);
  return item_means(0.5 * (p - q).abs().sum(-1), window);
}

double threshold_for_share(std::vector<double> recent, double share_above) {
  if (share_above <= 0) return kInfinity;
  if (share_above >= 1 || recent.empty()) return -kInfinity;
  return quantile(std::move(recent), 1.0 - share_above);
}

double rank_correlation(const std::vector<double>& x, const std::vector<double>& y) {
  ED_CHECK(x.size() == y.size(), "rank_correlation of ", x.size(), " and ", y.size(), " values");
  const size_t n = x.size();
  if (n < 2) return 0.0;
  auto ranks = [n](const std::vector<double>& values) {
    std::vector<size_t> order(n);
    for (size_t i = 0; i < n; ++i) order[i] = i;
    std::sort(order.begin(), order.end(),
              [&](size_t a, size_t b) { return values[a] < values[b]; });
    std::vector<double> rank(n);
    for (size_t begin = 0; begin < n;) {
      size_t end = begin + 1;
      while (end < n && values[order[end]] == values[order[begin]]) ++end;
      const double mean_rank = 0.5 * static_cast<double>(begin + end - 1);  // 0-based ranks
      for (size_t k = begin; k < end; ++k) rank[order[k]] = mean_rank;
      begin = end;
    }
    return rank;
  };
  const auto rx = ranks(x), ry = ranks(y);
  const double mx = mean_of(rx), my = mean_of(ry);
  double sxy = 0, sxx = 0, syy = 0;
  for (size_t i = 0; i < n; ++i) {
    sxy += (rx[i] - mx) * (ry[i] - my);
    sxx += (rx[i] - mx) * (rx[i] - mx);
    syy += (ry[i] - my) * (ry[i] - my);
  }
  return sxx > 0 && syy > 0 ? sxy / std::sqrt(sxx * syy) : 0.0;
}

TeacherQueries::TeacherQueries(const QueryConfig& config, uint64_t seed)
    : config_(config), seed_(core::derive_seed(seed, 0x71756572ULL)) {
  auto arm = [](const std::string& policy, bool middle) {
    return QueryArm{policy + (middle ? "/middle" : "/top"), policy, middle};
  };
  if (learned()) {
    // dropout_disagreement is left out: its two extra student passes cost more than a query saves.
    arms_ = {arm("entropy", false), arm("margin", false), arm("random", false),
             arm("entropy", true), arm("margin", true)};
    needed_ = {"entropy", "margin", "random"};
  } else {
    arms_ = {arm(config.policy, false)};
    needed_ = {config.policy};
  }
  pulls_.assign(arms_.size(), 0.0);
  rewards_.assign(arms_.size(), 0.0);
  rounds_.assign(arms_.size(), 0);
}

torch::Tensor TeacherQueries::random_scores(int64_t rows, int64_t items, uint64_t draw) const {
  const uint64_t stream = core::derive_seed(seed_, draw);
  auto scores = torch::empty({rows, items}, torch::kFloat64);
  auto* out = scores.data_ptr<double>();
  for (int64_t i = 0; i < rows * items; ++i) {
    out[i] =
        static_cast<double>(core::splitmix64(stream + static_cast<uint64_t>(i)) >> 11) * 0x1.0p-53;
  }
  return scores;
}

double TeacherQueries::band_width() const {
  const double debt = config_.budget * static_cast<double>(items_) - static_cast<double>(asked_);
  return std::clamp(config_.budget + debt / static_cast<double>(config_.window_items), 0.0, 1.0);
}

torch::Tensor TeacherQueries::decide(const std::map<std::string, torch::Tensor>& scores) {
  const auto& chosen = arms_[current_];
  const auto& chosen_scores = scores.at(chosen.policy);
  const auto values = to_vector(chosen_scores);
  const auto& recent = recent_[chosen.policy];
  const auto& reference = recent.empty() ? values : recent;
  const double width = band_width();
  const double above_low = chosen.middle ? 0.5 - width / 2 : 0.0;
  const double above_high = chosen.middle ? 0.5 + width / 2 : width;
  const double high = threshold_for_share(reference, above_low);
  const double low = threshold_for_share(reference, above_high);
  auto queried = torch::empty(chosen_scores.sizes(), torch::kBool);
  auto* flags = queried.data_ptr<bool>();
  std::vector<double> asked, skipped;
  for (size_t i = 0; i < values.size(); ++i) {
    flags[i] = values[i] > low && values[i] <= high;
    (flags[i] ? asked : skipped).push_back(values[i]);
  }
  for (const auto& policy : needed_) {
    auto& window = recent_[policy];
    for (double s : to_vector(scores.at(policy))) window.push_back(s);
    const auto excess = static_cast<int64_t>(window.size()) - config_.window_items;
    if (excess > 0) window.erase(window.begin(), window.begin() + excess);
  }
  for (double s : asked) keep_sample(asked_scores_, s);
  for (double s : skipped) keep_sample(skipped_scores_, s);
  items_ += static_cast<int64_t>(values.size());
  asked_ += static_cast<int64_t>(asked.size());
  if (round_open_) round_queries_ += static_cast<int64_t>(asked.size());
  batch_metrics_ = {{"query_threshold", std::isfinite(low) ? low : 0.0}};
  if (!asked.empty()) batch_metrics_.emplace_back("query_score_asked", mean_of(asked));
  if (!skipped.empty()) batch_metrics_.emplace_back("query_score_skipped", mean_of(skipped));
  if (learned()) batch_metrics_.emplace_back("query_arm", current_);
  return queried;
}

int TeacherQueries::choose_arm() const {
  for (size_t k = 0; k < arms_.size(); ++k) {
    if (rounds_[k] == 0) return static_cast<int>(k);  // every arm once first
  }
  double total = 0;
  for (double n : pulls_) total += n;
  int best = 0;
  double best_value = -kInfinity;
  for (size_t k = 0; k < arms_.size(); ++k) {
    const double n = std::max(pulls_[k], 1e-9);
    const double value =
        rewards_[k] / n + kBanditExploration * std::sqrt(std::max(0.0, std::log(total)) / n);
    if (value > best_value) {
      best_value = value;
      best = static_cast<int>(k);
    }
  }
  return best;
}

// The reward of a round is the held-out loss decrease over it per item sent to the teacher,
//   r = (L_start - L_end) / max(1, queries),
// divided by a running mean of |r| so that rewards are near unit size whatever the loss scale.
// Every arm's discounted statistics decay by kBanditDiscount, then the round's arm gets one pull
// and its reward; the next arm maximises mean reward + exploration bonus.
void TeacherQueries::next_round(double held_out_loss) {
  if (round_open_) {
    const double reward = (round_start_loss_ - held_out_loss) /
                          static_cast<double>(std::max<int64_t>(1, round_queries_));
    reward_scale_ =
        reward_scale_ == 0 ? std::abs(reward) : 0.9 * reward_scale_ + 0.1 * std::abs(reward);
    for (size_t k = 0; k < arms_.size(); ++k) {
      pulls_[k] *= kBanditDiscount;
      rewards_[k] *= kBanditDiscount;
    }
    pulls_[current_] += 1.0;
    rewards_[current_] += reward_scale_ > 0 ? reward / reward_scale_ : 0.0;
  }
  current_ = choose_arm();
  ++rounds_[current_];
  round_open_ = true;
  round_start_loss_ = held_out_loss;
  round_queries_ = 0;
}

int TeacherQueries::preferred_arm() const {
  return static_cast<int>(std::max_element(rounds_.begin(), rounds_.end()) - rounds_.begin());
}

torch::Tensor TeacherQueries::selection_strength(const std::map<std::string, torch::Tensor>& scores,
                                                 int arm) const {
  const auto& chosen = arms_.at(static_cast<size_t>(arm));
  const auto values = scores.at(chosen.policy).to(torch::kFloat64).cpu();
  if (!chosen.middle) return values;
  const auto recent = recent_.find(chosen.policy);
  const double median = recent != recent_.end() && !recent->second.empty()
                            ? quantile(recent->second, 0.5)
                            : quantile(to_vector(values), 0.5);
  return -(values - median).abs();
}

std::vector<train::Metric> TeacherQueries::summary() const {
  std::vector<train::Metric> out = {
      {"query_rate", items_ > 0 ? static_cast<double>(asked_) / static_cast<double>(items_) : 0.0},
      {"query_items", static_cast<double>(items_)}};
  for (const auto& [name, samples] :
       {std::pair{"asked", &asked_scores_}, std::pair{"skipped", &skipped_scores_}}) {
    if (samples->empty()) continue;
    const std::string prefix = str("query_score_", name, "_");
    out.emplace_back(prefix + "mean", mean_of(*samples));
    for (const auto& [label, q] :
         {std::pair{"p10", 0.1}, std::pair{"p50", 0.5}, std::pair{"p90", 0.9}}) {
      out.emplace_back(prefix + label, quantile(*samples, q));
    }
  }
  if (learned()) {
    for (size_t k = 0; k < arms_.size(); ++k) {
      auto name = arms_[k].name;
      std::replace(name.begin(), name.end(), '/', '_');
      out.emplace_back("query_rounds_" + name, static_cast<double>(rounds_[k]));
    }
  }
  return out;
}

nlohmann::json TeacherQueries::state() const {
  return {{"recent", recent_},
          {"current", current_},
          {"pulls", pulls_},
          {"rewards", rewards_},
          {"rounds", rounds_},
          {"reward_scale", reward_scale_},
          {"round_open", round_open_},
          {"round_start_loss", round_start_loss_},
          {"round_queries", round_queries_},
          {"items", items_},
          {"asked", asked_},
          {"asked_scores", asked_scores_},
          {"skipped_scores", skipped_scores_}};
}

void TeacherQueries::restore(const nlohmann::json& state) {
  recent_ = state.at("recent").get<std::map<std::string, std::vector<double>>>();
  if (state.at("pulls").size() != arms_.size()) {
    throw FileError(str("the checkpoint's query state has ", state.at("pulls").size(),
                        " arms, this run ", arms_.size(), "; it belongs to another config"));
  }
  current_ = state.at("current").get<int>();
  pulls_ = state.at("pulls").get<std::vector<double>>();
  rewards_ = state.at("rewards").get<std::vector<double>>();
  rounds_ = state.at("rounds").get<std::vector<int64_t>>();
  reward_scale_ = state.at("reward_scale").get<double>();
  round_open_ = state.at("round_open").get<bool>();
  round_start_loss_ = state.at("round_start_loss").get<double>();
  round_queries_ = state.at("round_queries").get<int64_t>();
  items_ = state.at("items").get<int64_t>();
  asked_ = state.at("asked").get<int64_t>();
  asked_scores_ = state.at("asked_scores").get<std::vector<double>>();
  skipped_scores_ = state.at("skipped_scores").get<std::vector<double>>();
}

}  // namespace edgedistill::distill
