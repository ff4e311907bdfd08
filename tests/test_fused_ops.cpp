// The fused training kernels: each fused op against its LibTorch reference twin (values and
// gradients), and each instruction-set build of the raw kernels against the baseline build over
// many sizes and misaligned pointers.
#include "torch_catch.h"

#include <cmath>

#include "core/fast_exp.h"
#include "model/fused_kernels.h"
#include "model/fused_ops.h"

using namespace edgedistill;
using namespace edgedistill::model;

namespace {

// float32 results of the same formula computed in another order (and with or without FMA): a few
// ulps relative to the values' scale.
constexpr double kRelativeTolerance = 2e-5;

double relative_difference(const torch::Tensor& a, const torch::Tensor& b) {
  const double scale = std::max(b.abs().max().item<double>(), 1e-12);
  return (a - b).abs().max().item<double>() / scale;
}

// Runs `op` on fresh leaf copies of `inputs` and backpropagates `upstream`; returns the output
// followed by the inputs' gradients.
template <class Op>
std::vector<torch::Tensor> value_and_gradients(Op op, const std::vector<torch::Tensor>& inputs,
                                               const torch::Tensor& upstream) {
  std::vector<torch::Tensor> leaves;
  for (const auto& input : inputs) leaves.push_back(input.detach().clone().requires_grad_(true));
  const auto out = op(leaves);
  out.backward(upstream);
  std::vector<torch::Tensor> result = {out.detach()};
  for (const auto& leaf : leaves) result.push_back(leaf.grad());
  return result;
}

void require_close(const std::vector<torch::Tensor>& fused,
                   const std::vector<torch::Tensor>& reference) {
  REQUIRE(fused.size() == reference.size());
  for (size_t i = 0; i < fused.size(); ++i) {
    INFO("tensor " << i << " (0: output, then gradients)");
    CHECK(fused[i].sizes() == reference[i].sizes());
    CHECK(relative_difference(fused[i], reference[i]) < kRelativeTolerance);
  }
}

}  // namespace

TEST_CASE("fast_exp stays within its stated error of exp") {
  double worst = 0;
  for (double x = -87.0; x < 88.0; x += 0.0137) {
    const float value = static_cast<float>(x);
    const double exact = std::exp(static_cast<double>(value));
    worst = std::max(worst, std::abs(core::fast_exp(value) - exact) / exact);
  }
  INFO("worst relative error " << worst);
  CHECK(worst < core::kFastExpRelativeError);
  CHECK(core::fast_exp(0.0f) == 1.0f);
  CHECK(std::isnan(core::fast_exp(std::nanf(""))));
  CHECK(core::fast_exp(-INFINITY) < 2e-38f);  // clamped: about 1e-38, never NaN
  CHECK(std::isfinite(core::fast_exp(INFINITY)));
  CHECK(core::fast_exp(INFINITY) > 1e38f);
}

TEST_CASE("fused RMSNorm matches the reference, values and gradients") {
  torch::manual_seed(21);
  // Not dim 1: there dx = r g (1 - x^2 / (x^2 + eps)) is a cancellation of two nearly equal terms,
  // and both versions return rounding noise.
  for (int64_t dim : {2, 7, 8, 9, 31, 64, 257}) {
    for (int64_t rows : {1, 3, 130}) {
      INFO("rows " << rows << " dim " << dim);
      const auto x = torch::randn({rows, dim}) * 3;
      const auto w = torch::randn({dim});
      const auto upstream = torch::randn({rows, dim});
      require_close(
          value_and_gradients([](auto& in) { return rms_norm(in[0], in[1], 1e-5); }, {x, w},
                              upstream),
          value_and_gradients([](auto& in) { return rms_norm_reference(in[0], in[1], 1e-5); },
                              {x, w}, upstream));
    }
  }
}

TEST_CASE("fused RoPE matches the reference, values and gradients") {
  torch::manual_seed(22);
  for (int64_t head_dim : {2, 6, 16, 64}) {
    INFO("head_dim " << head_dim);
    const auto cos = torch::rand({5, head_dim / 2}), sin = torch::rand({5, head_dim / 2});
    const auto x = torch::randn({3, 5, 2, head_dim});
    const auto upstream = torch::randn({3, 5, 2, head_dim});
    require_close(
        value_and_gradients([&](auto& in) { return apply_rope(in[0], cos, sin); }, {x}, upstream),
        value_and_gradients([&](auto& in) { return apply_rope_reference(in[0], cos, sin); }, {x},
                            upstream));
  }
}

TEST_CASE("fused SwiGLU matches the reference, values and gradients") {
  torch::manual_seed(23);
  for (int64_t width : {1, 5, 8, 33, 128}) {
    INFO("width " << width);
    // Large gates reach the clamps of fast_exp; the reference must agree there too.
    const auto gate_up = torch::randn({2, 7, 2 * width}) * 6;
    const auto upstream = torch::randn({2, 7, width});
    require_close(
        value_and_gradients([](auto& in) { return swiglu(in[0]); }, {gate_up}, upstream),
        value_and_gradients([](auto& in) { return swiglu_reference(in[0]); }, {gate_up}, upstream));
  }
}

TEST_CASE("fused cross entropy matches the reference, values and gradients") {
  torch::manual_seed(24);
  for (int64_t vocab : {2, 9, 64, 1001}) {
    INFO("vocab " << vocab);
    const auto logits = torch::randn({37, vocab}) * 4;
    const auto targets = torch::randint(vocab, {37}, torch::kInt64);
    const auto upstream = torch::full({}, 1.5);
    require_close(
        value_and_gradients([&](auto& in) { return cross_entropy(in[0], targets); }, {logits},
                            upstream),
        value_and_gradients([&](auto& in) { return cross_entropy_reference(in[0], targets); },
                            {logits}, upstream));
  }
}

TEST_CASE("fused attention head split matches the reference for every head grouping") {
  torch::manual_seed(25);
  for (auto [heads, kv_heads] :
       std::vector<std::pair<int64_t, int64_t>>{{4, 2}, {4, 4}, {6, 3}, {8, 1}}) {
    INFO(heads << " heads, " << kv_heads << " kv heads");
    const int64_t batch = 2, length = 6, head_dim = 8, group = heads / kv_heads;
    const auto qkv = torch::randn({batch, length, (heads + 2 * kv_heads) * head_dim});
    const auto cos_q = torch::rand({length, head_dim / 2}),
               sin_q = torch::rand({length, head_dim / 2});
    const auto cos_k = torch::rand({length, head_dim / 2}),
               sin_k = torch::rand({length, head_dim / 2});
    const auto dq = torch::randn({batch * kv_heads, group * length, head_dim});
    const auto dk = torch::randn({batch * kv_heads, length, head_dim});
    const auto dv = torch::randn({batch * kv_heads, length, head_dim});
    auto run = [&](bool fused, bool use_v) {
      auto leaf = qkv.clone().requires_grad_(true);
      const auto heads_out =
          fused
              ? split_attention_heads(leaf, heads, kv_heads, cos_q, sin_q, cos_k, sin_k)
              : split_attention_heads_reference(leaf, heads, kv_heads, cos_q, sin_q, cos_k, sin_k);
      // Without v in the loss, its gradient is undefined: the fused backward must treat it as 0.
      auto loss = (heads_out.q * dq).sum() + (heads_out.k * dk).sum();
      if (use_v) loss = loss + (heads_out.v * dv).sum();
      loss.backward();
      return std::vector<torch::Tensor>{heads_out.q.detach(), heads_out.k.detach(),
                                        heads_out.v.detach(), leaf.grad()};
    };
    for (bool use_v : {true, false}) require_close(run(true, use_v), run(false, use_v));
  }
}

TEST_CASE("every kernel build matches the baseline build over sizes and misalignments") {
  const FusedKernels& scalar = scalar_fused_kernels();
  const FusedKernels* avx2 = avx2_fused_kernels();
  if (avx2 == nullptr) {
    WARN("this CPU has no AVX2+FMA: only the baseline build runs here");
    return;
  }
  torch::manual_seed(26);
  // Every width from 0 to twice the 8-float vector plus a tail, each from an aligned and a
  // misaligned (offset by one float) start.
  for (int64_t n = 0; n <= 2 * 8 + 3; ++n) {
    for (int64_t misalign : {0, 1}) {
      INFO("n " << n << " misalign " << misalign);
      const int64_t rows = 3;
      const auto a = torch::randn({rows * 2 * n + 2 + misalign}) * 3;
      const auto b = torch::randn({rows * 2 * n + 2 + misalign});
      const float* x = a.data_ptr<float>() + misalign;
      const float* y = b.data_ptr<float>() + misalign;
      auto compare = [&](auto kernel_call, int64_t out_size) {
        auto out_scalar = torch::zeros({out_size + 1}), out_avx2 = torch::zeros({out_size + 1});
        kernel_call(scalar, out_scalar.data_ptr<float>() + misalign % 2);
        kernel_call(*avx2, out_avx2.data_ptr<float>() + misalign % 2);
        CHECK(relative_difference(out_avx2, out_scalar) < kRelativeTolerance);
      };
      compare([&](const FusedKernels& k, float* out) { k.swiglu_forward(x, n, 0, rows, out); },
              rows * n);
      compare([&](const FusedKernels& k, float* out) { k.swiglu_backward(x, y, n, 0, rows, out); },
              rows * 2 * n);
      if (n > 0) {
        auto rstd = torch::zeros({rows});
        compare(
            [&](const FusedKernels& k, float* out) {
              k.rms_norm_forward(x, y, 1e-5f, n, 0, rows, out, rstd.data_ptr<float>());
            },
            rows * n);
        const auto rstd_values = torch::rand({rows}) + 0.5;
        compare(
            [&](const FusedKernels& k, float* out) {
              std::vector<float> dw(static_cast<size_t>(n), 0.0f);
              k.rms_norm_backward(x, y, rstd_values.data_ptr<float>(), y, n, 0, rows, out,
                                  dw.data());
            },
            rows * n);
        const auto targets = torch::randint(n, {rows}, torch::kInt64);
        compare(
            [&](const FusedKernels& k, float* out) {
              std::vector<float> lse(rows);
              k.cross_entropy_forward(x, targets.data_ptr<int64_t>(), n, 0, rows, lse.data(), out);
            },
            rows);
      }
      if (n % 2 == 0) {
        compare(
            [&](const FusedKernels& k, float* out) { k.rotate_pairs(x, out, y, x, n / 2, -1.0f); },
            n);
      }
    }
  }
}
