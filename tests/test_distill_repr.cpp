// Representation distillation losses (distill/hidden_loss.h, attention_relation.h,
// contrastive.h) against hand values, closed forms and central finite differences. Test names
// start with "repr:" so that `ctest -R repr` selects them.
#include "torch_catch.h"

#include <cmath>
#include <functional>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "distill/attention_relation.h"
#include "distill/contrastive.h"
#include "distill/hidden_loss.h"
#include "model/llama.h"

using namespace edgedistill;
using namespace edgedistill::distill;

namespace {

// Central differences, h = 1e-6, in float64: truncation O(h^2) and rounding O(eps / h) are both
// near 1e-10 for these O(1) losses (O(10) curvature at tau = 0.1); 1e-6 leaves a wide margin.
constexpr double kStep = 1e-6, kGradientTolerance = 1e-6;
// Equal float64 computations in another operation order agree to rounding.
constexpr double kFloat64Tolerance = 1e-12;
// Float32 softmaxes of the same scores computed in a different order (model vs loss).
constexpr double kFloat32Tolerance = 1e-5;

// Checks d loss_of() / d x against central differences at every entry of x (a float64 leaf).
void check_gradient(const std::function<torch::Tensor()>& loss_of, const torch::Tensor& x,
                    const std::string& name) {
  const auto analytic = torch::autograd::grad({loss_of()}, {x})[0].reshape({-1});
  torch::NoGradGuard no_grad;
  auto flat = x.view({-1});
  for (int64_t i = 0; i < flat.numel(); ++i) {
    const double saved = flat[i].item<double>();
    flat[i] = saved + kStep;
    const double plus = loss_of().item<double>();
    flat[i] = saved - kStep;
    const double minus = loss_of().item<double>();
    flat[i] = saved;
    INFO(name << "[" << i << "]");
    CHECK(analytic[i].item<double>() ==
          Approx((plus - minus) / (2 * kStep)).margin(kGradientTolerance));
  }
}

torch::Tensor leaf64(torch::IntArrayRef sizes) {
  return torch::randn(sizes, torch::kFloat64).requires_grad_(true);
}

std::vector<torch::Tensor> random_hidden(int states, int64_t dim, bool requires_grad) {
  std::vector<torch::Tensor> hidden;
  hidden.reserve(states);
  for (int i = 0; i < states; ++i) {
    hidden.push_back(torch::randn({2, 3, dim}, torch::kFloat64).requires_grad_(requires_grad));
  }
  return hidden;
}

// The undefined mask: every token counts.
const torch::Tensor kAllTokens;

double value(const torch::Tensor& scalar) {
  return scalar.item<double>();
}

bool same_pairs(const std::vector<LayerPair>& got, const std::vector<LayerPair>& expected) {
  if (got.size() != expected.size()) return false;
  for (size_t i = 0; i < got.size(); ++i) {
    if (got[i].student != expected[i].student || got[i].teacher != expected[i].teacher) {
      return false;
    }
  }
  return true;
}

}  // namespace

// ---- hidden-state transfer ----

TEST_CASE("repr: uniform_layer_map matches hand-computed TinyBERT maps") {
  // (i + 1) * 6 / 5 = 1.2, 2.4, 3.6, 4.8, 6 -> teacher blocks 0, 1, 3, 4, 5 (hidden index + 1).
  CHECK(same_pairs(uniform_layer_map(5, 6), {{1, 1}, {2, 2}, {3, 4}, {4, 5}, {5, 6}}));
  // (i + 1) * 6 / 3 = 2, 4, 6 -> teacher blocks 1, 3, 5.
  CHECK(same_pairs(uniform_layer_map(3, 6), {{1, 2}, {2, 4}, {3, 6}}));
  // A deeper student: 0.5, 1, 1.5, 2, 2.5, 3 with halves rounded up.
  CHECK(same_pairs(uniform_layer_map(6, 3), {{1, 1}, {2, 1}, {3, 2}, {4, 2}, {5, 3}, {6, 3}}));
  // 0.25 rounds to 0, which would be the embeddings: block 0 instead.
  CHECK(same_pairs(uniform_layer_map(4, 1), {{1, 1}, {2, 1}, {3, 1}, {4, 1}}));
  CHECK_THROWS_AS(uniform_layer_map(0, 6), InputError);
}

TEST_CASE("repr: hidden-state loss projects only between different widths") {
  HiddenStateLoss same(std::vector<LayerPair>{{1, 2}, {2, 4}}, 64, 64, "mse");
  CHECK(same->parameters().empty());
  CHECK_FALSE(same->projection(0));
  HiddenStateLoss wider(std::vector<LayerPair>{{1, 2}, {2, 4}}, 192, 256, "cosine");
  const auto params = wider->named_parameters();
  REQUIRE(params.size() == 2);
  for (const std::string name : {"proj_0.weight", "proj_1.weight"}) {
    REQUIRE(params.contains(name));
    CHECK(params[name].sizes() == torch::IntArrayRef({256, 192}));  // no bias
  }
  CHECK_THROWS_WITH(HiddenStateLoss(std::vector<LayerPair>{{1, 1}}, 8, 8, "l1"),
                    Catch::Contains("'l1' is unknown"));
}

TEST_CASE("repr: hidden-state loss is 0 for identical (mse) and parallel (cosine) states") {
  torch::manual_seed(11);
  const auto hidden = random_hidden(3, 8, false);
  HiddenStateLoss mse(uniform_layer_map(2, 2), 8, 8, "mse");
  CHECK(value(mse(hidden, hidden, kAllTokens)) == 0.0);
  std::vector<torch::Tensor> scaled;
  scaled.reserve(hidden.size());
  for (const auto& h : hidden) scaled.push_back(3.0 * h);
  HiddenStateLoss cosine(uniform_layer_map(2, 2), 8, 8, "cosine");
  CHECK(value(cosine(hidden, scaled, kAllTokens)) == Approx(0.0).margin(kFloat64Tolerance));
  CHECK(value(mse(hidden, scaled, kAllTokens)) > 0.1);
  // MSE against a hand computation: mean over pairs, tokens and features of the squared error.
  CHECK(value(mse(hidden, scaled, kAllTokens)) ==
        Approx(value((4.0 * hidden[1].square().mean() + 4.0 * hidden[2].square().mean()) / 2))
            .epsilon(kFloat64Tolerance));
}

TEST_CASE("repr: hidden-state loss names a layer the model does not have") {
  torch::manual_seed(12);
  const auto student = random_hidden(3, 8, false), teacher = random_hidden(5, 8, false);
  HiddenStateLoss loss(std::vector<LayerPair>{{1, 1}, {3, 4}}, 8, 8, "mse");
  CHECK_THROWS_AS(loss(student, teacher, kAllTokens), InputError);
  CHECK_THROWS_WITH(loss(student, teacher, kAllTokens),
                    Catch::Contains("student layer index 3") && Catch::Contains("has 2 layers"));
  HiddenStateLoss far(std::vector<LayerPair>{{1, 5}}, 8, 8, "mse");
  CHECK_THROWS_WITH(far(student, teacher, kAllTokens),
                    Catch::Contains("teacher layer index 5") && Catch::Contains("has 4 layers"));
}

TEST_CASE("repr: hidden-state loss ignores masked tokens") {
  torch::manual_seed(13);
  const auto student = random_hidden(3, 4, false), teacher = random_hidden(3, 6, false);
  HiddenStateLoss loss(std::vector<LayerPair>{{1, 1}, {2, 2}}, 4, 6, "mse");
  loss->to(torch::kFloat64);
  // Sequence 1 masked out entirely: the loss is sequence 0's alone.
  const auto mask = torch::tensor({{1, 1, 1}, {0, 0, 0}}, torch::kBool);
  auto first = [](const std::vector<torch::Tensor>& hidden) {
    std::vector<torch::Tensor> out;
    out.reserve(hidden.size());
    for (const auto& h : hidden) out.push_back(h.narrow(0, 0, 1));
    return out;
  };
  const double masked = value(loss(student, teacher, mask));
  CHECK(masked ==
        Approx(value(loss(first(student), first(teacher), kAllTokens))).epsilon(kFloat64Tolerance));
  // Changing a masked token changes nothing; a float mask counts like a bool one.
  auto changed = student;
  changed[2] = student[2].clone();
  changed[2][1][2] += 5.0;
  CHECK(value(loss(changed, teacher, mask.to(torch::kFloat32))) == masked);
}

TEST_CASE("repr: hidden-state loss gradients match finite differences (float64)") {
  torch::manual_seed(14);
  const auto mask = torch::tensor({{1.0, 1.0, 0.0}, {1.0, 0.0, 1.0}}, torch::kFloat64);
  for (const std::string metric : {"mse", "cosine"}) {
    const auto student = random_hidden(3, 4, true), teacher = random_hidden(4, 5, false);
    HiddenStateLoss loss(std::vector<LayerPair>{{1, 1}, {2, 3}}, 4, 5, metric);
    loss->to(torch::kFloat64);
    auto loss_of = [&] { return loss(student, teacher, mask); };
    INFO(metric);
    check_gradient(loss_of, student[1], "student hidden 1");
    check_gradient(loss_of, student[2], "student hidden 2");
    check_gradient(loss_of, loss->projection(0)->weight, "proj_0");
    check_gradient(loss_of, loss->projection(1)->weight, "proj_1");
  }
}

// ---- attention relations ----

TEST_CASE(
    "repr: relation_matrix with one relation head per attention head is the model's attention") {
  torch::manual_seed(21);
  model::LlamaConfig config;
  config.vocab_size = 50;
  config.dim = 64;
  config.n_layers = 2;
  config.n_heads = 4;
  config.n_kv_heads = 2;
  config.ffn_dim = 96;
  config.max_seq_len = 16;
  config.init_std = 0.2;  // attention far from uniform
  model::LlamaModel net(config);
  torch::NoGradGuard no_grad;
  model::ForwardOptions options;
  options.attention = true;
  options.relation_layer = 1;
  const auto out = net->forward(torch::randint(50, {2, 7}, torch::kInt64), options);
  const auto relation = relation_matrix(out.queries, out.keys, config.n_heads);  // [2, 4, 7, 7]
  REQUIRE(relation.sizes() == torch::IntArrayRef({2, 4, 7, 7}));
  CHECK((relation.exp() - out.attention[1]).abs().max().item<double>() < kFloat32Tolerance);
  // Log-probabilities: rows sum to 1 over the visible prefix, the future is -inf.
  CHECK((relation.exp().sum(-1) - 1).abs().max().item<double>() < kFloat32Tolerance);
  const auto future = torch::ones({7, 7}, torch::kBool).triu(1);
  CHECK(relation.masked_select(future).isinf().all().item<bool>());
  CHECK(relation.scalar_type() == torch::kFloat32);
}

TEST_CASE("repr: attention relation loss is 0 for identical inputs and works across widths") {
  torch::manual_seed(22);
  const auto q = torch::randn({2, 6, 256}), k = torch::randn({2, 6, 256}),
             v = torch::randn({2, 6, 256});
  CHECK(value(attention_relation_loss(q, k, v, q, k, v, 4, kAllTokens)) == 0.0);
  // Student 192 wide, teacher 256, 4 relation heads of 48 and 64 columns.
  const auto sq = torch::randn({2, 6, 192}, torch::requires_grad()),
             sk = torch::randn({2, 6, 192}, torch::requires_grad()),
             sv = torch::randn({2, 6, 192}, torch::requires_grad());
  const auto loss = attention_relation_loss(sq, sk, sv, q, k, v, 4, kAllTokens);
  CHECK(std::isfinite(value(loss)));
  CHECK(value(loss) > 0.0);
  loss.backward();
  CHECK(sq.grad().abs().max().item<double>() > 0.0);
  CHECK(sv.grad().abs().max().item<double>() > 0.0);
  // Relations see only dot products: a teacher whose heads use 48 of their 64 columns, and a
  // student holding those columns scaled by (48 / 64)^(1/4) (so that a.b / sqrt(48) equals the
  // teacher's a.b / sqrt(64)), relate identically.
  const auto used = torch::randn({3, 5, 4, 48}, torch::kFloat64);
  auto teacher_of = [&](const torch::Tensor& x) {
    return torch::cat({x, torch::zeros({3, 5, 4, 16}, torch::kFloat64)}, -1).reshape({3, 5, 256});
  };
  auto student_of = [&](const torch::Tensor& x) {
    return (x * std::pow(48.0 / 64.0, 0.25)).reshape({3, 5, 192});
  };
  const auto& tq = used;
  const auto tk = torch::randn_like(used), tv = torch::randn_like(used);
  CHECK(value(attention_relation_loss(student_of(tq), student_of(tk), student_of(tv),
                                      teacher_of(tq), teacher_of(tk), teacher_of(tv), 4,
                                      kAllTokens)) == Approx(0.0).margin(kFloat64Tolerance));
  CHECK_THROWS_AS(attention_relation_loss(sq, sk, sv, q, k, v, 5, kAllTokens), InputError);
  CHECK_THROWS_WITH(attention_relation_loss(sq, sk, sv, q, k, v, 5, kAllTokens),
                    Catch::Contains("width 192 is not divisible by relation_heads 5"));
  CHECK_THROWS_WITH(attention_relation_loss(sq, sk, sv, q, k, v, 3, kAllTokens),
                    Catch::Contains("width 256 is not divisible by relation_heads 3"));
}

TEST_CASE("repr: attention relation loss ignores masked query positions") {
  torch::manual_seed(23);
  auto sq = torch::randn({2, 5, 12}), sk = torch::randn({2, 5, 12}), sv = torch::randn({2, 5, 12});
  const auto tq = torch::randn({2, 5, 16}), tk = torch::randn({2, 5, 16}),
             tv = torch::randn({2, 5, 16});
  // Trailing padding: positions 3 and 4 do not count, and no counted query sees them.
  const auto mask = torch::tensor({{1, 1, 1, 0, 0}, {1, 1, 1, 0, 0}}, torch::kBool);
  const double masked = value(attention_relation_loss(sq, sk, sv, tq, tk, tv, 2, mask));
  auto prefix = [](const torch::Tensor& x) { return x.narrow(1, 0, 3); };
  CHECK(masked ==
        Approx(value(attention_relation_loss(prefix(sq), prefix(sk), prefix(sv), prefix(tq),
                                             prefix(tk), prefix(tv), 2, kAllTokens)))
            .epsilon(kFloat32Tolerance));
  sq.narrow(1, 3, 2).normal_();
  sk.narrow(1, 3, 2).normal_();
  sv.narrow(1, 3, 2).normal_();
  CHECK(value(attention_relation_loss(sq, sk, sv, tq, tk, tv, 2, mask)) == masked);
  CHECK(value(attention_relation_loss(sq, sk, sv, tq, tk, tv, 2, kAllTokens)) != masked);
}

TEST_CASE("repr: attention relation loss gradients match finite differences (float64)") {
  torch::manual_seed(24);
  const auto sq = leaf64({2, 4, 6}), sk = leaf64({2, 4, 6}), sv = leaf64({2, 4, 6});
  const auto tq = torch::randn({2, 4, 8}, torch::kFloat64),
             tk = torch::randn({2, 4, 8}, torch::kFloat64),
             tv = torch::randn({2, 4, 8}, torch::kFloat64);
  const auto mask = torch::tensor({{1, 1, 1, 0}, {1, 0, 1, 1}}, torch::kBool);
  auto loss_of = [&] { return attention_relation_loss(sq, sk, sv, tq, tk, tv, 2, mask); };
  REQUIRE(loss_of().scalar_type() == torch::kFloat64);
  check_gradient(loss_of, sq, "student q");
  check_gradient(loss_of, sk, "student k");
  check_gradient(loss_of, sv, "student v");
}

// ---- contrastive ----

TEST_CASE("repr: pool_sequences averages the unmasked positions") {
  torch::manual_seed(31);
  const auto hidden = torch::randn({2, 4, 3}, torch::kFloat64);
  const auto mask = torch::tensor({{1, 0, 1, 0}, {0, 0, 0, 0}}, torch::kBool);
  const auto pooled = pool_sequences(hidden, mask);
  REQUIRE(pooled.sizes() == torch::IntArrayRef({2, 3}));
  CHECK((pooled[0] - (hidden[0][0] + hidden[0][2]) / 2).abs().max().item<double>() <
        kFloat64Tolerance);
  CHECK(pooled[1].abs().max().item<double>() == 0.0);  // nothing counts
  CHECK((pool_sequences(hidden, kAllTokens) - hidden.mean(1)).abs().max().item<double>() <
        kFloat64Tolerance);
}

TEST_CASE("repr: info_nce is about log(N) at random embeddings and 0 when each pair matches") {
  torch::manual_seed(32);
  const int64_t n = 64, width = 512;
  const auto s = torch::randn({n, width}), t = torch::randn({n, width});
  // Random unit vectors in 512 dimensions: cosines ~ N(0, 1/512), so at tau = 0.1 the logits
  // spread by ~0.44 and the loss sits near log(N) + 0.44^2 / 2.
  CHECK(value(info_nce(s, t, 0.1)) == Approx(std::log(double(n))).epsilon(0.1));
  // s = t at small tau: the positive's logit is 100, the negatives' ~N(0, 4.4^2).
  CHECK(value(info_nce(s, s, 0.01)) < 1e-6);
  // Extra rows of t are negatives only.
  const auto more = torch::cat({t, torch::randn({3 * n, width})});
  CHECK(value(info_nce(s, more, 0.1)) == Approx(std::log(4.0 * n)).epsilon(0.1));
  CHECK_THROWS_AS(info_nce(s, t, 0.0), InputError);
}

TEST_CASE("repr: info_nce gradients match finite differences (float64)") {
  torch::manual_seed(33);
  const auto s = leaf64({3, 4}), t = leaf64({5, 4});
  auto loss_of = [&] { return info_nce(s, t, 0.1); };
  check_gradient(loss_of, s, "s");
  check_gradient(loss_of, t, "t");
}

TEST_CASE("repr: the contrastive memory bank fills FIFO and saves as buffers") {
  torch::manual_seed(34);
  ContrastiveLoss loss(6, 4, 8, 0.1, 5);
  CHECK(loss->named_buffers().contains("bank"));
  CHECK(loss->named_buffers().contains("bank_fill"));
  CHECK(ContrastiveLoss(6, 4, 8, 0.1, 0)->buffers().empty());
  const auto params = loss->named_parameters();
  CHECK(params["student_head.weight"].sizes() == torch::IntArrayRef({8, 6}));
  CHECK(params["teacher_head.weight"].sizes() == torch::IntArrayRef({8, 4}));
  std::vector<torch::Tensor> batches;
  for (int i = 0; i < 3; ++i) {
    batches.push_back(torch::randn({2, 4}));
    loss(torch::randn({2, 6}), batches.back());
  }
  // Rows 0..4 got batches 0, 0, 1, 1, 2 and then row 0 the last row of batch 2.
  const auto expected =
      torch::stack({batches[2][1], batches[0][1], batches[1][0], batches[1][1], batches[2][0]});
  CHECK(torch::equal(loss->bank, expected));
  CHECK(loss->bank_rows() == 5);
  CHECK(loss->bank_fill[1].item<int64_t>() == 1);
  // Evaluation does not push.
  loss->eval();
  const auto s = torch::randn({2, 6}), t = torch::randn({2, 4});
  const double before = value(loss(s, t));
  CHECK(torch::equal(loss->bank, expected));
  // A round trip through torch::save restores the bank, its position and the loss.
  std::stringstream stream;
  torch::save(loss, stream);
  ContrastiveLoss loaded(6, 4, 8, 0.1, 5);
  torch::load(loaded, stream);
  loaded->eval();
  CHECK(torch::equal(loaded->bank, expected));
  CHECK(torch::equal(loaded->bank_fill, loss->bank_fill));
  CHECK(value(loaded(s, t)) == before);
  // A batch larger than the bank keeps its last rows.
  loaded->train();
  const auto big = torch::randn({7, 4});
  loaded(torch::randn({7, 6}), big);
  CHECK(loaded->bank_rows() == 5);
  CHECK(torch::equal(loaded->bank, big.narrow(0, 2, 5).roll(1, 0)));  // rows written from 1 on
}

TEST_CASE("repr: the memory bank's rows join the negatives") {
  torch::manual_seed(35);
  const int64_t n = 64, width = 256, capacity = 192;
  ContrastiveLoss loss(width, width, width, 0.1, capacity);
  loss->eval();
  const auto s = torch::randn({n, width}), t = torch::randn({n, width});
  // An empty bank adds nothing: the loss is InfoNCE over the heads' outputs.
  const double empty = value(loss(s, t));
  CHECK(empty == Approx(value(info_nce(loss->student_head(s), loss->teacher_head(t), 0.1)))
                     .epsilon(kFloat32Tolerance));
  CHECK(empty == Approx(std::log(double(n))).epsilon(0.1));
  loss->train();
  for (int i = 0; i < 3; ++i) loss(torch::randn({n, width}), torch::randn({n, width}));
  REQUIRE(loss->bank_rows() == capacity);
  loss->eval();
  const double full = value(loss(s, t));
  CHECK(full > empty);
  CHECK(full == Approx(std::log(double(n + capacity))).epsilon(0.1));
}

TEST_CASE("repr: contrastive loss gradients match finite differences (float64)") {
  torch::manual_seed(36);
  ContrastiveLoss loss(5, 4, 3, 0.1, 4);
  loss->to(torch::kFloat64);
  loss(torch::randn({2, 5}, torch::kFloat64), torch::randn({2, 4}, torch::kFloat64));  // 2 of 4
  loss->eval();
  REQUIRE(loss->bank_rows() == 2);
  const auto student = leaf64({3, 5});
  const auto teacher = torch::randn({3, 4}, torch::kFloat64);
  auto loss_of = [&] { return loss(student, teacher); };
  REQUIRE(std::isfinite(value(loss_of())));
  check_gradient(loss_of, student, "student pooled");
  check_gradient(loss_of, loss->student_head->weight, "student_head.weight");
  check_gradient(loss_of, loss->teacher_head->weight, "teacher_head.weight");
  check_gradient(loss_of, loss->teacher_head->bias, "teacher_head.bias");
}
