#include "distill/distill_task.h"

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <map>
#include <numeric>
#include <optional>

#include "core/log.h"
#include "core/rng.h"
#include "data/prepare.h"
#include "distill/layer_drop.h"
#include "distill/layer_removal.h"
#include "distill/logit_losses.h"
#include "distill/student_init.h"
#include "distill/tokenizer_alignment.h"
#include "model/fused_ops.h"
#include "train/setup.h"
#include "train/token_windows.h"

namespace edgedistill::distill {

LanguageModelDistillTask::LanguageModelDistillTask(model::LlamaModel student,
                                                   const data::PreparedData& data,
                                                   const DistillRecipe& recipe,
                                                   torch::Device device, const Teacher* teacher,
                                                   const TeacherCache* cache,
                                                   const data::Tokenizer* teacher_tokenizer)
    : base_(student, data, recipe.base, device, /*aligned_windows=*/cache != nullptr),
      student_(student),
      teacher_(teacher),
      cache_(cache),
      teacher_tokenizer_(teacher_tokenizer),
      loss_(recipe.distill.losses, recipe.base.model,
            teacher != nullptr ? teacher->meta.config : recipe.base.model),
      run_teacher_(teacher != nullptr &&
                   (recipe.needs_live_teacher() || (loss_.needs_teacher_logits() && !cache))),
      device_(device),
      seed_(core::derive_seed(static_cast<uint64_t>(recipe.base.seed), 0x706c64ULL)),
      grad_accum_(recipe.base.train.grad_accum),
      layer_drop_(recipe.distill.layer_drop),
      removal_(recipe.distill.layer_removal),
      query_config_(recipe.distill.queries) {
  if (loss_.modules() != nullptr) loss_.modules()->to(device);
  if (query_config_.enabled()) {
    ED_CHECK(teacher != nullptr, "queries need the live teacher (checked by prepare_distillation)");
    queries_ = std::make_unique<TeacherQueries>(query_config_, seed_);
  }
  if (loss_.needs_aligned_teacher()) {
    ED_CHECK(teacher != nullptr, "uld needs the live teacher (checked by prepare_distillation)");
    // Teacher positions past the student's window are never paired.
    teacher_context_ = std::min<int64_t>(teacher->meta.config.llama.max_seq_len, base_.seq_len());
  }
}

void LanguageModelDistillTask::begin_step(int64_t step) {
  step_ = step;
  micro_ = 0;
  theta_ = layer_drop_.enabled ? keep_ratio(layer_drop_, step) : 1.0;
  if (queries_ && queries_->round_due(step)) {
    queries_->next_round(train::language_model_loss(*student_, base_.shard("valid"),
                                                    base_.seq_len(), base_.batch_size(),
                                                    query_config_.held_out_tokens, device_)
                             .first);
  }
}

void LanguageModelDistillTask::count_teacher(int64_t tokens, double flops, int64_t rows,
                                             int64_t length) {
  teacher_tokens_ += tokens;
  teacher_flops_ += flops;
  teacher_tokens_full_ += rows * length;
  teacher_flops_full_ += model::forward_flops(teacher_->meta.config.llama, rows, length);
}

void LanguageModelDistillTask::add_aligned_teacher(const torch::Tensor& inputs,
                                                   DistillBatch& batch) {
  torch::NoGradGuard no_grad;
  const auto& config = teacher_->meta.config.llama;
  const int64_t rows = inputs.size(0);
  if (teacher_tokenizer_ == nullptr) {
    const auto logits = teacher_->llama().forward(inputs).logits;  // [B, S, V]
    batch.aligned_teacher_logits = logits.reshape({-1, logits.size(-1)});
    count_teacher(inputs.numel(), model::forward_flops(config, rows, inputs.size(1)), rows,
                  inputs.size(1));
    return;
  }
  const auto alignment =
      align_windows(inputs.cpu(), base_.data().tokenizer(), *teacher_tokenizer_, teacher_context_);
  const int64_t length = alignment.teacher_inputs.size(1);
  if (length > 0) {
    const auto logits = teacher_->llama().forward(alignment.teacher_inputs.to(device_)).logits;
    batch.aligned_teacher_logits =
        logits.reshape({-1, logits.size(-1)}).index_select(0, alignment.teacher_rows.to(device_));
    count_teacher(alignment.teacher_tokens, model::forward_flops(config, rows, length), rows,
                  length);
  } else {
    batch.aligned_teacher_logits = torch::zeros({0, config.vocab_size}, torch::device(device_));
  }
  batch.aligned_rows = alignment.student_rows.to(device_);
}

TopKDistribution LanguageModelDistillTask::cached_teacher(const std::vector<int64_t>& starts,
                                                          int64_t seq_len,
                                                          const torch::Tensor& rows) const {
  auto top_k = cache_->lookup(starts, seq_len);
  for (auto* part : {&top_k.ids, &top_k.logprobs, &top_k.tail}) {
    *part = (rows.defined() ? part->index_select(0, rows) : *part).to(device_);
  }
  return top_k;
}

train::MicroBatchLoss LanguageModelDistillTask::next_micro_batch_loss() {
  std::vector<int64_t> starts;
  const auto batch = base_.next_batch(&starts);
  const int64_t seq_len = base_.seq_len();
  const auto inputs = batch.narrow(1, 0, seq_len);
  // Each micro-batch's draws (dropped blocks, random scores) come from its own counter.
  const auto draw = static_cast<uint64_t>(step_ * grad_accum_ + micro_++);
  auto options = loss_.student_options();
  std::vector<train::Metric> technique_terms;
  if (layer_drop_.enabled) {
    const int layers = student_->config().n_layers;
    options.block_scales = draw_block_scales(theta_, layers, seed_, draw);
    const auto run = std::count_if(options.block_scales.begin(), options.block_scales.end(),
                                   [](double scale) { return scale != 0; });
    blocks_run_ += run;
    block_slots_ += layers;
    technique_terms = {{"pld_theta", theta_}, {"pld_layers_run", static_cast<double>(run)}};
  }
  const auto student_out = student_->forward(inputs, options);
  const auto targets = batch.narrow(1, 1, seq_len).reshape({-1});
  train::MicroBatchLoss out;
  if (queries_ && query_config_.budget < 1.0) {
    out = queried_loss(inputs, targets, student_out, starts, draw);
  } else {
    // Plain distillation (a query budget of 1 sends every item: the same arithmetic).
    const int64_t vocab = student_out.logits.size(-1);
    DistillBatch distill_batch;
    distill_batch.student_logits = student_out.logits.reshape({-1, vocab});
    distill_batch.targets = targets;
    distill_batch.student = &student_out;
    model::ForwardOutput teacher_out;
    TopKDistribution top_k;
    if (loss_.needs_aligned_teacher()) {
      add_aligned_teacher(inputs, distill_batch);
    } else if (run_teacher_) {
      torch::NoGradGuard no_grad;
      teacher_out = teacher_->llama().forward(inputs, loss_.teacher_options());
      distill_batch.teacher_logits = teacher_out.logits.reshape({-1, vocab});
      distill_batch.teacher = &teacher_out;
      const int64_t rows = inputs.size(0);
      count_teacher(rows * seq_len,
                    model::forward_flops(teacher_->meta.config.llama, rows, seq_len), rows,
                    seq_len);
    } else if (cache_ != nullptr && loss_.needs_teacher_logits()) {
      top_k = cached_teacher(starts, seq_len, {});
      distill_batch.teacher_top_k = &top_k;
    }
    out = loss_.compute(distill_batch);
    if (queries_) out.terms.emplace_back("query_rate", 1.0);
  }
  for (auto& term : technique_terms) out.terms.push_back(std::move(term));
  out.items = inputs.numel();
  return out;
}

std::map<std::string, torch::Tensor> LanguageModelDistillTask::item_scores(
    const std::vector<std::string>& policies, const torch::Tensor& inputs,
    const torch::Tensor& student_logits, int64_t window, uint64_t draw) {
  const int64_t rows = inputs.size(0), items = inputs.size(1) / window;
  std::map<std::string, torch::Tensor> scores;
  for (const auto& policy : policies) {
    if (policy == "entropy") {
      scores[policy] = entropy_scores(student_logits.detach(), window);
    } else if (policy == "margin") {
      scores[policy] = margin_scores(student_logits.detach(), window);
    } else if (policy == "random") {
      scores[policy] = queries_->random_scores(rows, items, draw);
    } else if (policy == "dropout_disagreement") {
      torch::NoGradGuard no_grad;
      model::ForwardOptions noisy;
      noisy.residual_dropout = query_config_.dropout;
      const auto a = student_->forward(inputs, noisy).logits;
      const auto b = student_->forward(inputs, noisy).logits;
      scores[policy] = disagreement_scores(a, b, window);
    }
  }
  return scores;
}

torch::Tensor LanguageModelDistillTask::choose_items(const torch::Tensor& inputs,
                                                     const model::ForwardOutput& student_out,
                                                     int64_t window, uint64_t draw) {
  const int64_t rows = inputs.size(0), items = inputs.size(1) / window;
  if (query_config_.budget <= 0) return torch::zeros({rows, items}, torch::kBool);
  return queries_->decide(
      item_scores(queries_->needed_scores(), inputs, student_out.logits, window, draw));
}

std::vector<train::Metric> LanguageModelDistillTask::query_gain_probe(const std::string& split) {
  auto& student = *student_;
  const bool was_training = student.is_training();
  student.eval();
  // The dropout-disagreement score draws from the global generator; training's draws must not
  // depend on whether a probe ran.
  auto generator = at::detail::getDefaultCPUGenerator();
  const auto generator_state = generator.get_state();
  std::vector<torch::Tensor> parameters;
  for (const auto& p : student.parameters()) {
    if (p.requires_grad()) parameters.push_back(p);
  }
  const int64_t seq_len = base_.seq_len();
  // The flattened gradient of a loss over the student's parameters (zeros where it has none).
  auto gradient = [&](const torch::Tensor& loss, bool retain) {
    const auto grads = torch::autograd::grad({loss}, parameters, {}, retain, false, true);
    std::vector<torch::Tensor> flat;
    for (size_t i = 0; i < grads.size(); ++i) {
      flat.push_back(grads[i].defined()
                         ? grads[i].reshape({-1})
                         : torch::zeros({parameters[i].numel()}, parameters[i].options()));
    }
    return torch::cat(flat);
  };

  // The held-out loss's gradient, over the valid tokens the learned policy's reward uses.
  const auto& valid = base_.shard("valid");
  const int64_t windows =
      train::evaluation_window_count(valid, seq_len, query_config_.held_out_tokens);
  torch::Tensor held_out;
  for (int64_t first = 0; first < windows; first += base_.batch_size()) {
    const int64_t rows = std::min<int64_t>(base_.batch_size(), windows - first);
    const auto batch = train::evaluation_windows(valid, seq_len, first, rows).to(device_);
    const auto logits = student.forward(batch.narrow(1, 0, seq_len)).logits;
    const auto loss = model::cross_entropy(logits.reshape({-1, logits.size(-1)}),
                                           batch.narrow(1, 1, seq_len).reshape({-1}));
    const auto part =
        gradient(loss, false) * (static_cast<double>(rows) / static_cast<double>(windows));
    held_out = held_out.defined() ? held_out + part : part;
  }

  // Training items spread over the train split: each item's gain and the policies' scores.
  const int64_t window = query_config_.unit == "sequence" ? seq_len : query_config_.window;
  const int64_t per_sequence = seq_len / window;
  const auto& train_shard = base_.shard("train");
  const int64_t available = train::evaluation_window_count(train_shard, seq_len, 0);
  const int64_t sequences =
      std::min(available, (query_config_.probe_items + per_sequence - 1) / per_sequence);
  const int arm = queries_->preferred_arm();
  std::vector<std::string> policies = queries_->needed_scores();
  for (const char* policy : {"entropy", "margin"}) {
    if (std::find(policies.begin(), policies.end(), policy) == policies.end()) {
      policies.emplace_back(policy);
    }
  }
  std::vector<double> gains, selection, entropy, margin;
  for (int64_t s = 0; s < sequences; ++s) {
    const auto tokens =
        train::evaluation_windows(train_shard, seq_len, s * available / sequences, 1).to(device_);
    const auto inputs = tokens.narrow(1, 0, seq_len);
    const auto targets = tokens.narrow(1, 1, seq_len).reshape({-1});
    const auto logits = student.forward(inputs).logits;
    torch::Tensor teacher_logits;
    {
      torch::NoGradGuard no_grad;
      teacher_logits = teacher_->llama().forward(inputs).logits;
      teacher_logits = teacher_logits.reshape({-1, teacher_logits.size(-1)});
    }
    // A fixed draw far from the training steps' (which count up from 0).
    const auto scores =
        item_scores(policies, inputs, logits, window, ~uint64_t{0} - static_cast<uint64_t>(s));
    const auto strength = queries_->selection_strength(scores, arm);
    const auto flat = logits.reshape({-1, logits.size(-1)});
    for (int64_t j = 0; j < per_sequence; ++j) {
      if (static_cast<int64_t>(gains.size()) == query_config_.probe_items) break;
      DistillBatch part;
      part.student_logits = flat.narrow(0, j * window, window);
      part.targets = targets.narrow(0, j * window, window);
      part.teacher_logits = teacher_logits.narrow(0, j * window, window);
      // Asked, the item trains on the distillation loss; skipped, on its hard labels.
      const auto asked_minus_skipped =
          loss_.compute(part).loss - model::cross_entropy(part.student_logits, part.targets);
      gains.push_back(held_out.dot(gradient(asked_minus_skipped, true)).item<double>());
      selection.push_back(strength[0][j].item<double>());
      entropy.push_back(scores.at("entropy")[0][j].item<double>());
      margin.push_back(scores.at("margin")[0][j].item<double>());
    }
  }
  if (was_training) student.train();
  generator.set_state(generator_state);

  const auto positive = std::count_if(gains.begin(), gains.end(), [](double g) { return g > 0; });
  const double mean_gain = gains.empty() ? 0.0
                                         : std::accumulate(gains.begin(), gains.end(), 0.0) /
                                               static_cast<double>(gains.size());
  std::vector<train::Metric> out = {
      {split + "_query_gain_corr", rank_correlation(selection, gains)},
      {split + "_query_gain_corr_entropy", rank_correlation(entropy, gains)},
      {split + "_query_gain_corr_margin", rank_correlation(margin, gains)},
      {split + "_query_gain_mean", mean_gain},
      {split + "_query_gain_positive",
       gains.empty() ? 0.0 : static_cast<double>(positive) / static_cast<double>(gains.size())},
      {split + "_query_probe_items", static_cast<double>(gains.size())}};
  if (queries_->learned()) out.emplace_back(split + "_query_probe_arm", arm);
  return out;
}

train::MicroBatchLoss LanguageModelDistillTask::queried_loss(
    const torch::Tensor& inputs, const torch::Tensor& targets,
    const model::ForwardOutput& student_out, const std::vector<int64_t>& starts, uint64_t draw) {
  const int64_t rows = inputs.size(0), seq_len = inputs.size(1);
  const int64_t window = query_config_.unit == "sequence" ? seq_len : query_config_.window;
  const int64_t items = seq_len / window;
  const auto queried = choose_items(inputs, student_out, window, draw);
  const auto flags = queried.accessor<bool, 2>();

  // The teacher runs once per distinct prefix: a row goes in up to the end of its last queried
  // item (the teacher needs the item's left context, not the tokens after it).
  std::map<int64_t, std::vector<int64_t>> rows_by_end;
  for (int64_t r = 0; r < rows; ++r) {
    int64_t last = -1;
    for (int64_t j = 0; j < items; ++j) {
      if (flags[r][j]) last = j;
    }
    if (last >= 0) rows_by_end[(last + 1) * window].push_back(r);
  }
  std::vector<int64_t> asked_positions;  // flattened token positions, in teacher-logit order
  std::vector<torch::Tensor> teacher_logits;
  int64_t teacher_tokens = 0;
  double teacher_flops = 0;
  for (const auto& [end, group] : rows_by_end) {
    torch::NoGradGuard no_grad;
    const auto index = torch::tensor(group, torch::kInt64).to(device_);
    const auto logits =
        teacher_->llama().forward(inputs.index_select(0, index).narrow(1, 0, end)).logits;
    teacher_tokens += static_cast<int64_t>(group.size()) * end;
    teacher_flops +=
        model::forward_flops(teacher_->meta.config.llama, static_cast<int64_t>(group.size()), end);
    for (size_t i = 0; i < group.size(); ++i) {
      for (int64_t j = 0; j < items; ++j) {
        if (!flags[group[i]][j]) continue;
        teacher_logits.push_back(logits[static_cast<int64_t>(i)].narrow(0, j * window, window));
        for (int64_t t = 0; t < window; ++t) {
          asked_positions.push_back(group[i] * seq_len + j * window + t);
        }
      }
    }
  }
  count_teacher(teacher_tokens, teacher_flops, rows, seq_len);

  const int64_t vocab = student_out.logits.size(-1);
  const auto logits = student_out.logits.reshape({-1, vocab});
  const auto total = static_cast<double>(rows * seq_len);
  const auto asked = static_cast<double>(asked_positions.size());
  train::MicroBatchLoss out;
  torch::Tensor loss;
  if (!asked_positions.empty()) {
    const auto index = torch::tensor(asked_positions, torch::kInt64).to(device_);
    DistillBatch part;
    part.student_logits = logits.index_select(0, index);
    part.targets = targets.index_select(0, index);
    part.teacher_logits = torch::cat(teacher_logits);
    auto asked_loss = loss_.compute(part);
    loss = asked_loss.loss * (asked / total);
    out.terms = std::move(asked_loss.terms);
  }
  if (asked_positions.size() < static_cast<size_t>(rows * seq_len)) {
    // The items the teacher did not see: hard labels, or the cached teacher when there is one.
    std::vector<bool> is_asked(static_cast<size_t>(rows * seq_len), false);
    for (int64_t p : asked_positions) is_asked[static_cast<size_t>(p)] = true;
    std::vector<int64_t> rest;
    for (int64_t p = 0; p < rows * seq_len; ++p) {
      if (!is_asked[static_cast<size_t>(p)]) rest.push_back(p);
    }
    torch::Tensor rest_loss;
    if (asked_positions.empty() && cache_ == nullptr) {
      rest_loss = model::cross_entropy(logits, targets);  // as hard-label training computes it
    } else if (cache_ != nullptr) {
      const auto index = torch::tensor(rest, torch::kInt64);
      const auto top_k = cached_teacher(starts, seq_len, index);
      const auto on_device = index.to(device_);
      DistillBatch part;
      part.student_logits = logits.index_select(0, on_device);
      part.targets = targets.index_select(0, on_device);
      part.teacher_top_k = &top_k;
      rest_loss = loss_.compute(part).loss;
    } else {
      const auto index = torch::tensor(rest, torch::kInt64).to(device_);
      rest_loss =
          model::cross_entropy(logits.index_select(0, index), targets.index_select(0, index));
    }
    out.terms.emplace_back(cache_ != nullptr ? "loss_unqueried_cache" : "loss_unqueried_ce",
                           rest_loss.item<double>());
    const auto weighted = rest_loss * ((total - asked) / total);
    loss = loss.defined() ? loss + weighted : weighted;
  }
  out.loss = loss;
  out.terms.emplace_back("query_rate", asked / total);
  for (const auto& metric : queries_->batch_metrics()) out.terms.push_back(metric);
  out.terms.emplace_back("teacher_tokens", static_cast<double>(teacher_tokens));
  return out;
}

const std::vector<torch::Tensor>& LanguageModelDistillTask::held_out_batches() {
  if (held_out_.empty()) {
    const auto& shard = base_.shard("valid");
    const int64_t windows =
        train::evaluation_window_count(shard, base_.seq_len(), removal_.held_out_tokens);
    for (int64_t first = 0; first < windows; first += base_.batch_size()) {
      const int64_t rows = std::min<int64_t>(base_.batch_size(), windows - first);
      held_out_.push_back(
          train::evaluation_windows(shard, base_.seq_len(), first, rows).to(device_));
    }
  }
  return held_out_;
}

std::vector<double> LanguageModelDistillTask::removal_scores() {
  const auto& batches = held_out_batches();
  if (removal_.criterion == "influence") return block_influence(*student_, batches);
  // The distillation loss on the held-out batches with a block skipped; the teacher's logits are
  // computed once for all blocks.
  torch::NoGradGuard no_grad;
  const int64_t seq_len = base_.seq_len();
  std::vector<torch::Tensor> teacher_logits;
  for (const auto& batch : batches) {
    const auto logits = teacher_->llama().forward(batch.narrow(1, 0, seq_len)).logits;
    teacher_logits.push_back(logits.reshape({-1, logits.size(-1)}));
  }
  return skip_loss_increase(student_->config().n_layers, [&](const std::vector<double>& scales) {
    model::ForwardOptions options;
    options.block_scales = scales;
    double sum = 0;
    int64_t tokens = 0;
    for (size_t b = 0; b < batches.size(); ++b) {
      const auto logits = student_->forward(batches[b].narrow(1, 0, seq_len), options).logits;
      DistillBatch part;
      part.student_logits = logits.reshape({-1, logits.size(-1)});
      part.targets = batches[b].narrow(1, 1, seq_len).reshape({-1});
      part.teacher_logits = teacher_logits[b];
      const int64_t n = part.targets.size(0);
      sum += loss_.compute(part).loss.item<double>() * static_cast<double>(n);
      tokens += n;
    }
    return sum / static_cast<double>(std::max<int64_t>(1, tokens));
  });
}

train::TrainingTask::StepEvent LanguageModelDistillTask::end_step(int64_t done) {
  StepEvent event;
  const int layers = student_->config().n_layers;
  if (!removal_.enabled() || layers <= removal_.target_layers) return event;
  const bool due = removal_.at_steps.empty()
                       ? done % removal_.every_steps == 0
                       : std::find(removal_.at_steps.begin(), removal_.at_steps.end(), done) !=
                             removal_.at_steps.end();
  if (!due) return event;
  const auto scores = removal_scores();
  const int block =
      static_cast<int>(std::min_element(scores.begin(), scores.end()) - scores.begin());
  student_->remove_block(block);
  removed_.push_back(block);
  event.parameters_changed = true;
  event.metrics = {
      {"removed_block", block}, {"n_layers", layers - 1}, {"removal_score", scores[block]}};
  std::string listed;
  for (int b = 0; b < layers; ++b) {
    event.metrics.emplace_back(str("block_score_", b), scores[b]);
    listed += str(b == 0 ? "" : " ", std::setprecision(3), scores[b]);
  }
  event.message = str("removed block ", block, " of ", layers, " by ", removal_.criterion, " (",
                      listed, "); ", layers - 1, " blocks remain");
  return event;
}

nlohmann::json LanguageModelDistillTask::state() const {
  nlohmann::json state = {{"removed_blocks", removed_},
                          {"teacher_tokens", teacher_tokens_},
                          {"teacher_tokens_full", teacher_tokens_full_},
                          {"teacher_flops", teacher_flops_},
                          {"teacher_flops_full", teacher_flops_full_},
                          {"blocks_run", blocks_run_},
                          {"block_slots", block_slots_}};
  if (queries_) state["queries"] = queries_->state();
  return state;
}

void LanguageModelDistillTask::restore_state(const nlohmann::json& state) {
  for (int block : state.at("removed_blocks").get<std::vector<int>>()) {
    student_->remove_block(block);
    removed_.push_back(block);
  }
  teacher_tokens_ = state.at("teacher_tokens").get<int64_t>();
  teacher_tokens_full_ = state.at("teacher_tokens_full").get<int64_t>();
  teacher_flops_ = state.at("teacher_flops").get<double>();
  teacher_flops_full_ = state.at("teacher_flops_full").get<double>();
  blocks_run_ = state.at("blocks_run").get<int64_t>();
  block_slots_ = state.at("block_slots").get<int64_t>();
  if (queries_) queries_->restore(state.at("queries"));
  summed_.mark(counters());
}

std::vector<double> LanguageModelDistillTask::counters() const {
  std::vector<double> values = {static_cast<double>(teacher_tokens_),
                                static_cast<double>(teacher_tokens_full_),
                                teacher_flops_,
                                teacher_flops_full_,
                                static_cast<double>(blocks_run_),
                                static_cast<double>(block_slots_)};
  if (queries_) {
    for (const double value : queries_->counters()) values.push_back(value);
  }
  return values;
}

void LanguageModelDistillTask::synchronize(train::ProcessGroup& group) {
  const auto totals = summed_.sync(group, counters(), "the distillation counters");
  teacher_tokens_ = static_cast<int64_t>(totals[0]);
  teacher_tokens_full_ = static_cast<int64_t>(totals[1]);
  teacher_flops_ = totals[2];
  teacher_flops_full_ = totals[3];
  blocks_run_ = static_cast<int64_t>(totals[4]);
  block_slots_ = static_cast<int64_t>(totals[5]);
  if (queries_) queries_->set_counters({totals[6], totals[7]});
}

std::vector<train::Metric> LanguageModelDistillTask::summary() const {
  std::vector<train::Metric> out;
  if (teacher_tokens_full_ > 0) {
    out = {{"teacher_tokens", static_cast<double>(teacher_tokens_)},
           {"teacher_tokens_full", static_cast<double>(teacher_tokens_full_)},
           {"teacher_flops", teacher_flops_},
           {"teacher_flops_saved", teacher_flops_full_ - teacher_flops_}};
  }
  if (block_slots_ > 0) {
    out.emplace_back("pld_blocks_run_share",
                     static_cast<double>(blocks_run_) / static_cast<double>(block_slots_));
  }
  if (removal_.enabled()) {
    out.emplace_back("n_layers", student_->config().n_layers);
  }
  if (queries_) {
    for (const auto& metric : queries_->summary()) out.push_back(metric);
  }
  return out;
}

std::vector<train::Metric> LanguageModelDistillTask::evaluate(const std::string& split) {
  auto metrics = base_.evaluate(split);
  // A teacher with another tokenizer cannot read the student's evaluation windows.
  if (teacher_ == nullptr || teacher_tokenizer_ != nullptr) return metrics;
  const auto& shard = base_.shard(split);
  if (teacher_ppl_.count(split) == 0) {
    const auto [loss, tokens] =
        train::language_model_loss(teacher_->llama(), shard, base_.seq_len(), base_.batch_size(),
                                   base_.eval_tokens(), device_);
    teacher_ppl_[split] = std::exp(loss);
  }
  const auto [kl, tokens] = teacher_student_kl(*student_, teacher_->llama(), shard, base_.seq_len(),
                                               base_.batch_size(), base_.eval_tokens(), device_);
  metrics.emplace_back(split + "_teacher_kl", kl);
  metrics.emplace_back(split + "_teacher_ppl", teacher_ppl_[split]);
  if (queries_ && split == "valid" && query_config_.probe_items > 0) {
    for (auto& metric : query_gain_probe(split)) metrics.push_back(std::move(metric));
  }
  return metrics;
}

std::pair<double, int64_t> teacher_student_kl(model::LlamaModelImpl& student,
                                              model::LlamaModelImpl& teacher,
                                              const data::TokenShard& shard, int64_t seq_len,
                                              int64_t batch_size, int64_t max_tokens,
                                              torch::Device device) {
  const bool was_training = student.is_training();
  student.eval();
  const auto result = train::evaluation_mean(
      shard, seq_len, batch_size, max_tokens, device, [&](const torch::Tensor& batch) {
        const auto inputs = batch.narrow(1, 0, seq_len);
        const auto s = student.forward(inputs).logits;
        const auto t = teacher.forward(inputs).logits;
        return logit_loss(s.reshape({-1, s.size(-1)}), t.reshape({-1, t.size(-1)}), {},
                          LogitLossOptions{});
      });
  if (was_training) student.train();
  return result;
}

ImageDistillTask::ImageDistillTask(model::MlpClassifier student, const data::ImageSplits& splits,
                                   const DistillRecipe& recipe, torch::Device device,
                                   const Teacher& teacher)
    : base_(std::move(student), splits, recipe.base, device),
      teacher_(teacher),
      loss_(recipe.distill.losses, recipe.base.model, teacher.meta.config) {}

train::MicroBatchLoss ImageDistillTask::next_micro_batch_loss() {
  const auto batch = base_.next_batch();
  DistillBatch distill_batch;
  distill_batch.student_logits = base_.mlp().forward(batch.pixels);
  distill_batch.targets = batch.labels;
  if (loss_.needs_teacher_logits()) {
    torch::NoGradGuard no_grad;
    distill_batch.teacher_logits = teacher_.mlp().forward(batch.pixels);
  }
  auto out = loss_.compute(distill_batch);
  out.items = batch.labels.size(0);
  return out;
}

namespace {

// The checks between the teacher sources and the terms that a config file cannot express.
void check_teacher_sources(const DistillRecipe& recipe) {
  const bool llama = recipe.base.model.arch == "llama";
  const bool teacher = !recipe.teacher.empty(), cache = !recipe.teacher_cache.empty();
  if (recipe.needs_teacher() && !teacher && !cache) {
    throw InputError(
        "distill needs a teacher: give --teacher DIR (a checkpoint or finished run directory, e.g. "
        "runs/quickstart/teacher) or --teacher-cache DIR");
  }
  if (recipe.needs_live_teacher() && !teacher) {
    throw InputError(
        "the hidden, attention_relation and contrastive terms need the live teacher's internals, "
        "which a teacher cache does not hold; give --teacher DIR as well, or drop those terms");
  }
  if (recipe.distills_across_tokenizers() && !teacher) {
    throw InputError(
        "a uld term runs the live teacher on the student's text re-encoded with the teacher's "
        "tokenizer; give --teacher DIR");
  }
  if (recipe.distills_across_tokenizers() && cache) {
    throw InputError(
        "a teacher cache holds the teacher's top-k on the student's own token windows, which a "
        "uld term does not use (it runs the live teacher on re-encoded text); drop "
        "--teacher-cache");
  }
  if (cache && !llama) {
    throw InputError(
        "a teacher cache holds language-model logits; an image classifier distills "
        "from a live --teacher");
  }
  if (recipe.distill.queries.enabled() && !teacher) {
    throw InputError(
        "distill.queries sends the items the student picks to the live teacher; give --teacher "
        "DIR");
  }
  if (recipe.distill.layer_removal.enabled() && recipe.distill.layer_removal.criterion == "loss" &&
      !teacher) {
    throw InputError(
        "distill.layer_removal.criterion = loss measures the distillation loss on held-out data, "
        "which needs the live teacher; give --teacher DIR or use criterion influence");
  }
  if (recipe.student.init == "teacher-layers" && (!teacher || !llama)) {
    throw InputError(
        "student.init = teacher-layers copies blocks from a live llama teacher; give --teacher "
        "DIR");
  }
}

// "byte tokenizer of 259 tokens, sha256 0123456789ab": a description that tells two tokenizers of
// the same kind and size apart.
std::string tokenizer_name(const data::Tokenizer& tokenizer) {
  return str(tokenizer.description(), ", sha256 ", tokenizer.hash().substr(0, 12));
}

// The teacher's tokenizer when it differs from the data's `student` one; the InputErrors say why
// distillation cannot go on: no uld term (naming both tokenizers), or a recipe that needs the two
// vocabularies to be one.
std::unique_ptr<data::Tokenizer> open_teacher_tokenizer(const DistillRecipe& recipe,
                                                        const Teacher& teacher,
                                                        const data::Tokenizer& student) {
  auto tokenizer = data::open_tokenizer(teacher.dir);
  if (tokenizer->hash() != teacher.meta.tokenizer_hash) {
    throw InputError(str("the tokenizer found for the teacher '", teacher.dir.string(), "' (",
                         tokenizer_name(*tokenizer),
                         ") is not the one it was trained with (sha256 ",
                         teacher.meta.tokenizer_hash.substr(0, 12),
                         "); restore the data directory its model.json names"));
  }
  if (!recipe.distills_across_tokenizers()) {
    throw InputError(
        str("the teacher '", teacher.dir.string(), "' uses another tokenizer (",
            tokenizer_name(*tokenizer), ") than this recipe's data (", tokenizer_name(student),
            "); distill across tokenizers with a uld loss term (--set "
            "'distill.losses=[{\"kind\": \"uld\"}, {\"kind\": \"ce\"}]', or {\"kind\": "
            "\"uld\"} in the recipe's distill.losses), or on the teacher's tokenizer (--tokenizer ",
            teacher.dir.string(), ")"));
  }
  if (recipe.student.init == "teacher-layers") {
    throw InputError(
        str("student.init = teacher-layers copies the teacher's embeddings and head, "
            "but the teacher '",
            teacher.dir.string(), "' uses another tokenizer (", tokenizer_name(*tokenizer),
            ") than this recipe's data (", tokenizer_name(student),
            "); start the student from scratch"));
  }
  return tokenizer;
}

}  // namespace

DistillSetup prepare_distillation(DistillRecipe recipe, const std::filesystem::path& cache_root) {
  DistillSetup setup;
  // A student that starts from a checkpoint (a pruned model to heal) brings its own shape.
  std::optional<model::LoadedModel> start;
  if (recipe.student.init == "checkpoint") {
    const fs::path dir = resolve_checkpoint_dir(recipe.student.from, "student.from");
    start = model::load_model(dir);
    recipe.student.from = dir.string();
    recipe.base.model = start->meta.config;
    if (!start->masks.empty() && recipe.distill.layer_removal.target_layers > 0) {
      throw InputError(str("the student '", dir.string(),
                           "' is pruned (mask.safetensors) and distill.layer_removal would "
                           "renumber its masked blocks; heal it without layer removal"));
    }
  }
  const bool vocab_from_tokenizer =
      recipe.base.model.arch == "llama" && recipe.base.model.llama.vocab_size == 0;
  train::resolve_vocab_size(recipe.base);
  setup.device = train::resolve_device(recipe.base.device);
  check_teacher_sources(recipe);
  if (!recipe.teacher.empty()) {
    setup.teacher = std::make_unique<Teacher>(load_teacher(recipe.teacher, setup.device));
    if (setup.teacher->meta.config.arch != recipe.base.model.arch) {
      throw InputError(str("the teacher '", setup.teacher->dir.string(), "' is a ",
                           setup.teacher->meta.config.arch, " model but the student is a ",
                           recipe.base.model.arch, " model; give a teacher of the same kind"));
    }
  }
  if (!recipe.teacher_cache.empty()) {
    setup.cache = std::make_unique<TeacherCache>(recipe.teacher_cache);
  }
  // A teacher whose embedding is padded beyond its tokenizer (Qwen2.5: 151,936 rows for 151,665
  // tokens) scores its padded width; a student sized by the tokenizer takes the same width, so
  // the two distributions line up id for id (the padded ids never occur in the data).
  if (vocab_from_tokenizer && !recipe.distills_across_tokenizers()) {
    int64_t teacher_vocab = 0;
    if (setup.teacher && setup.teacher->is_llama()) {
      teacher_vocab = setup.teacher->meta.config.llama.vocab_size;
    } else if (setup.cache) {
      teacher_vocab = setup.cache->info().vocab_size;
    }
    if (teacher_vocab > recipe.base.model.llama.vocab_size) {
      core::info("distill: the student takes the teacher's padded vocabulary width ", teacher_vocab,
                 " (the tokenizer has ", recipe.base.model.llama.vocab_size, ")");
      recipe.base.model.llama.vocab_size = static_cast<int>(teacher_vocab);
    }
  }
  setup.recipe = std::move(recipe);
  const auto& base = setup.recipe.base;

  torch::manual_seed(static_cast<uint64_t>(base.seed));
  auto module = start ? start->module : model::build_model(base.model);
  module->to(setup.device);
  model::WeightMasks masks;
  if (start) {
    for (const auto& [name, mask] : start->masks) masks[name] = mask.to(setup.device);
  }
  if (base.model.arch == "mlp") {
    setup.images = std::make_unique<data::ImageSplits>(data::load_image_splits(base.data));
    setup.task = std::make_unique<ImageDistillTask>(
        model::MlpClassifier(std::dynamic_pointer_cast<model::MlpClassifierImpl>(module)),
        *setup.images, setup.recipe, setup.device, *setup.teacher);
    return setup;
  }

  model::LlamaModel student(std::dynamic_pointer_cast<model::LlamaModelImpl>(module));
  setup.text_data =
      std::make_unique<data::PreparedData>(data::ensure_prepared(base.data, cache_root));
  const std::string tokenizer_hash = setup.text_data->tokenizer().hash();
  if (setup.teacher) {
    if (setup.teacher->meta.tokenizer_hash != tokenizer_hash) {
      setup.teacher_tokenizer =
          open_teacher_tokenizer(setup.recipe, *setup.teacher, setup.text_data->tokenizer());
    }
    if (setup.recipe.student.init == "teacher-layers") {
      init_from_teacher_layers(*student, setup.teacher->llama(), setup.recipe.student);
    }
  }
  if (start && start->meta.tokenizer_hash != tokenizer_hash) {
    throw InputError(str("the student '", setup.recipe.student.from,
                         "' was trained with another tokenizer than this recipe's data; distill "
                         "on the data config it was trained on"));
  }
  if (setup.cache) {
    const auto train_shard = setup.text_data->shard("train");
    setup.cache->require_match(
        setup.teacher ? setup.teacher->weights_sha256 : setup.cache->info().teacher_weights_sha256,
        tokenizer_hash, base.train.seq_len, train_shard.size());
  }
  auto task = std::make_unique<LanguageModelDistillTask>(
      student, *setup.text_data, setup.recipe, setup.device, setup.teacher.get(), setup.cache.get(),
      setup.teacher_tokenizer.get());
  task->set_masks(std::move(masks));
  setup.task = std::move(task);
  return setup;
}

}  // namespace edgedistill::distill
