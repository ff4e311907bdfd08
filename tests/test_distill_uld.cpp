// Cross-tokenizer distillation: the ULD loss (distill/uld_loss.h) against a slow obvious version
// and analytic values, and its gradient against finite differences.
#include "torch_catch.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <vector>

#include "distill/uld_loss.h"

using namespace edgedistill;
using namespace edgedistill::distill;

namespace {

// float64 throughout; the slow version sums in a different order than torch.
constexpr double kFloat64Tolerance = 1e-12;
// Central differences with h = 1e-6 in float64: truncation O(h^2) and rounding O(eps / h) ~ 1e-10.
constexpr double kFiniteDifferenceTolerance = 1e-6;

double value(const torch::Tensor& t) {
  return t.item<double>();
}

// softmax(row / T) of one row of a [N, V] float64 tensor, in double.
std::vector<double> slow_softmax(const torch::Tensor& logits, int64_t row, double temperature) {
  const auto a = logits.accessor<double, 2>();
  std::vector<double> out(static_cast<size_t>(logits.size(1)));
  double largest = -INFINITY;
  for (int64_t i = 0; i < logits.size(1); ++i) largest = std::max(largest, a[row][i] / temperature);
  double sum = 0;
  for (int64_t i = 0; i < logits.size(1); ++i) {
    out[static_cast<size_t>(i)] = std::exp(a[row][i] / temperature - largest);
    sum += out[static_cast<size_t>(i)];
  }
  for (double& p : out) p /= sum;
  return out;
}

// The slow obvious ULD: per row, both probability vectors sorted descending with std::sort, the
// shorter padded with zeros, the L1 distance; the mean over rows whose mask entry is nonzero.
double slow_uld(const torch::Tensor& student, const torch::Tensor& teacher, double temperature,
                const std::vector<double>& mask = {}) {
  double total = 0, counted = 0;
  for (int64_t r = 0; r < student.size(0); ++r) {
    const double weight = mask.empty() ? 1.0 : mask[static_cast<size_t>(r)];
    auto q = slow_softmax(student, r, temperature);
    auto p = slow_softmax(teacher, r, temperature);
    std::sort(q.begin(), q.end(), std::greater<double>());
    std::sort(p.begin(), p.end(), std::greater<double>());
    const size_t width = std::max(q.size(), p.size());
    q.resize(width, 0.0);
    p.resize(width, 0.0);
    double distance = 0;
    for (size_t i = 0; i < width; ++i) distance += std::abs(q[i] - p[i]);
    total += weight * distance;
    counted += weight;
  }
  return total / std::max(counted, 1.0);
}

}  // namespace

TEST_CASE("ULD matches the slow sorted-probability distance for unequal vocabularies", "[uld]") {
  torch::manual_seed(21);
  for (const auto& [student_vocab, teacher_vocab] :
       {std::pair{13, 8}, std::pair{8, 13}, std::pair{11, 11}}) {
    const auto s = torch::randn({6, student_vocab}, torch::kFloat64) * 2;
    const auto t = torch::randn({6, teacher_vocab}, torch::kFloat64) * 3;
    for (const double temperature : {1.0, 2.5}) {
      INFO("V_s " << student_vocab << ", V_t " << teacher_vocab << ", T " << temperature);
      UldOptions options;
      options.temperature = temperature;
      CHECK(value(uld_loss(s, t, {}, options)) ==
            Approx(slow_uld(s, t, temperature)).margin(kFloat64Tolerance));
      // Rows 1 and 4 masked out.
      const std::vector<double> mask = {1, 0, 1, 1, 0, 1};
      CHECK(value(uld_loss(s, t, torch::tensor(mask, torch::kFloat64), options)) ==
            Approx(slow_uld(s, t, temperature, mask)).margin(kFloat64Tolerance));
      // Chunks of rows change nothing.
      options.chunk_rows = 4;
      CHECK(value(uld_loss(s, t, {}, options)) ==
            Approx(slow_uld(s, t, temperature)).margin(kFloat64Tolerance));
    }
  }
}

TEST_CASE("ULD is 0 between permuted distributions and 2 (1 - 1/V) from uniform to one-hot",
          "[uld]") {
  torch::manual_seed(22);
  const UldOptions options;
  // A permutation of the teacher's logits, plus any constant: the same sorted probabilities.
  const auto teacher = torch::randn({3, 9}, torch::kFloat64);
  const auto permuted = teacher.index_select(1, torch::randperm(9, torch::kInt64)) + 4.0;
  CHECK(std::abs(value(uld_loss(permuted, teacher, {}, options))) < kFloat64Tolerance);
  // Two one-hot distributions, at different tokens of vocabularies of different sizes (e^-1000
  // is 0 in float64).
  auto one_hot = [](int64_t vocab, int64_t hot) {
    auto logits = torch::zeros({1, vocab}, torch::kFloat64);
    logits[0][hot] = 1000.0;
    return logits;
  };
  CHECK(value(uld_loss(one_hot(7, 2), one_hot(12, 9), {}, options)) == 0.0);
  // Uniform over V student tokens against a one-hot teacher over 4 tokens: |1/V - 1| for the top
  // rank, then (V - 1) ranks of 1/V against 0.
  for (const int64_t vocab : {4, 10, 50}) {
    INFO("V " << vocab);
    const auto uniform = torch::zeros({1, vocab}, torch::kFloat64);
    const double expected = 2.0 * (1.0 - 1.0 / static_cast<double>(vocab));
    CHECK(value(uld_loss(uniform, one_hot(4, 1), {}, options)) ==
          Approx(expected).margin(kFloat64Tolerance));
    CHECK(value(uld_loss(one_hot(4, 1), uniform, {}, options)) ==
          Approx(expected).margin(kFloat64Tolerance));
  }
  // No rows: 0.
  CHECK(value(uld_loss(torch::zeros({0, 5}), torch::zeros({0, 3}), {}, options)) == 0.0);
}

TEST_CASE("ULD's gradient through the sort matches central finite differences in float64",
          "[uld]") {
  torch::manual_seed(23);
  const auto mask = torch::tensor({1.0, 0.0, 1.0, 1.0}, torch::kFloat64);
  for (const auto& [student_vocab, teacher_vocab] : {std::pair{9, 5}, std::pair{5, 9}}) {
    const auto teacher = torch::randn({4, teacher_vocab}, torch::kFloat64) * 2;
    const auto start = torch::randn({4, student_vocab}, torch::kFloat64) * 2;
    UldOptions options;
    options.temperature = 1.7;
    auto loss = [&](const torch::Tensor& s) { return uld_loss(s, teacher, mask, options); };
    auto s = start.clone().requires_grad_(true);
    loss(s).backward();
    const auto analytic = s.grad();
    const double h = 1e-6;
    auto numeric = torch::zeros_like(start);
    for (int64_t i = 0; i < start.numel(); ++i) {
      auto plus = start.clone(), minus = start.clone();
      plus.view(-1)[i] += h;
      minus.view(-1)[i] -= h;
      numeric.view(-1)[i] = (value(loss(plus)) - value(loss(minus))) / (2 * h);
    }
    INFO("V_s " << student_vocab << ", V_t " << teacher_vocab);
    CHECK(torch::allclose(analytic, numeric, 1e-5, kFiniteDifferenceTolerance));
    CHECK(analytic.abs().sum().item<double>() > 1e-3);
    // The masked-out row gets no gradient.
    CHECK(analytic[1].abs().max().item<double>() == 0.0);
  }
}
