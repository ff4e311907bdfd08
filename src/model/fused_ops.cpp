#include "model/fused_ops.h"

#include <ATen/Parallel.h>

#include <array>
#include <vector>

#include "core/error.h"
#include "model/fused_kernels.h"

namespace edgedistill::model {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Rows per block of a reduction over rows (RMSNorm's dw): the blocks' partial sums are added in
// block order, so the result does not depend on how many threads ran.
constexpr int64_t kRowsPerBlock = 64;

bool fusable(const torch::Tensor& x) {
  return x.device().is_cpu() && x.scalar_type() == torch::kFloat32;
}

class RmsNormFunction : public torch::autograd::Function<RmsNormFunction> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x_in,
                               const torch::Tensor& w_in, double eps) {
    const auto x = x_in.contiguous();
    const auto w = w_in.contiguous();
    const int64_t dim = x.size(-1), rows = x.numel() / dim;
    auto y = torch::empty_like(x);
    auto rstd = torch::empty({rows}, x.options());
    const auto& kernels = fused_kernels();
    at::parallel_for(0, rows, 16, [&](int64_t begin, int64_t end) {
      kernels.rms_norm_forward(x.data_ptr<float>(), w.data_ptr<float>(), static_cast<float>(eps),
                               dim, begin, end, y.data_ptr<float>(), rstd.data_ptr<float>());
    });
    ctx->save_for_backward({x, w, rstd});
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const auto& x = saved[0];
    const auto& w = saved[1];
    const auto& rstd = saved[2];
    const auto dy = grad_outputs[0].contiguous();
    const int64_t dim = x.size(-1), rows = x.numel() / dim;
    const int64_t blocks = (rows + kRowsPerBlock - 1) / kRowsPerBlock;
    auto dx = torch::empty_like(x);
    auto dw_blocks = torch::zeros({blocks, dim}, x.options());
    const auto& kernels = fused_kernels();
    at::parallel_for(0, blocks, 1, [&](int64_t block_begin, int64_t block_end) {
      for (int64_t block = block_begin; block < block_end; ++block) {
        kernels.rms_norm_backward(x.data_ptr<float>(), w.data_ptr<float>(), rstd.data_ptr<float>(),
                                  dy.data_ptr<float>(), dim, block * kRowsPerBlock,
                                  std::min(rows, (block + 1) * kRowsPerBlock), dx.data_ptr<float>(),
                                  dw_blocks[block].data_ptr<float>());
      }
    });
    auto dw = torch::zeros({dim}, x.options());
    for (int64_t block = 0; block < blocks; ++block) dw += dw_blocks[block];
    return {dx.view(grad_outputs[0].sizes()), dw, torch::Tensor()};
  }
};

// Rotates every head of x [B, T, heads, D] by its position's (cos, sign * sin).
torch::Tensor rotate_heads(const torch::Tensor& x_in, const torch::Tensor& cos_in,
                           const torch::Tensor& sin_in, float sign) {
  const auto x = x_in.contiguous();
  const auto cos = cos_in.contiguous();
  const auto sin = sin_in.contiguous();
  const int64_t length = x.size(1), heads = x.size(2), half = x.size(3) / 2;
  auto y = torch::empty_like(x);
  const float *xp = x.data_ptr<float>(), *cp = cos.data_ptr<float>(), *sp = sin.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  const auto& kernels = fused_kernels();
  at::parallel_for(0, x.size(0) * length, 16, [&](int64_t begin, int64_t end) {
    for (int64_t bt = begin; bt < end; ++bt) {
      const int64_t t = bt % length;
      for (int64_t h = 0; h < heads; ++h) {
        const int64_t offset = (bt * heads + h) * 2 * half;
        kernels.rotate_pairs(xp + offset, yp + offset, cp + t * half, sp + t * half, half, sign);
      }
    }
  });
  return y;
}

class RopeFunction : public torch::autograd::Function<RopeFunction> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& cos, const torch::Tensor& sin) {
    ctx->save_for_backward({cos, sin});
    return rotate_heads(x, cos, sin, 1.0f);
  }
  // The transpose of a rotation is the rotation back.
  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    return {rotate_heads(grad_outputs[0], saved[0], saved[1], -1.0f), torch::Tensor(),
            torch::Tensor()};
  }
};

class SwigluFunction : public torch::autograd::Function<SwigluFunction> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& gate_up_in) {
    const auto gate_up = gate_up_in.contiguous();
    const int64_t width = gate_up.size(-1) / 2, rows = gate_up.numel() / (2 * width);
    auto sizes = gate_up.sizes().vec();
    sizes.back() = width;
    auto out = torch::empty(sizes, gate_up.options());
    const auto& kernels = fused_kernels();
    at::parallel_for(0, rows, 8, [&](int64_t begin, int64_t end) {
      kernels.swiglu_forward(gate_up.data_ptr<float>(), width, begin, end, out.data_ptr<float>());
    });
    ctx->save_for_backward({gate_up});
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto gate_up = ctx->get_saved_variables()[0];
    const auto dout = grad_outputs[0].contiguous();
    const int64_t width = gate_up.size(-1) / 2, rows = gate_up.numel() / (2 * width);
    auto d_gate_up = torch::empty_like(gate_up);
    const auto& kernels = fused_kernels();
    at::parallel_for(0, rows, 8, [&](int64_t begin, int64_t end) {
      kernels.swiglu_backward(gate_up.data_ptr<float>(), dout.data_ptr<float>(), width, begin, end,
                              d_gate_up.data_ptr<float>());
    });
    return {d_gate_up};
  }
};

// Where the heads of row (b, t) of qkv [B, T, (H + 2 Hk) D] go in the attention layouts.
struct HeadLayout {
  int64_t batch, length, heads, kv_heads, head_dim;
  int64_t group() const { return heads / kv_heads; }
  int64_t row_width() const { return (heads + 2 * kv_heads) * head_dim; }
  // Offset (floats) of query head h at (b, t) in q [B*Hk, G*T, D]: batch entry b*Hk + h/G, row
  // (h%G)*T + t.
  int64_t q_offset(int64_t b, int64_t t, int64_t h) const {
    const int64_t j = h / group(), g = h % group();
    return ((b * kv_heads + j) * group() * length + g * length + t) * head_dim;
  }
  // Offset of kv head j at (b, t) in k or v [B*Hk, T, D].
  int64_t kv_offset(int64_t b, int64_t t, int64_t j) const {
    return ((b * kv_heads + j) * length + t) * head_dim;
  }
};

// Moves the heads of qkv rows into (or, backward, out of) the attention layouts, rotating q and k.
// Forward: qkv -> q, k, v (sign +1). Backward: dq, dk, dv -> dqkv (sign -1, the inverse rotation).
void move_heads(const HeadLayout& layout, float* qkv, float* q, float* k, float* v,
                const std::array<torch::Tensor, 4>& tables, bool to_heads) {
  const int64_t d = layout.head_dim, half = d / 2, length = layout.length;
  const float sign = to_heads ? 1.0f : -1.0f;
  const float *cq = tables[0].data_ptr<float>(), *sq = tables[1].data_ptr<float>();
  const float *ck = tables[2].data_ptr<float>(), *sk = tables[3].data_ptr<float>();
  const auto& kernels = fused_kernels();
  at::parallel_for(0, layout.batch * length, 16, [&](int64_t begin, int64_t end) {
    for (int64_t bt = begin; bt < end; ++bt) {
      const int64_t b = bt / length, t = bt % length;
      float* row = qkv + bt * layout.row_width();
      for (int64_t h = 0; h < layout.heads; ++h) {
        float* in_row = row + h * d;
        float* in_q = q + layout.q_offset(b, t, h);
        kernels.rotate_pairs(to_heads ? in_row : in_q, to_heads ? in_q : in_row, cq + t * half,
                             sq + t * half, half, sign);
      }
      for (int64_t j = 0; j < layout.kv_heads; ++j) {
        float* k_row = row + (layout.heads + j) * d;
        float* v_row = row + (layout.heads + layout.kv_heads + j) * d;
        float* k_head = k + layout.kv_offset(b, t, j);
        float* v_head = v + layout.kv_offset(b, t, j);
        kernels.rotate_pairs(to_heads ? k_row : k_head, to_heads ? k_head : k_row, ck + t * half,
                             sk + t * half, half, sign);
        for (int64_t i = 0; i < d; ++i)
          (to_heads ? v_head : v_row)[i] = (to_heads ? v_row : v_head)[i];
      }
    }
  });
}

class SplitHeadsFunction : public torch::autograd::Function<SplitHeadsFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const torch::Tensor& qkv_in, int64_t heads,
                               int64_t kv_heads, const torch::Tensor& cos_q,
                               const torch::Tensor& sin_q, const torch::Tensor& cos_k,
                               const torch::Tensor& sin_k) {
    auto qkv = qkv_in.contiguous();
    const HeadLayout layout{qkv.size(0), qkv.size(1), heads, kv_heads,
                            qkv.size(2) / (heads + 2 * kv_heads)};
    const int64_t rows = layout.batch * kv_heads, d = layout.head_dim;
    auto q = torch::empty({rows, layout.group() * layout.length, d}, qkv.options());
    auto k = torch::empty({rows, layout.length, d}, qkv.options());
    auto v = torch::empty({rows, layout.length, d}, qkv.options());
    const std::array<torch::Tensor, 4> tables = {cos_q.contiguous(), sin_q.contiguous(),
                                                 cos_k.contiguous(), sin_k.contiguous()};
    move_heads(layout, qkv.data_ptr<float>(), q.data_ptr<float>(), k.data_ptr<float>(),
               v.data_ptr<float>(), tables, /*to_heads=*/true);
    ctx->save_for_backward({tables[0], tables[1], tables[2], tables[3]});
    ctx->saved_data["shape"] =
        std::vector<int64_t>{layout.batch, layout.length, heads, kv_heads, d};
    return {q, k, v};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto shape = ctx->saved_data["shape"].toIntVector();
    const HeadLayout layout{shape[0], shape[1], shape[2], shape[3], shape[4]};
    const int64_t rows = layout.batch * layout.kv_heads, d = layout.head_dim;
    const auto options = saved[0].options();
    // An output that did not reach the loss has no gradient: it contributes zeros.
    auto gradient = [&](const torch::Tensor& g, int64_t length) {
      return g.defined() ? g.contiguous() : torch::zeros({rows, length, d}, options);
    };
    auto dq = gradient(grads[0], layout.group() * layout.length);
    auto dk = gradient(grads[1], layout.length);
    auto dv = gradient(grads[2], layout.length);
    auto dqkv = torch::empty({layout.batch, layout.length, layout.row_width()}, options);
    move_heads(layout, dqkv.data_ptr<float>(), dq.data_ptr<float>(), dk.data_ptr<float>(),
               dv.data_ptr<float>(), {saved[0], saved[1], saved[2], saved[3]}, /*to_heads=*/false);
    return {dqkv,
            torch::Tensor(),
            torch::Tensor(),
            torch::Tensor(),
            torch::Tensor(),
            torch::Tensor(),
            torch::Tensor()};
  }
};

class CrossEntropyFunction : public torch::autograd::Function<CrossEntropyFunction> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& logits_in,
                               const torch::Tensor& targets_in) {
    const auto logits = logits_in.contiguous();
    const auto targets = targets_in.contiguous();
    const int64_t rows = logits.size(0), vocab = logits.size(1);
    const int64_t* t = targets.data_ptr<int64_t>();
    for (int64_t r = 0; r < rows; ++r) {
      ED_CHECK(t[r] >= 0 && t[r] < vocab, "target ", t[r], " outside the vocabulary of ", vocab);
    }
    auto lse = torch::empty({rows}, logits.options());
    auto loss = torch::empty({rows}, logits.options());
    const auto& kernels = fused_kernels();
    at::parallel_for(0, rows, 4, [&](int64_t begin, int64_t end) {
      kernels.cross_entropy_forward(logits.data_ptr<float>(), t, vocab, begin, end,
                                    lse.data_ptr<float>(), loss.data_ptr<float>());
    });
    ctx->save_for_backward({logits, targets, lse});
    // The mean in float64, in row order: independent of the thread count.
    return torch::full({},
                       loss.to(torch::kFloat64).sum().item<double>() / static_cast<double>(rows),
                       logits.options());
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const auto& logits = saved[0];
    const auto& targets = saved[1];
    const auto& lse = saved[2];
    const int64_t rows = logits.size(0), vocab = logits.size(1);
    const float scale = grad_outputs[0].item<float>() / static_cast<float>(rows);
    auto dlogits = torch::empty_like(logits);
    const auto& kernels = fused_kernels();
    at::parallel_for(0, rows, 4, [&](int64_t begin, int64_t end) {
      kernels.cross_entropy_backward(logits.data_ptr<float>(), targets.data_ptr<int64_t>(),
                                     lse.data_ptr<float>(), scale, vocab, begin, end,
                                     dlogits.data_ptr<float>());
    });
    return {dlogits, torch::Tensor()};
  }
};

}  // namespace

torch::Tensor rms_norm_reference(const torch::Tensor& x, const torch::Tensor& w, double eps) {
  return x * torch::rsqrt(x.pow(2).mean(-1, /*keepdim=*/true) + eps) * w;
}

torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& w, double eps) {
  if (!fusable(x) || !fusable(w)) return rms_norm_reference(x, w, eps);
  return RmsNormFunction::apply(x, w, eps);
}

torch::Tensor apply_rope_reference(const torch::Tensor& x, const torch::Tensor& cos,
                                   const torch::Tensor& sin) {
  const auto sizes = x.sizes();
  const int64_t batch = sizes[0], length = sizes[1], heads = sizes[2], head_dim = sizes[3];
  const auto pairs = x.reshape({batch, length, heads, head_dim / 2, 2});
  const auto even = pairs.select(-1, 0), odd = pairs.select(-1, 1);  // [B, T, heads, D/2]
  const auto c = cos.view({1, length, 1, head_dim / 2});
  const auto s = sin.view({1, length, 1, head_dim / 2});
  return torch::stack({even * c - odd * s, even * s + odd * c}, -1).view(sizes);
}

torch::Tensor apply_rope(const torch::Tensor& x, const torch::Tensor& cos,
                         const torch::Tensor& sin) {
  if (!fusable(x) || !fusable(cos) || !fusable(sin)) return apply_rope_reference(x, cos, sin);
  return RopeFunction::apply(x, cos, sin);
}

torch::Tensor swiglu_reference(const torch::Tensor& gate_up) {
  const auto halves = gate_up.chunk(2, -1);
  return torch::silu(halves[0]) * halves[1];
}

torch::Tensor swiglu(const torch::Tensor& gate_up) {
  if (!fusable(gate_up)) return swiglu_reference(gate_up);
  return SwigluFunction::apply(gate_up);
}

AttentionHeads split_attention_heads_reference(const torch::Tensor& qkv, int64_t n_heads,
                                               int64_t n_kv_heads, const torch::Tensor& cos_q,
                                               const torch::Tensor& sin_q,
                                               const torch::Tensor& cos_k,
                                               const torch::Tensor& sin_k) {
  const int64_t batch = qkv.size(0), length = qkv.size(1);
  const int64_t head_dim = qkv.size(2) / (n_heads + 2 * n_kv_heads), group = n_heads / n_kv_heads;
  const auto parts =
      qkv.split({n_heads * head_dim, n_kv_heads * head_dim, n_kv_heads * head_dim}, -1);
  const auto q =
      apply_rope_reference(parts[0].reshape({batch, length, n_heads, head_dim}), cos_q, sin_q);
  const auto k =
      apply_rope_reference(parts[1].reshape({batch, length, n_kv_heads, head_dim}), cos_k, sin_k);
  const auto v = parts[2].reshape({batch, length, n_kv_heads, head_dim});
  AttentionHeads heads;
  heads.q = q.view({batch, length, n_kv_heads, group, head_dim})
                .permute({0, 2, 3, 1, 4})
                .reshape({batch * n_kv_heads, group * length, head_dim});
  heads.k = k.permute({0, 2, 1, 3}).reshape({batch * n_kv_heads, length, head_dim});
  heads.v = v.permute({0, 2, 1, 3}).reshape({batch * n_kv_heads, length, head_dim});
  return heads;
}

AttentionHeads split_attention_heads(const torch::Tensor& qkv, int64_t n_heads, int64_t n_kv_heads,
                                     const torch::Tensor& cos_q, const torch::Tensor& sin_q,
                                     const torch::Tensor& cos_k, const torch::Tensor& sin_k) {
  if (!fusable(qkv) || !fusable(cos_q) || !fusable(sin_q) || !fusable(cos_k) || !fusable(sin_k)) {
    return split_attention_heads_reference(qkv, n_heads, n_kv_heads, cos_q, sin_q, cos_k, sin_k);
  }
  const auto outputs =
      SplitHeadsFunction::apply(qkv, n_heads, n_kv_heads, cos_q, sin_q, cos_k, sin_k);
  return {outputs[0], outputs[1], outputs[2]};
}

torch::Tensor cross_entropy_reference(const torch::Tensor& logits, const torch::Tensor& targets) {
  return torch::nn::functional::cross_entropy(logits, targets);
}

torch::Tensor cross_entropy(const torch::Tensor& logits, const torch::Tensor& targets) {
  if (!fusable(logits) || !targets.device().is_cpu())
    return cross_entropy_reference(logits, targets);
  return CrossEntropyFunction::apply(logits, targets);
}

}  // namespace edgedistill::model
