// The raw-pointer kernels behind the fused training ops (fused_ops.h).
//
// One source (fused_kernels_body.inc) is compiled once per instruction set, each into its own
// namespace with its own flags: the baseline x86-64/aarch64 build (the scalar twin, vectorised
// only as far as the baseline ISA allows) and, on x86-64, AVX2 + FMA. fused_kernels() picks one
// at first use from the CPU's features; EDGEDISTILL_ISA=scalar forces the baseline.
//
// Every kernel works on a range of rows [begin, end) so callers can split rows across threads.
// Reductions use 8 fixed lanes summed in a fixed order, the same in every build.
#pragma once

#include <cstdint>

namespace edgedistill::model {

struct FusedKernels {
  const char* isa;  // "scalar" or "avx2"

  // x [rows, dim]: rstd[r] = 1 / sqrt(mean(x_r^2) + eps), y_r = x_r * rstd[r] * w.
  void (*rms_norm_forward)(const float* x, const float* w, float eps, int64_t dim, int64_t begin,
                           int64_t end, float* y, float* rstd);
  // dx_r = rstd (g - xhat mean(g xhat)) with g = dy w, xhat = x rstd; adds dy * xhat to dw_sum.
  void (*rms_norm_backward)(const float* x, const float* w, const float* rstd, const float* dy,
                            int64_t dim, int64_t begin, int64_t end, float* dx, float* dw_sum);
  // Rotates the `half` pairs (in[2i], in[2i+1]) by the angle with cosine c[i], sine sign * s[i].
  void (*rotate_pairs)(const float* in, float* out, const float* c, const float* s, int64_t half,
                       float sign);
  // gate_up [rows, 2 width] (gate | up) -> out [rows, width] = silu(gate) * up.
  void (*swiglu_forward)(const float* gate_up, int64_t width, int64_t begin, int64_t end,
                         float* out);
  void (*swiglu_backward)(const float* gate_up, const float* dout, int64_t width, int64_t begin,
                          int64_t end, float* d_gate_up);
  // logits [rows, vocab]: lse[r] = logsumexp(logits_r), loss[r] = lse[r] - logits_r[target_r].
  void (*cross_entropy_forward)(const float* logits, const int64_t* targets, int64_t vocab,
                                int64_t begin, int64_t end, float* lse, float* loss);
  // dlogits_r = (softmax(logits_r) - onehot(target_r)) * scale.
  void (*cross_entropy_backward)(const float* logits, const int64_t* targets, const float* lse,
                                 float scale, int64_t vocab, int64_t begin, int64_t end,
                                 float* dlogits);
};

// The kernels for this CPU (or EDGEDISTILL_ISA), chosen once.
const FusedKernels& fused_kernels();
// Each build, for tests that compare them: the baseline always; AVX2 only when it was built and
// this CPU has AVX2 and FMA (else nullptr).
const FusedKernels& scalar_fused_kernels();
const FusedKernels* avx2_fused_kernels();

}  // namespace edgedistill::model
