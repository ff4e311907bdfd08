// The llama decoder and the MLP classifier against closed forms and slow obvious versions.
#include "torch_catch.h"

#include <cmath>
#include <limits>

#include "model/checkpoint.h"
#include "model/llama.h"
#include "model/mlp.h"
#include "test_util.h"

using namespace edgedistill;
using namespace edgedistill::model;

namespace {

// Float32 forward passes of the same math in a different operation order agree to a few ulps of
// the logits' magnitude (~1); 1e-5 leaves room for reassociation in the GEMMs.
constexpr double kFloatTolerance = 1e-5;

LlamaConfig tiny_config() {
  LlamaConfig c;
  c.vocab_size = 50;
  c.dim = 64;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.ffn_dim = 96;
  c.max_seq_len = 16;
  // Larger than the default 0.02 so that attention is far from uniform and every path matters.
  c.init_std = 0.2;
  return c;
}

double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).abs().max().item<double>();
}

}  // namespace

TEST_CASE("RMSNorm matches its closed form") {
  RMSNorm norm(2, 1e-5);
  {
    torch::NoGradGuard no_grad;
    norm->weight.copy_(torch::tensor({2.0f, 0.5f}));
  }
  // x = (3, 4): mean(x^2) = 12.5.
  const auto y = norm(torch::tensor({{3.0f, 4.0f}}));
  const double scale = 1.0 / std::sqrt(12.5 + 1e-5);
  CHECK(y[0][0].item<double>() == Approx(3 * scale * 2.0).epsilon(1e-6));
  CHECK(y[0][1].item<double>() == Approx(4 * scale * 0.5).epsilon(1e-6));
}

TEST_CASE("RoPE rotates adjacent pairs by pos * base^(-2i/D)") {
  const int64_t head_dim = 8, length = 5;
  const double base = 10000.0;
  auto [cos, sin] = rope_tables(length, head_dim, base);
  // Every pair holds (1, 0): position p, pair i must become (cos a, sin a), a = p * base^(-2i/D).
  auto x = torch::zeros({1, length, 1, head_dim});
  for (int64_t i = 0; i < head_dim / 2; ++i)
    x.index_put_({0, torch::indexing::Slice(), 0, 2 * i}, 1.0f);
  const auto y = apply_rope(x, cos, sin);
  for (int64_t p = 0; p < length; ++p) {
    for (int64_t i = 0; i < head_dim / 2; ++i) {
      const double angle =
          static_cast<double>(p) * std::pow(base, -2.0 * static_cast<double>(i) / head_dim);
      CHECK(y[0][p][0][2 * i].item<double>() == Approx(std::cos(angle)).margin(1e-6));
      CHECK(y[0][p][0][2 * i + 1].item<double>() == Approx(std::sin(angle)).margin(1e-6));
    }
  }
}

TEST_CASE("RoPE scores depend only on the relative position") {
  const int64_t head_dim = 16, length = 12;
  auto [cos, sin] = rope_tables(length, head_dim, 10000.0);
  torch::manual_seed(3);
  const auto q = torch::randn({1, 1, 1, head_dim}).expand({1, length, 1, head_dim}).contiguous();
  const auto k = torch::randn({1, 1, 1, head_dim}).expand({1, length, 1, head_dim}).contiguous();
  const auto rq = apply_rope(q, cos, sin), rk = apply_rope(k, cos, sin);
  auto score = [&](int64_t m, int64_t n) {
    return (rq[0][m][0] * rk[0][n][0]).sum().item<double>();
  };
  CHECK(score(5, 2) == Approx(score(9, 6)).margin(1e-5));
  CHECK(score(3, 3) == Approx(score(11, 11)).margin(1e-5));
  // Rotation preserves norms.
  CHECK(rq.norm().item<double>() == Approx(q.norm().item<double>()).epsilon(1e-5));
}

TEST_CASE("a later token does not change earlier logits (causal mask)") {
  torch::manual_seed(1);
  LlamaModel net(tiny_config());
  net->eval();
  torch::NoGradGuard no_grad;
  auto tokens = torch::randint(50, {2, 10}, torch::kInt64);
  const auto before = net->forward(tokens).logits;
  auto changed = tokens.clone();
  changed.index_put_({torch::indexing::Slice(), 7},
                     (tokens.index({torch::indexing::Slice(), 7}) + 1) % 50);
  const auto after = net->forward(changed).logits;
  using torch::indexing::Slice;
  CHECK(max_abs_diff(before.index({Slice(), Slice(0, 7)}), after.index({Slice(), Slice(0, 7)})) <
        kFloatTolerance);
  CHECK(max_abs_diff(before.index({Slice(), 7}), after.index({Slice(), 7})) > 1e-3);
}

TEST_CASE("grouped-query attention equals multi-head attention with repeated kv heads") {
  torch::manual_seed(2);
  const auto gqa_config = tiny_config();  // 4 query heads, 2 kv heads
  auto mha_config = gqa_config;
  mha_config.n_kv_heads = 4;
  LlamaModel gqa(gqa_config), mha(mha_config);
  const int64_t head_dim = gqa_config.head_dim(),
                group = gqa_config.n_heads / gqa_config.n_kv_heads;
  {
    torch::NoGradGuard no_grad;
    auto gqa_params = gqa->named_parameters();
    for (auto& item : mha->named_parameters()) {
      const auto& source = gqa_params[item.key()];
      const bool kv = item.key().find("attn_k") != std::string::npos ||
                      item.key().find("attn_v") != std::string::npos;
      if (!kv) {
        item.value().copy_(source);
        continue;
      }
      // MHA head h takes the rows of GQA kv head h / group.
      for (int64_t h = 0; h < mha_config.n_heads; ++h) {
        item.value()
            .narrow(0, h * head_dim, head_dim)
            .copy_(source.narrow(0, (h / group) * head_dim, head_dim));
      }
    }
  }
  torch::NoGradGuard no_grad;
  const auto tokens = torch::randint(50, {3, 12}, torch::kInt64);
  CHECK(max_abs_diff(gqa->forward(tokens).logits, mha->forward(tokens).logits) < kFloatTolerance);
}

TEST_CASE("attention matches a slow per-head implementation") {
  torch::manual_seed(4);
  const auto config = tiny_config();
  LlamaModel net(config);
  torch::NoGradGuard no_grad;
  const int64_t batch = 2, length = 9, heads = config.n_heads, head_dim = config.head_dim();
  const auto tokens = torch::randint(50, {batch, length}, torch::kInt64);
  ForwardOptions capture;
  capture.hidden_states = true;
  capture.attention = true;
  const auto out = net->forward(tokens, capture);
  // Block 0 by hand: per head, scores = q k^T / sqrt(D) with a causal mask, softmax, times v.
  auto block = net->blk[0]->as<LlamaBlockImpl>();
  const auto x = out.hidden_states[0];
  const auto h = block->attn_norm(x);
  auto [cos, sin] = rope_tables(length, head_dim, config.rope_theta);
  const auto q = apply_rope(block->attn_q(h).view({batch, length, heads, head_dim}), cos, sin);
  const auto k =
      apply_rope(block->attn_k(h).view({batch, length, config.n_kv_heads, head_dim}), cos, sin);
  const auto v = block->attn_v(h).view({batch, length, config.n_kv_heads, head_dim});
  auto context = torch::zeros({batch, length, heads * head_dim});
  const int64_t group = heads / config.n_kv_heads;
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t head = 0; head < heads; ++head) {
      const int64_t kv = head / group;
      for (int64_t i = 0; i < length; ++i) {
        std::vector<double> scores(static_cast<size_t>(i + 1));
        double max_score = -1e30;
        for (int64_t j = 0; j <= i; ++j) {
          scores[j] =
              (q[b][i][head] * k[b][j][kv]).sum().item<double>() / std::sqrt(double(head_dim));
          max_score = std::max(max_score, scores[j]);
        }
        double total = 0;
        for (auto& s : scores) total += (s = std::exp(s - max_score));
        for (int64_t j = 0; j <= i; ++j) {
          const double p = scores[j] / total;
          CHECK(out.attention[0][b][head][i][j].item<double>() == Approx(p).margin(1e-5));
          context[b][i].narrow(0, head * head_dim, head_dim) += p * v[b][j][kv];
        }
      }
    }
  }
  const auto after_attention = x + block->attn_output(context);
  const auto hn = block->ffn_norm(after_attention);
  const auto expected =
      after_attention + block->ffn_down(torch::silu(block->ffn_gate(hn)) * block->ffn_up(hn));
  CHECK(max_abs_diff(out.hidden_states[1], expected) < kFloatTolerance);
}

TEST_CASE("capturing hidden states and attention does not change the logits") {
  torch::manual_seed(5);
  LlamaModel net(tiny_config());
  torch::NoGradGuard no_grad;
  const auto tokens = torch::randint(50, {2, 8}, torch::kInt64);
  const auto plain = net->forward(tokens);
  CHECK(plain.hidden_states.empty());
  CHECK(plain.attention.empty());
  ForwardOptions capture;
  capture.hidden_states = true;
  capture.attention = true;
  const auto full = net->forward(tokens, capture);
  CHECK(max_abs_diff(plain.logits, full.logits) == 0.0);
  REQUIRE(full.hidden_states.size() == 3);
  REQUIRE(full.attention.size() == 2);
  CHECK(full.attention[1].sizes() == torch::IntArrayRef({2, 4, 8, 8}));
  // Rows are distributions over the visible prefix: they sum to 1 and the future gets 0.
  CHECK(max_abs_diff(full.attention[1].sum(-1), torch::ones({2, 4, 8})) < 1e-5);
  CHECK(full.attention[1].triu(1).abs().max().item<double>() == 0.0);
}

TEST_CASE("the relation layer's queries, keys and values reproduce its attention") {
  torch::manual_seed(7);
  const auto config = tiny_config();  // 4 query heads on 2 kv heads, head_dim 16
  LlamaModel net(config);
  const int64_t batch = 2, length = 9, heads = config.n_heads, head_dim = config.head_dim();
  const int64_t group = heads / config.n_kv_heads;
  const auto tokens = torch::randint(50, {batch, length}, torch::kInt64);
  ForwardOptions capture;
  capture.hidden_states = true;
  capture.attention = true;
  capture.relation_layer = 1;
  torch::NoGradGuard no_grad;
  const auto out = net->forward(tokens, capture);
  const auto plain = net->forward(tokens);
  CHECK_FALSE(plain.queries.defined());
  CHECK(max_abs_diff(plain.logits, out.logits) == 0.0);
  for (const auto* captured : {&out.queries, &out.keys, &out.values}) {
    REQUIRE(captured->sizes() == torch::IntArrayRef({batch, length, heads * head_dim}));
  }
  auto per_head = [&](const torch::Tensor& x) {  // [B, T, H*D] -> [B, H, T, D]
    return x.view({batch, length, heads, head_dim}).transpose(1, 2);
  };
  // softmax(q k^T / sqrt(D)) with the causal mask, per head, against the model's own attention.
  const auto future = torch::ones({length, length}, torch::kBool).triu(1);
  const auto scores = torch::matmul(per_head(out.queries), per_head(out.keys).transpose(2, 3)) /
                      std::sqrt(static_cast<double>(head_dim));
  const auto probs =
      torch::softmax(scores.masked_fill(future, -std::numeric_limits<double>::infinity()), -1);
  const auto& attention = out.attention[1];
  // The same float32 scores in another operation order (matmul here, baddbmm there).
  constexpr double kAttentionRelativeTolerance = 1e-5;
  CHECK(max_abs_diff(probs, attention) <=
        kAttentionRelativeTolerance * attention.abs().max().item<double>());
  // The values are v = attn_v(attn_norm(x)), query head h reading kv head h / group ...
  auto block = net->blk[1]->as<LlamaBlockImpl>();
  const auto x = out.hidden_states[1];
  const auto v =
      block->attn_v(block->attn_norm(x)).view({batch, length, config.n_kv_heads, head_dim});
  CHECK(max_abs_diff(out.values.view({batch, length, heads, head_dim}),
                     v.repeat_interleave(group, 2)) < kFloatTolerance);
  // ... and probs @ v per head is the attention context that rebuilds block 1's output.
  const auto context = torch::matmul(attention, per_head(out.values))
                           .transpose(1, 2)
                           .reshape({batch, length, heads * head_dim});
  const auto after_attention = x + block->attn_output(context);
  const auto hn = block->ffn_norm(after_attention);
  const auto expected =
      after_attention + block->ffn_down(torch::silu(block->ffn_gate(hn)) * block->ffn_up(hn));
  CHECK(max_abs_diff(out.hidden_states[2], expected) < kFloatTolerance);

  capture.relation_layer = 2;
  CHECK_THROWS_AS(net->forward(tokens, capture), InputError);
  CHECK_THROWS_WITH(net->forward(tokens, capture), Catch::Contains("the model has 2 layers"));
}

TEST_CASE("the relation layer's queries carry gradients to the attention weights") {
  torch::manual_seed(8);
  LlamaModel net(tiny_config());
  ForwardOptions capture;
  capture.relation_layer = 0;
  const auto out = net->forward(torch::randint(50, {1, 5}, torch::kInt64), capture);
  (out.queries.square().sum() + out.keys.square().sum() + out.values.square().sum()).backward();
  auto block = net->blk[0]->as<LlamaBlockImpl>();
  for (const auto* linear : {&block->attn_q, &block->attn_k, &block->attn_v}) {
    REQUIRE((*linear)->weight.grad().defined());
    CHECK((*linear)->weight.grad().abs().max().item<double>() > 0.0);
  }
  CHECK_FALSE(net->blk[1]->as<LlamaBlockImpl>()->attn_q->weight.grad().defined());
}

TEST_CASE("the loss gradient matches finite differences (float64)") {
  torch::manual_seed(6);
  auto config = tiny_config();
  config.n_layers = 1;
  LlamaModel net(config);
  net->to(torch::kFloat64);
  const auto tokens = torch::randint(50, {2, 6}, torch::kInt64);
  const auto targets = torch::randint(50, {2, 6}, torch::kInt64);
  auto loss_of = [&] {
    const auto logits = net->forward(tokens).logits;
    return torch::nn::functional::cross_entropy(logits.reshape({-1, 50}), targets.reshape({-1}));
  };
  loss_of().backward();
  // Central differences, h = 1e-6: truncation O(h^2) and rounding O(eps/h) both ~1e-10 here.
  constexpr double kStep = 1e-6, kGradientTolerance = 1e-6;
  for (const std::string name :
       {"blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.ffn_up.weight",
        "blk.0.attn_norm.weight", "output_norm.weight", "token_embd.weight"}) {
    auto parameter = net->named_parameters()[name];
    const auto analytic = parameter.grad().clone();
    torch::NoGradGuard no_grad;
    for (int64_t index : {int64_t{0}, int64_t{7}, parameter.numel() - 1}) {
      auto flat = parameter.view({-1});
      const double saved = flat[index].item<double>();
      flat[index] = saved + kStep;
      const double plus = loss_of().item<double>();
      flat[index] = saved - kStep;
      const double minus = loss_of().item<double>();
      flat[index] = saved;
      INFO(name << "[" << index << "]");
      CHECK(analytic.view({-1})[index].item<double>() ==
            Approx((plus - minus) / (2 * kStep)).margin(kGradientTolerance));
    }
  }
}

TEST_CASE("tied embeddings share the output head") {
  auto config = tiny_config();
  config.tie_embeddings = true;
  LlamaModel net(config);
  CHECK_FALSE(net->output);
  int64_t counted = 0;
  for (const auto& p : net->parameters()) counted += p.numel();
  CHECK(counted == count_parameters(config).total);
  config.tie_embeddings = false;
  LlamaModel untied(config);
  counted = 0;
  for (const auto& p : untied->parameters()) counted += p.numel();
  CHECK(counted == count_parameters(config).total);
}

TEST_CASE("a checkpoint round trip reproduces the logits") {
  test::TempDir dir;
  torch::manual_seed(7);
  CheckpointMeta meta;
  meta.config.llama = tiny_config();
  meta.tokenizer_hash = std::string(64, 'a');
  meta.step = 12;
  auto net = std::dynamic_pointer_cast<LlamaModelImpl>(build_model(meta.config));
  save_model(dir.path(), *net, meta);
  const auto loaded = load_model(dir.path());
  CHECK(loaded.meta.step == 12);
  CHECK(loaded.meta.tokenizer_hash == meta.tokenizer_hash);
  auto again = std::dynamic_pointer_cast<LlamaModelImpl>(loaded.module);
  torch::NoGradGuard no_grad;
  const auto tokens = torch::randint(50, {1, 8}, torch::kInt64);
  CHECK(max_abs_diff(net->forward(tokens).logits, again->forward(tokens).logits) == 0.0);
}

TEST_CASE("loading weights into another model fails naming the tensor") {
  test::TempDir dir;
  CheckpointMeta meta;
  meta.config.llama = tiny_config();
  auto net = build_model(meta.config);
  save_weights(dir.path() / "w.safetensors", *net, {});
  auto wider = meta.config;
  wider.llama.ffn_dim = 128;
  auto other = build_model(wider);
  CHECK_THROWS_WITH(load_weights(dir.path() / "w.safetensors", *other),
                    Catch::Contains("ffn_gate.weight") && Catch::Contains("shape"));
  auto deeper = meta.config;
  deeper.llama.n_layers = 3;
  CHECK_THROWS_WITH(load_weights(dir.path() / "w.safetensors", *build_model(deeper)),
                    Catch::Contains("blk.2"));
  auto shallower = meta.config;
  shallower.llama.n_layers = 1;
  CHECK_THROWS_WITH(load_weights(dir.path() / "w.safetensors", *build_model(shallower)),
                    Catch::Contains("blk.1") && Catch::Contains("does not have"));
  CHECK_THROWS_AS(read_model_meta(dir.path() / "nowhere"), FileError);
}

TEST_CASE("model configs are validated with messages naming the key") {
  auto check = [](const std::vector<std::string>& sets, const std::string& expected) {
    CHECK_THROWS_WITH(core::load_config<ModelConfig>("", sets), Catch::Contains(expected));
  };
  check({"dim=250"}, "dim: must be a positive multiple of 32");
  check({"ffn_dim=100"}, "ffn_dim: must be a positive multiple of 32");
  check({"n_heads=3"}, "n_heads: must divide dim");
  check({"n_kv_heads=3"}, "n_kv_heads: must divide n_heads");
  check({"dim=64", "n_heads=64"}, "must be even");
  check({"arch=mlp", "dropout=1.5"}, "dropout: must be in [0, 1)");
  CHECK_NOTHROW(core::load_config<ModelConfig>("", {"arch=mlp", "hidden=800,800"}));
}

TEST_CASE("the MLP classifier applies dropout only in training mode") {
  MlpConfig config;
  config.input_dim = 20;
  config.hidden = {32, 16};
  config.n_classes = 3;
  MlpClassifier net(config);
  const auto x = torch::rand({4, 20});
  net->eval();
  CHECK(net->forward(x).sizes() == torch::IntArrayRef({4, 3}));
  CHECK(max_abs_diff(net->forward(x), net->forward(x)) == 0.0);
  net->train();
  CHECK(max_abs_diff(net->forward(x), net->forward(x)) > 0.0);
}
