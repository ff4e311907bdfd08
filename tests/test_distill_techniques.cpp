// Progressive layer dropping, progressive layer removal and teacher queries: their formulas, their
// effect on the model, and whole runs against the plain runs they must reduce to.
#include <cmath>
#include <numeric>

#include "core/config.h"
#include "data/prepare.h"
#include "data/prepared_data.h"
#include "distill/distill_task.h"
#include "distill/layer_drop.h"
#include "distill/layer_removal.h"
#include "distill/logit_losses.h"
#include "distill/teacher_queries.h"
#include "distill_fixtures.h"
#include "io/safetensors.h"
#include "model/checkpoint.h"
#include "test_util.h"
#include "tiny_recipe.h"
#include "torch_catch.h"
#include "train/optimizer.h"
#include "train/token_windows.h"

using namespace edgedistill;
using namespace edgedistill::distill;
namespace fs = std::filesystem;

namespace {

double max_rel_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return ((a - b).abs().max() / b.abs().max()).item<double>();
}

model::LlamaConfig tiny_llama(int layers) {
  model::LlamaConfig config;
  config.vocab_size = 61;
  config.dim = 64;
  config.n_layers = layers;
  config.n_heads = 2;
  config.n_kv_heads = 1;
  config.ffn_dim = 64;
  config.max_seq_len = 16;
  config.init_std = 0.2;  // blocks that change the residual stream visibly
  return config;
}

model::LlamaModel tiny_model(int layers, uint64_t seed) {
  torch::manual_seed(seed);
  return model::LlamaModel(tiny_llama(layers));
}

// Makes block `index` the identity: both branches write nothing into the residual stream.
void make_identity(model::LlamaModelImpl& model, int index) {
  torch::NoGradGuard no_grad;
  auto block = model.blk[index]->as<model::LlamaBlockImpl>();
  block->attn_output->weight.zero_();
  block->ffn_down->weight.zero_();
}

torch::Tensor final_weights(const fs::path& run) {
  const auto loaded = model::load_model(run / "final");
  std::vector<torch::Tensor> flat;
  for (const auto& p : loaded.module->parameters()) flat.push_back(p.reshape({-1}));
  return torch::cat(flat);
}

double summary_value(const fs::path& run, const std::string& key) {
  const auto result = core::read_json_file(run / "result.json", "result");
  REQUIRE(result.contains(key));
  return result.at(key).get<double>();
}

}  // namespace

TEST_CASE("layer dropping's keep schedule and per-block probabilities at known steps") {
  LayerDropConfig config;  // theta_bar 0.5, gamma 0.001 (Zhang & He 2020)
  CHECK(keep_ratio(config, 0) == Approx(1.0));
  CHECK(keep_ratio(config, 1000) == Approx(0.5 * std::exp(-1.0) + 0.5));  // 0.68394
  CHECK(keep_ratio(config, 1000000) == Approx(0.5));
  // p_l = 1 - (l / L)(1 - theta), l = 1..L: with theta 0.6 and L = 4, 0.9, 0.8, 0.7, 0.6.
  const std::vector<double> expected = {0.9, 0.8, 0.7, 0.6};
  for (int block = 0; block < 4; ++block) {
    CHECK(keep_probability(0.6, block, 4) == Approx(expected[block]));
  }
  // The draws keep each block at its rate and scale a kept block by 1 / p_l.
  std::vector<int> kept(4, 0);
  const int draws = 20000;
  for (int d = 0; d < draws; ++d) {
    const auto scales = draw_block_scales(0.6, 4, 7, static_cast<uint64_t>(d));
    for (int block = 0; block < 4; ++block) {
      if (scales[block] != 0) {
        CHECK(scales[block] == Approx(1.0 / expected[block]));
        ++kept[block];
      }
    }
  }
  for (int block = 0; block < 4; ++block) {
    CHECK(static_cast<double>(kept[block]) / draws == Approx(expected[block]).margin(0.012));
  }
  // The same (seed, draw) gives the same blocks: what a resumed run relies on.
  CHECK(draw_block_scales(0.6, 4, 7, 123) == draw_block_scales(0.6, 4, 7, 123));
}

TEST_CASE("a block's mean output over many drop samples equals its full output") {
  auto model = tiny_model(1, 3);
  const auto tokens = torch::randint(0, 61, {2, 8}, torch::kInt64);
  model::ForwardOptions capture;
  capture.hidden_states = true;
  torch::NoGradGuard no_grad;
  const auto full = model->forward(tokens, capture);
  const auto x = full.hidden_states[0], out = full.hidden_states[1];
  // Scaled by 1 / p analytically: x + (block(x) - x) / p.
  const double p = keep_probability(0.6, 0, 1);  // the only block of one: p = theta = 0.6
  auto scaled = capture;
  scaled.block_scales = {1.0 / p};
  CHECK(max_rel_diff(model->forward(tokens, scaled).hidden_states[1], x + (out - x) / p) < 1e-5);
  // The sample mean of the stochastic block converges to the full output.
  auto sum = torch::zeros_like(out);
  const int samples = 4000;
  for (int d = 0; d < samples; ++d) {
    auto options = capture;
    options.block_scales = draw_block_scales(0.6, 1, 11, static_cast<uint64_t>(d));
    sum += model->forward(tokens, options).hidden_states[1];
  }
  const auto mean = sum / samples;
  // The mean is x + (k / (N p)) (out - x) for k kept of N: within a few standard errors of
  // sqrt((1 - p) / (N p)) = 0.0102 relative to the branch.
  const double error = ((mean - out).norm() / (out - x).norm()).item<double>();
  CHECK(error < 0.04);
  CHECK(error > 0);  // it is a random mean, not the full pass
}

TEST_CASE("a dropped block does not run: its parameters get no gradient") {
  auto model = tiny_model(3, 5);
  const auto tokens = torch::randint(0, 61, {2, 8}, torch::kInt64);
  model::ForwardOptions options;
  options.block_scales = {1.25, 0.0, 2.0};
  model->forward(tokens, options).logits.square().mean().backward();
  for (const auto& item : model->named_parameters()) {
    const bool in_dropped = item.key().rfind("blk.1.", 0) == 0;
    INFO(item.key());
    CHECK(item.value().grad().defined() == !in_dropped);
  }
  // A dropped block is the identity: its output is its input.
  torch::NoGradGuard no_grad;
  options.hidden_states = true;
  const auto out = model->forward(tokens, options);
  CHECK(torch::equal(out.hidden_states[1], out.hidden_states[2]));
}

TEST_CASE("layer removal scores an identity block lowest and deletes it") {
  auto model = tiny_model(3, 9);
  make_identity(*model, 1);
  const std::vector<torch::Tensor> batches = {torch::randint(0, 61, {4, 9}, torch::kInt64),
                                              torch::randint(0, 61, {3, 9}, torch::kInt64)};
  const auto influence = block_influence(*model, batches);
  REQUIRE(influence.size() == 3);
  CHECK(influence[1] < 1e-9);
  CHECK(influence[0] > 1e-3);
  CHECK(influence[2] > 1e-3);
  // Influence by hand for block 0 on the first batch alone: 1 - mean cos over its tokens.
  {
    torch::NoGradGuard no_grad;
    model::ForwardOptions capture;
    capture.hidden_states = true;
    const auto out = model->forward(batches[0].narrow(1, 0, 8), capture);
    const auto a = out.hidden_states[0].reshape({-1, 64}).to(torch::kFloat64);
    const auto b = out.hidden_states[1].reshape({-1, 64}).to(torch::kFloat64);
    double sum = 0;
    for (int64_t t = 0; t < a.size(0); ++t) {
      sum += 1 - (a[t].dot(b[t]) / (a[t].norm() * b[t].norm())).item<double>();
    }
    CHECK(block_influence(*model, {batches[0]})[0] == Approx(sum / a.size(0)).epsilon(1e-9));
  }
  // The loss criterion: the model's own logits as the teacher, so the full model scores 0 and
  // skipping a block costs KL >= 0, exactly 0 for the identity block.
  torch::NoGradGuard no_grad;
  const auto tokens = batches[0].narrow(1, 0, 8);
  const auto reference = model->forward(tokens).logits.reshape({-1, 61});
  const auto increase = skip_loss_increase(3, [&](const std::vector<double>& scales) {
    model::ForwardOptions options;
    options.block_scales = scales;
    const auto logits = model->forward(tokens, options).logits.reshape({-1, 61});
    return logit_loss(logits, reference, {}, LogitLossOptions{}).item<double>();
  });
  CHECK(std::abs(increase[1]) < 1e-7);
  CHECK(increase[0] > 1e-4);
  CHECK(increase[2] > 1e-4);
}

TEST_CASE("a model with a block removed computes the original with that block skipped") {
  auto model = tiny_model(3, 13);
  auto original = tiny_model(3, 13);  // same seed: the same weights
  const auto tokens = torch::randint(0, 61, {2, 8}, torch::kInt64);
  model->remove_block(1);
  CHECK(model->config().n_layers == 2);
  torch::NoGradGuard no_grad;
  model::ForwardOptions skip;
  skip.block_scales = {1.0, 0.0, 1.0};
  CHECK(max_rel_diff(model->forward(tokens).logits, original->forward(tokens, skip).logits) < 1e-5);
  // The blocks after it moved up, names and all.
  const auto params = model->named_parameters();
  CHECK(params.contains("blk.1.attn_q.weight"));
  CHECK(!params.contains("blk.2.attn_q.weight"));
  CHECK(torch::equal(params["blk.1.attn_q.weight"],
                     original->named_parameters()["blk.2.attn_q.weight"]));
  // It saves and loads as an ordinary 2-block model.
  test::TempDir dir;
  model::CheckpointMeta meta;
  meta.config.llama = model->config();
  meta.tokenizer_hash = std::string(64, 'a');
  model::save_model(dir.path() / "m", *model, meta);
  const auto loaded = model::load_model(dir.path() / "m");
  CHECK(loaded.meta.config.llama.n_layers == 2);
  CHECK(torch::equal(loaded.module->as<model::LlamaModelImpl>()->forward(tokens).logits,
                     model->forward(tokens).logits));
  CHECK_THROWS_WITH(model->remove_block(2), Catch::Contains("cannot remove block 2"));
}

TEST_CASE("AdamW rebind keeps the moments of the parameters that remain, by tensor not name") {
  auto a = torch::ones({2, 2}).requires_grad_(), b = torch::ones({3}).requires_grad_();
  train::OptimizerConfig config;
  train::AdamW adam({{"blk.1.w", a}, {"blk.2.w", b}}, config);
  a.mutable_grad() = torch::full({2, 2}, 0.5);
  b.mutable_grad() = torch::full({3}, -2.0);
  adam.step(1e-3);
  auto c = torch::zeros({4}).requires_grad_();
  adam.rebind({{"blk.1.w", b}, {"new", c}});  // a is gone; b moved up to blk.1
  test::TempDir dir;
  io::SafetensorsWriter writer;
  adam.save_state(writer);
  writer.write(dir.path() / "state.safetensors");
  const io::SafetensorsFile state(dir.path() / "state.safetensors");
  // After one step m = (1 - beta1) g, v = (1 - beta2) g^2.
  CHECK(torch::allclose(model::tensor_from_view(state.at("exp_avg.blk.1.w")),
                        torch::full({3}, -2.0 * (1 - config.beta1))));
  CHECK(torch::allclose(model::tensor_from_view(state.at("exp_avg_sq.blk.1.w")),
                        torch::full({3}, 4.0 * (1 - config.beta2))));
  CHECK(torch::equal(model::tensor_from_view(state.at("exp_avg.new")), torch::zeros({4})));
  CHECK(state.find("exp_avg.blk.2.w") == nullptr);
}

TEST_CASE("uncertainty scores have their analytic values") {
  const int64_t vocab = 8;
  auto logits = torch::zeros({1, 4, vocab});  // uniform: entropy log V, margin 1
  logits[0][2][3] = 100.0;                    // one-hot: entropy 0, margin 0
  logits[0][3][3] = 100.0;
  const auto entropy = entropy_scores(logits, 2);
  REQUIRE(entropy.sizes() == torch::IntArrayRef({1, 2}));
  CHECK(entropy[0][0].item<double>() == Approx(std::log(8.0)));
  CHECK(entropy[0][1].item<double>() == Approx(0.0).margin(1e-6));
  const auto margin = margin_scores(logits, 2);
  CHECK(margin[0][0].item<double>() == Approx(1.0));
  CHECK(margin[0][1].item<double>() == Approx(0.0).margin(1e-6));
  CHECK(disagreement_scores(logits, logits, 4)[0][0].item<double>() == Approx(0.0));
  auto other = logits.clone();
  other[0][2][3] = 0.0;  // token 2 uniform instead of one-hot: TV = 1 - 1/8
  CHECK(disagreement_scores(logits, other, 4)[0][0].item<double>() == Approx(0.875 / 4));
  CHECK(threshold_for_share({1, 2, 3, 4, 5}, 0.25) == Approx(4.0));
  CHECK(std::isinf(threshold_for_share({1, 2}, 0.0)));
  CHECK(threshold_for_share({1, 2}, 1.0) < 0);
}

TEST_CASE("rank correlation has Spearman's values, ties at their mean rank") {
  // No ties: 1 - 6 sum d^2 / (n (n^2 - 1)) with d = (1, 1, 1, 1, 0): 1 - 24 / 120.
  CHECK(rank_correlation({1, 2, 3, 4, 5}, {2, 1, 4, 3, 5}) == Approx(0.8));
  // Any increasing transform has the same ranks; a decreasing one flips the sign.
  CHECK(rank_correlation({0.1, 5, 7, 100, 1e6}, {2, 1, 4, 3, 5}) == Approx(0.8));
  CHECK(rank_correlation({5, 4, 3, 2, 1}, {2, 1, 4, 3, 5}) == Approx(-0.8));
  // Ties: ranks (0, 1.5, 1.5, 3) against (0, 1, 2, 3), Pearson = 4.5 / sqrt(4.5 * 5).
  CHECK(rank_correlation({1, 2, 2, 3}, {1, 2, 3, 4}) == Approx(4.5 / std::sqrt(22.5)));
  CHECK(rank_correlation({1, 1, 1}, {1, 2, 3}) == 0.0);
  CHECK(rank_correlation({1}, {2}) == 0.0);
}

TEST_CASE(
    "the query probe's gain is the held-out loss's derivative along the asked-minus-skipped "
    "gradient") {
  test::TempDir dir;
  train::configure_threads(0, false);
  auto recipe = tiny_distill_recipe(dir.path(), tiny_teacher());
  recipe.distill.losses[0].temperature = 2.0;
  recipe.distill.losses[0].alpha = 0.5;
  recipe.distill.queries.policy = "entropy";
  recipe.distill.queries.budget = 0.5;
  recipe.distill.queries.held_out_tokens = 64;
  recipe.distill.queries.probe_items = 1;  // the first window of the train split
  core::Validator::validate_config(recipe, "");
  auto setup = prepare_distillation(recipe, dir.path() / "cache");
  const auto metrics = setup.task->evaluate("valid");
  auto metric = [&](const std::string& name) {
    for (const auto& [key, value] : metrics) {
      if (key == name) return value;
    }
    FAIL("no metric " << name);
    return 0.0;
  };
  REQUIRE(metric("valid_query_probe_items") == 1);
  const double gain = metric("valid_query_gain_mean");

  // The same in float64, by central differences: the student's copy, the item's losses by their
  // formulas, the held-out loss over the first 64 valid targets.
  auto& student = dynamic_cast<model::LlamaModelImpl&>(setup.task->model());
  model::LlamaModel copy(student.config());
  {
    torch::NoGradGuard no_grad;
    for (auto& item : copy->named_parameters()) {
      item.value().copy_(student.named_parameters()[item.key()]);
    }
  }
  copy->to(torch::kFloat64);
  copy->eval();
  const int64_t seq_len = recipe.base.train.seq_len;
  const auto item = train::evaluation_windows(setup.text_data->shard("train"), seq_len, 0, 1);
  const auto held_out =
      train::evaluation_windows(setup.text_data->shard("valid"), seq_len, 0, 64 / seq_len);
  torch::Tensor teacher_logits;
  {
    torch::NoGradGuard no_grad;
    teacher_logits = setup.teacher->llama().forward(item.narrow(1, 0, seq_len)).logits;
  }
  const double t = 2.0;
  const auto teacher_p = torch::softmax(teacher_logits.to(torch::kFloat64) / t, -1);
  auto ce = [](const torch::Tensor& logits, const torch::Tensor& targets) {
    return torch::nn::functional::cross_entropy(logits.reshape({-1, logits.size(-1)}),
                                                targets.reshape({-1}));
  };
  const auto logits = copy->forward(item.narrow(1, 0, seq_len)).logits;
  const auto kl =
      (teacher_p * (teacher_p.log() - torch::log_softmax(logits / t, -1))).sum(-1).mean();
  const auto hard = ce(logits, item.narrow(1, 1, seq_len));
  const auto asked_minus_skipped = 0.5 * t * t * kl + 0.5 * hard - hard;
  std::vector<torch::Tensor> parameters;
  for (const auto& p : copy->parameters()) parameters.push_back(p);
  const auto direction = torch::autograd::grad({asked_minus_skipped}, parameters, {}, false, false,
                                               /*allow_unused=*/true);
  auto held_out_loss = [&](double step) {
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < parameters.size(); ++i) {
      if (direction[i].defined()) parameters[i].add_(direction[i], step);
    }
    const auto loss =
        ce(copy->forward(held_out.narrow(1, 0, seq_len)).logits, held_out.narrow(1, 1, seq_len))
            .item<double>();
    for (size_t i = 0; i < parameters.size(); ++i) {
      if (direction[i].defined()) parameters[i].sub_(direction[i], step);
    }
    return loss;
  };
  // Central differences, h = 1e-5: truncation O(h^2) and rounding O(eps / h), both ~1e-10.
  const double h = 1e-5;
  const double expected = (held_out_loss(h) - held_out_loss(-h)) / (2 * h);
  REQUIRE(std::abs(expected) > 1e-3);  // a gain the check can see
  // The task computes in float32 (gradients of ~1e4 parameters dotted): 1e-3 relative covers its
  // rounding against this float64 reference.
  CHECK(gain == Approx(expected).epsilon(1e-3));
}

TEST_CASE("the online query threshold converges to the budget on a stationary stream") {
  for (const double budget : {0.1, 0.25, 0.5}) {
    for (const bool drifting : {false, true}) {
      QueryConfig config;
      config.policy = "entropy";
      config.budget = budget;
      TeacherQueries queries(config, 1);
      torch::manual_seed(17);
      int64_t asked = 0, items = 0;
      double asked_sum = 0, skipped_sum = 0;
      int64_t skipped = 0;
      for (int batch = 0; batch < 2000; ++batch) {
        // Stationary N(0, 1), or a mean falling as a student's entropy does.
        auto scores = torch::randn({16, 1}, torch::kFloat64);
        if (drifting) scores = scores + 5.0 * std::exp(-batch / 100.0);
        const auto queried = queries.decide({{"entropy", scores}});
        if (batch < 1000) continue;  // the second half: after convergence
        asked += queried.sum().item<int64_t>();
        items += queried.numel();
        asked_sum += scores.masked_select(queried).sum().item<double>();
        skipped_sum += scores.masked_select(queried.logical_not()).sum().item<double>();
        skipped += queried.numel() - queried.sum().item<int64_t>();
      }
      INFO("budget " << budget << (drifting ? " drifting" : " stationary"));
      CHECK(static_cast<double>(asked) / items == Approx(budget).margin(0.015));
      CHECK(asked_sum / asked > skipped_sum / skipped + 1.0);  // the top band: uncertain items
    }
  }
}

TEST_CASE(
    "teacher queries at budget 1 equal plain distillation and at budget 0 hard-label training") {
  test::TempDir dir;
  train::configure_threads(0, false);
  const auto teacher = tiny_teacher();
  auto plain = tiny_distill_recipe(dir.path(), teacher);
  plain.base.train.steps = 12;
  auto run = [&](const DistillRecipe& recipe, const std::string& name) {
    auto setup = prepare_distillation(recipe, dir.path() / "cache");
    REQUIRE(train_distill(setup, dir.path() / name).finished);
    return final_weights(dir.path() / name);
  };
  auto all = plain;
  all.distill.queries.policy = "entropy";
  all.distill.queries.budget = 1.0;
  CHECK(torch::equal(run(plain, "plain"), run(all, "all")));
  CHECK(summary_value(dir.path() / "all", "teacher_tokens") ==
        summary_value(dir.path() / "plain", "teacher_tokens"));

  auto none = all;
  none.distill.queries.budget = 0.0;
  auto hard = plain;
  hard.distill.losses[0].kind = "ce";
  hard.teacher.clear();
  CHECK(torch::equal(run(none, "none"), run(hard, "hard")));
  CHECK(summary_value(dir.path() / "none", "teacher_tokens") == 0);

  // In between, only the asked sequences go through the teacher.
  auto quarter = all;
  quarter.distill.queries.budget = 0.25;
  quarter.distill.queries.window_items = 16;  // 96 items in all: a short memory tracks the budget
  run(quarter, "quarter");
  const double share = summary_value(dir.path() / "quarter", "teacher_tokens") /
                       summary_value(dir.path() / "quarter", "teacher_tokens_full");
  CHECK(share == Approx(summary_value(dir.path() / "quarter", "query_rate")));
  CHECK(share == Approx(0.25).margin(0.08));
  CHECK(summary_value(dir.path() / "quarter", "teacher_flops_saved") > 0);
}

TEST_CASE("windowed queries send only each asked window's prefix to the teacher") {
  test::TempDir dir;
  train::configure_threads(0, false);
  auto recipe = tiny_distill_recipe(dir.path(), tiny_teacher());
  recipe.base.train.steps = 6;
  recipe.distill.queries.policy = "margin";
  recipe.distill.queries.unit = "window";
  recipe.distill.queries.window = 8;
  recipe.distill.queries.budget = 0.25;
  auto setup = prepare_distillation(recipe, dir.path() / "cache");
  REQUIRE(train_distill(setup, dir.path() / "run").finished);
  const double tokens = summary_value(dir.path() / "run", "teacher_tokens");
  const double full = summary_value(dir.path() / "run", "teacher_tokens_full");
  const double rate = summary_value(dir.path() / "run", "query_rate");
  // Each asked window costs its prefix: at least the window itself, at most the whole sequence.
  CHECK(tokens >= rate * full - 1e-9);
  CHECK(tokens < full);
  const auto metrics = core::read_file(dir.path() / "run" / "metrics.jsonl", "metrics");
  for (const char* name :
       {"query_rate", "query_threshold", "teacher_tokens", "loss_unqueried_ce"}) {
    CHECK(metrics.find(name) != std::string::npos);
  }
}

TEST_CASE("dropping, removal and learned queries resume exactly where they stopped") {
  test::TempDir dir;
  train::configure_threads(0, false);
  auto recipe = tiny_distill_recipe(dir.path(), tiny_teacher());
  recipe.base.model.llama.n_layers = 3;
  recipe.base.train.steps = 10;
  recipe.distill.layer_drop.enabled = true;
  recipe.distill.layer_drop.gamma = 0.1;
  recipe.distill.layer_removal.target_layers = 1;
  recipe.distill.layer_removal.at_steps = {3, 7};
  recipe.distill.queries.policy = "learned";
  recipe.distill.queries.budget = 0.5;
  recipe.distill.queries.bandit_every = 2;
  recipe.distill.queries.held_out_tokens = 64;
  core::Validator::validate_config(recipe, "");
  {
    auto setup = prepare_distillation(recipe, dir.path() / "cache");
    REQUIRE(train_distill(setup, dir.path() / "whole").finished);
  }
  {
    auto setup = prepare_distillation(recipe, dir.path() / "cache");
    REQUIRE(train_distill(setup, dir.path() / "parts", /*stop_at_step=*/5).interrupted);
  }
  auto setup = prepare_distillation(recipe, dir.path() / "cache");
  REQUIRE(train_distill(setup, dir.path() / "parts", 0, /*resume=*/true).finished);
  CHECK(torch::equal(final_weights(dir.path() / "whole"), final_weights(dir.path() / "parts")));
  // The final checkpoint has the reduced depth; the removals are logged.
  CHECK(model::load_model(dir.path() / "whole" / "final").meta.config.llama.n_layers == 1);
  const auto metrics = core::read_file(dir.path() / "whole" / "metrics.jsonl", "metrics");
  CHECK(metrics.find("\"removed_block\"") != std::string::npos);
  CHECK(metrics.find("\"pld_theta\"") != std::string::npos);
  CHECK(metrics.find("\"step_s\"") != std::string::npos);
  CHECK(summary_value(dir.path() / "whole", "n_layers") == 1);
  CHECK(summary_value(dir.path() / "whole", "pld_blocks_run_share") < 1.0);
  double rounds = 0;
  const auto result = core::read_json_file(dir.path() / "whole" / "result.json", "result");
  for (const auto& item : result.items()) {
    if (item.key().rfind("query_rounds_", 0) == 0) rounds += item.value().get<double>();
  }
  CHECK(rounds == 5);  // a round every 2 of 10 steps
  // The probe rates the arm the bandit used most (rounds counted above) against the items' gains.
  CHECK(result.at("valid_query_probe_items").get<double>() > 0);
  const auto arm = result.at("valid_query_probe_arm").get<int>();
  for (const auto& item : result.items()) {
    if (item.key().rfind("query_rounds_", 0) != 0) continue;
    CHECK(item.value().get<double>() <=
          result
              .at("query_rounds_" + std::vector<std::string>{"entropy_top", "margin_top",
                                                             "random_top", "entropy_middle",
                                                             "margin_middle"}[arm])
              .get<double>());
  }
  CHECK(std::abs(result.at("valid_query_gain_corr").get<double>()) <= 1.0);
}

TEST_CASE("the techniques' config errors name the key and the fix") {
  test::TempDir dir;
  auto base = tiny_distill_recipe(dir.path(), tiny_teacher());
  auto fails = [](DistillRecipe recipe, const std::string& message) {
    CHECK_THROWS_WITH(core::Validator::validate_config(recipe, "recipe"), Catch::Contains(message));
  };
  auto removal = base;
  removal.distill.layer_removal.target_layers = 1;  // the student has 1 layer
  removal.distill.layer_removal.at_steps = {10};
  fails(removal, "not below the student's 1 layers");
  removal.base.model.llama.n_layers = 3;
  fails(removal, "takes 2 removals");
  removal.distill.layer_removal.at_steps = {10, 100};
  fails(removal, "not before train.steps = 60");
  removal.distill.layer_removal.at_steps.clear();
  fails(removal, "give either at_steps");
  auto queries = base;
  queries.distill.queries.policy = "entropy";
  queries.distill.queries.budget = 1.5;
  fails(queries, "distill.queries.budget: must be in [0, 1]");
  queries.distill.queries.budget = 0.5;
  queries.distill.queries.unit = "window";
  queries.distill.queries.window = 5;
  fails(queries, "5 does not divide train.seq_len = 32");
  queries.distill.queries.unit = "sequence";
  queries.distill.losses[0].kind = "hidden";
  fails(queries, "hidden, attention_relation and contrastive need the teacher on every item");
  queries.distill.losses[0].kind = "ce";
  fails(queries, "no loss term uses them");
  // Asking needs the live teacher.
  auto cached = base;
  cached.distill.queries.policy = "random";
  cached.teacher.clear();
  cached.teacher_cache = dir.path() / "cache-dir";
  CHECK_THROWS_WITH(prepare_distillation(cached, dir.path() / "cache"),
                    Catch::Contains("give --teacher DIR"));
}

TEST_CASE("forward_flops counts every weight's multiply-adds and the full attention products") {
  const auto config = tiny_llama(2);
  auto model = model::LlamaModel(config);
  // 2 FLOPs per weight per token for every matrix (the blocks' and the head), plus QK^T and PV.
  double weights = 0;
  for (const auto& item : model->named_parameters()) {
    if (item.value().dim() == 2 && item.key() != "token_embd.weight")
      weights += item.value().numel();
  }
  const int64_t batch = 3, length = 10;
  const double attention = 2.0 * 2 * batch * config.n_heads * length * length * config.head_dim();
  CHECK(model::forward_flops(config, batch, length) ==
        Approx(2.0 * batch * length * weights + config.n_layers * attention));
}

TEST_CASE("data tokenizer.from prepares a corpus with another corpus's tokenizer") {
  test::TempDir dir;
  const auto recipe = test::tiny_recipe(dir.path());
  const auto first = data::ensure_prepared(recipe.data, dir.path() / "cache");
  auto other = recipe.data;
  other.name = "other";
  other.tokenizer.kind = "sentencepiece";  // ignored: the tokenizer comes from `first`
  other.tokenizer.from = first;
  const auto second = data::ensure_prepared(other, dir.path() / "cache");
  CHECK(data::PreparedData(second).tokenizer().hash() ==
        data::PreparedData(first).tokenizer().hash());
  other.tokenizer.from = dir.path() / "nothing";
  CHECK_THROWS_WITH(data::ensure_prepared(other, dir.path() / "cache"),
                    Catch::Contains("nothing") && Catch::Contains("does not exist"));
}
