#include "prune/structured.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"

namespace edgedistill::prune {

namespace {

constexpr int kRowMultiple = 32;  // GGUF quant block rows (model_config.cpp)

// The indices of the `keep` largest of `importance`, ascending (ties keep the earlier index).
std::vector<int64_t> largest(const std::vector<double>& importance, int64_t keep) {
  std::vector<int64_t> order(importance.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return importance[a] > importance[b]; });
  order.resize(keep);
  std::sort(order.begin(), order.end());
  return order;
}

std::vector<double> to_vector(const torch::Tensor& t) {
  const auto c = t.to(torch::kFloat64).contiguous();
  return {c.data_ptr<double>(), c.data_ptr<double>() + c.numel()};
}

// The rows of the heads of `groups` in a [heads * head_dim, ...] projection with `per_group`
// heads per kv group.
torch::Tensor head_rows(const std::vector<int64_t>& groups, int64_t per_group, int64_t head_dim) {
  std::vector<int64_t> rows;
  for (const int64_t group : groups) {
    for (int64_t r = group * per_group * head_dim; r < (group + 1) * per_group * head_dim; ++r) {
      rows.push_back(r);
    }
  }
  return torch::tensor(rows, torch::kInt64);
}

int64_t total_parameters(const model::LlamaConfig& config) {
  return model::count_parameters(config).total;
}

}  // namespace

StructuredPlan plan_structured(const model::LlamaConfig& config,
                               const std::vector<BlockActivations>& stats,
                               const StructuredOptions& options) {
  ED_CHECK(static_cast<int>(stats.size()) == config.n_layers, "statistics for every block");
  StructuredPlan plan;
  plan.config = config;
  for (const auto& s : stats) plan.influence.push_back(s.influence);
  const auto& influence = plan.influence;
  const int64_t head_dim = config.head_dim(), per_group = config.n_heads / config.n_kv_heads;

  // Heads: whole kv groups, the same number in every block.
  const auto groups_removed = static_cast<int>(std::llround(options.heads * config.n_kv_heads));
  if (options.heads > 0 && groups_removed == 0) {
    throw InputError(str("--heads ", options.heads, " rounds to no whole GQA group of the ",
                         config.n_kv_heads, " per block (each is ", 100.0 / config.n_kv_heads,
                         " % of the heads); give at least ", 50.0 / config.n_kv_heads, " %"));
  }
  if (groups_removed >= config.n_kv_heads) {
    throw InputError(str("--heads ", options.heads, " would remove all ", config.n_kv_heads,
                         " GQA groups of every block; keep at least one"));
  }
  const int groups_kept = config.n_kv_heads - groups_removed;
  if ((groups_kept * head_dim) % kRowMultiple != 0) {
    throw InputError(str("keeping ", groups_kept, " GQA groups of width ", head_dim,
                         " gives k/v rows of ", groups_kept * head_dim,
                         ", not a multiple of 32 (GGUF); remove another number of heads"));
  }
  if (groups_removed > 0) {
    plan.config.n_kv_heads = groups_kept;
    plan.config.n_heads = static_cast<int>(groups_kept * per_group);
    plan.config.attention_head_dim = static_cast<int>(head_dim);
  }

  // Layers: those of least influence.
  if (options.layers < 0 || options.layers >= config.n_layers) {
    throw InputError(str("--layers ", options.layers, " must leave at least one of the ",
                         config.n_layers, " blocks"));
  }
  std::vector<double> negated(influence.size());
  std::transform(influence.begin(), influence.end(), negated.begin(), [](double v) { return -v; });
  for (const int64_t block : largest(negated, options.layers)) {
    plan.removed_layers.push_back(static_cast<int>(block));
  }
  plan.config.n_layers = config.n_layers - options.layers;

  // FFN width: a share, or what a parameter share leaves room for.
  if (options.ffn > 0 && options.params > 0) {
    throw InputError("give --ffn or --params, not both: --params solves for the FFN width");
  }
  if (options.params > 0) {
    const double budget = (1.0 - options.params) * static_cast<double>(total_parameters(config));
    int width = config.ffn_dim - config.ffn_dim % kRowMultiple;
    auto trial = plan.config;
    for (; width >= kRowMultiple; width -= kRowMultiple) {
      trial.ffn_dim = width;
      if (static_cast<double>(total_parameters(trial)) <= budget) break;
    }
    if (width < kRowMultiple) {
      throw InputError(str("--params ", options.params,
                           " is out of reach: even an FFN of 32 "
                           "channels leaves more parameters; remove more heads or layers"));
    }
    plan.config.ffn_dim = width;
  } else {
    const auto removed = std::llround(options.ffn * config.ffn_dim / kRowMultiple) * kRowMultiple;
    plan.config.ffn_dim = static_cast<int>(config.ffn_dim - removed);
    if (plan.config.ffn_dim < kRowMultiple) {
      throw InputError(str("--ffn ", options.ffn, " would leave ", plan.config.ffn_dim,
                           " FFN channels; keep at least 32"));
    }
  }

  for (int block = 0; block < config.n_layers; ++block) {
    const auto& s = stats[block];
    // Each query head's output norm, summed over the heads of its group.
    const auto head_norms = s.context.view({config.n_heads, head_dim}).sum(1).sqrt();
    const auto group_norms = to_vector(head_norms.view({config.n_kv_heads, per_group}).sum(1));
    plan.group_importance.push_back(group_norms);
    plan.kept_groups.push_back(largest(group_norms, groups_kept));
    const auto channel = s.ffn_hidden.sqrt();
    plan.channel_importance.push_back(channel);
    plan.kept_channels.push_back(largest(to_vector(channel), plan.config.ffn_dim));
  }
  plan.config.validate("pruned model");
  return plan;
}

model::LlamaModel shrink_model(model::LlamaModelImpl& source, const StructuredPlan& plan) {
  torch::NoGradGuard no_grad;
  const auto& from_config = source.config();
  model::LlamaModel target(plan.config);
  target->to(source.token_embd->weight.device());
  target->token_embd->weight.copy_(source.token_embd->weight);
  target->output_norm->weight.copy_(source.output_norm->weight);
  if (source.output) target->output->weight.copy_(source.output->weight);
  const int64_t head_dim = from_config.head_dim();
  const int64_t per_group = from_config.n_heads / from_config.n_kv_heads;
  int kept = 0;
  for (int block = 0; block < from_config.n_layers; ++block) {
    if (std::binary_search(plan.removed_layers.begin(), plan.removed_layers.end(), block)) {
      continue;
    }
    auto& from = *source.blk[block]->as<model::LlamaBlockImpl>();
    auto& to = *target->blk[kept++]->as<model::LlamaBlockImpl>();
    const auto device = from.attn_q->weight.device();
    const auto q_rows = head_rows(plan.kept_groups[block], per_group, head_dim).to(device);
    const auto kv_rows = head_rows(plan.kept_groups[block], 1, head_dim).to(device);
    const auto channels = torch::tensor(plan.kept_channels[block], torch::kInt64).to(device);
    to.attn_norm->weight.copy_(from.attn_norm->weight);
    to.ffn_norm->weight.copy_(from.ffn_norm->weight);
    to.attn_q->weight.copy_(from.attn_q->weight.index_select(0, q_rows));
    to.attn_k->weight.copy_(from.attn_k->weight.index_select(0, kv_rows));
    to.attn_v->weight.copy_(from.attn_v->weight.index_select(0, kv_rows));
    if (from.attn_q->bias.defined()) {  // Qwen2's q/k/v biases follow their rows
      to.attn_q->bias.copy_(from.attn_q->bias.index_select(0, q_rows));
      to.attn_k->bias.copy_(from.attn_k->bias.index_select(0, kv_rows));
      to.attn_v->bias.copy_(from.attn_v->bias.index_select(0, kv_rows));
    }
    to.attn_output->weight.copy_(from.attn_output->weight.index_select(1, q_rows));
    to.ffn_gate->weight.copy_(from.ffn_gate->weight.index_select(0, channels));
    to.ffn_up->weight.copy_(from.ffn_up->weight.index_select(0, channels));
    to.ffn_down->weight.copy_(from.ffn_down->weight.index_select(1, channels));
  }
  return target;
}

}  // namespace edgedistill::prune
