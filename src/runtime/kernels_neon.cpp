// The runtime kernels for aarch64 NEON, base ARMv8-A only (no dot-product extension, so they run
// on a Cortex-A53 or A72 board as well as on newer cores).
//
// Quantized blocks: a block is two 16-byte vectors. vmull_s8 / vmlal_s8 form int16 sums of two
// byte products (at most 2 * 128 * 127 = 32512, so no overflow), vpaddlq / vpadalq_s16 widen them
// into four int32 lanes, and one FMA adds the lanes, as floats, times d_w * d_x.
#include <arm_neon.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "io/gguf_quants.h"
#include "io/gguf_types.h"
#include "runtime/kernels.h"
#include "runtime/kernels_builds.h"

namespace edgedistill::runtime {
namespace kernels_neon {
namespace {

#include "runtime/kernels_rows.inc"

using io::kQuantBlock;

// One f16 as float with the FCVT instruction (exact, as io::f16_to_float).
float f16_scalar(uint16_t bits) {
  __fp16 value;
  std::memcpy(&value, &bits, sizeof value);
  return static_cast<float>(value);
}

float32x4_t load_f16x4(const uint16_t* p) {
  return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p)));
}

// The scalar build's formula, vectorised: d = max|x| / 127, q = x * (1 / d) rounded half to even
// (FCVTNS), so the two builds agree bit for bit.
void quantize_activations(const float* x, int64_t n, Q8ActivationBlock* out) {
  for (int64_t b = 0; b < n / kQuantBlock; ++b) {
    const float* xb = x + b * kQuantBlock;
    float32x4_t v[8];
    float32x4_t abs_max = vdupq_n_f32(0.0f);
    for (int k = 0; k < 8; ++k) {
      v[k] = vld1q_f32(xb + 4 * k);
      abs_max = vmaxq_f32(abs_max, vabsq_f32(v[k]));
    }
    const float d = vmaxvq_f32(abs_max) / 127.0f;
    const float inverse = d != 0.0f ? 1.0f / d : 0.0f;
    int32x4_t q[8];
    int32x4_t sum = vdupq_n_s32(0);
    for (int k = 0; k < 8; ++k) {
      q[k] = vcvtnq_s32_f32(vmulq_n_f32(v[k], inverse));
      sum = vaddq_s32(sum, q[k]);
    }
    for (int half = 0; half < 2; ++half) {
      const int32x4_t* h = q + 4 * half;
      const int16x8_t low = vcombine_s16(vqmovn_s32(h[0]), vqmovn_s32(h[1]));
      const int16x8_t high = vcombine_s16(vqmovn_s32(h[2]), vqmovn_s32(h[3]));
      vst1q_s8(out[b].qs + 16 * half, vcombine_s8(vqmovn_s16(low), vqmovn_s16(high)));
    }
    out[b].d = d;
    out[b].sum = d * static_cast<float>(vaddvq_s32(sum));
  }
}

struct F32Dot {
  template <int R>
  static void dot(const uint8_t* row, int64_t row_bytes, int64_t cols, const float* x,
                  const Q8ActivationBlock* /*xq*/, float* out) {
    const float* w[R];
    float32x4_t acc0[R], acc1[R];  // two per row: FMA latency needs 8 independent chains
    for (int r = 0; r < R; ++r) {
      w[r] = reinterpret_cast<const float*>(row + r * row_bytes);
      acc0[r] = vdupq_n_f32(0.0f);
      acc1[r] = vdupq_n_f32(0.0f);
    }
    int64_t j = 0;
    for (; j + 8 <= cols; j += 8) {
      const float32x4_t x0 = vld1q_f32(x + j);
      const float32x4_t x1 = vld1q_f32(x + j + 4);
      for (int r = 0; r < R; ++r) {
        prefetch_next_group(w[r] + j, R * row_bytes);
        acc0[r] = vfmaq_f32(acc0[r], vld1q_f32(w[r] + j), x0);
        acc1[r] = vfmaq_f32(acc1[r], vld1q_f32(w[r] + j + 4), x1);
      }
    }
    for (int r = 0; r < R; ++r) {
      float sum = vaddvq_f32(vaddq_f32(acc0[r], acc1[r]));
      for (int64_t k = j; k < cols; ++k) sum += w[r][k] * x[k];
      out[r] = sum;
    }
  }
};

struct F16Dot {
  template <int R>
  static void dot(const uint8_t* row, int64_t row_bytes, int64_t cols, const float* x,
                  const Q8ActivationBlock* /*xq*/, float* out) {
    const uint16_t* w[R];
    float32x4_t acc0[R], acc1[R];
    for (int r = 0; r < R; ++r) {
      w[r] = reinterpret_cast<const uint16_t*>(row + r * row_bytes);
      acc0[r] = vdupq_n_f32(0.0f);
      acc1[r] = vdupq_n_f32(0.0f);
    }
    int64_t j = 0;
    for (; j + 8 <= cols; j += 8) {
      const float32x4_t x0 = vld1q_f32(x + j);
      const float32x4_t x1 = vld1q_f32(x + j + 4);
      for (int r = 0; r < R; ++r) {
        prefetch_next_group(w[r] + j, R * row_bytes);
        acc0[r] = vfmaq_f32(acc0[r], load_f16x4(w[r] + j), x0);
        acc1[r] = vfmaq_f32(acc1[r], load_f16x4(w[r] + j + 4), x1);
      }
    }
    for (int r = 0; r < R; ++r) {
      float sum = vaddvq_f32(vaddq_f32(acc0[r], acc1[r]));
      for (int64_t k = j; k < cols; ++k) sum += f16_scalar(w[r][k]) * x[k];
      out[r] = sum;
    }
  }
};

// Four int32 lanes summing to the integer dot product of 32 weights (w0: elements 0..15, w1:
// 16..31) and 32 activations.
int32x4_t block_dot(int8x16_t w0, int8x16_t w1, int8x16_t x0, int8x16_t x1) {
  int16x8_t p0 = vmull_s8(vget_low_s8(w0), vget_low_s8(x0));
  p0 = vmlal_s8(p0, vget_high_s8(w0), vget_high_s8(x0));
  int16x8_t p1 = vmull_s8(vget_low_s8(w1), vget_low_s8(x1));
  p1 = vmlal_s8(p1, vget_high_s8(w1), vget_high_s8(x1));
  return vpadalq_s16(vpaddlq_s16(p0), p1);
}

// Elements 0..15 (low nibbles) and 16..31 (high nibbles) of a Q4 block, as 0..15.
void unpack_nibbles(const uint8_t* qs, int8x16_t* low, int8x16_t* high) {
  const uint8x16_t packed = vld1q_u8(qs);
  *low = vreinterpretq_s8_u8(vandq_u8(packed, vdupq_n_u8(0x0F)));
  *high = vreinterpretq_s8_u8(vshrq_n_u8(packed, 4));
}

template <class Block>
const Block* block_row(const uint8_t* row, int64_t row_bytes, int r) {
  return reinterpret_cast<const Block*>(row + r * row_bytes);
}

struct Q8_0Dot {
  template <int R>
  static void dot(const uint8_t* row, int64_t row_bytes, int64_t cols, const float* /*x*/,
                  const Q8ActivationBlock* xq, float* out) {
    const io::Q8_0Block* w[R];
    float32x4_t acc[R];
    for (int r = 0; r < R; ++r) {
      w[r] = block_row<io::Q8_0Block>(row, row_bytes, r);
      acc[r] = vdupq_n_f32(0.0f);
    }
    for (int64_t b = 0; b < cols / kQuantBlock; ++b) {
      const int8x16_t x0 = vld1q_s8(xq[b].qs);
      const int8x16_t x1 = vld1q_s8(xq[b].qs + 16);
      for (int r = 0; r < R; ++r) {
        const io::Q8_0Block& wb = w[r][b];
        prefetch_next_group(&wb, R * row_bytes);
        const int32x4_t lanes = block_dot(vld1q_s8(wb.qs), vld1q_s8(wb.qs + 16), x0, x1);
        acc[r] = vfmaq_n_f32(acc[r], vcvtq_f32_s32(lanes), f16_scalar(wb.d) * xq[b].d);
      }
    }
    for (int r = 0; r < R; ++r) out[r] = vaddvq_f32(acc[r]);
  }
};

struct Q4_0Dot {
  template <int R>
  static void dot(const uint8_t* row, int64_t row_bytes, int64_t cols, const float* /*x*/,
                  const Q8ActivationBlock* xq, float* out) {
    const int8x16_t eight = vdupq_n_s8(8);
    const io::Q4_0Block* w[R];
    float32x4_t acc[R];
    for (int r = 0; r < R; ++r) {
      w[r] = block_row<io::Q4_0Block>(row, row_bytes, r);
      acc[r] = vdupq_n_f32(0.0f);
    }
    for (int64_t b = 0; b < cols / kQuantBlock; ++b) {
      const int8x16_t x0 = vld1q_s8(xq[b].qs);
      const int8x16_t x1 = vld1q_s8(xq[b].qs + 16);
      for (int r = 0; r < R; ++r) {
        const io::Q4_0Block& wb = w[r][b];
        prefetch_next_group(&wb, R * row_bytes);
        int8x16_t low, high;
        unpack_nibbles(wb.qs, &low, &high);
        const int32x4_t lanes = block_dot(vsubq_s8(low, eight), vsubq_s8(high, eight), x0, x1);
        acc[r] = vfmaq_n_f32(acc[r], vcvtq_f32_s32(lanes), f16_scalar(wb.d) * xq[b].d);
      }
    }
    for (int r = 0; r < R; ++r) out[r] = vaddvq_f32(acc[r]);
  }
};

struct Q4_1Dot {
  template <int R>
  static void dot(const uint8_t* row, int64_t row_bytes, int64_t cols, const float* /*x*/,
                  const Q8ActivationBlock* xq, float* out) {
    const io::Q4_1Block* w[R];
    float32x4_t acc[R];
    float min_terms[R];  // sum_b m_w * x.sum
    for (int r = 0; r < R; ++r) {
      w[r] = block_row<io::Q4_1Block>(row, row_bytes, r);
      acc[r] = vdupq_n_f32(0.0f);
      min_terms[r] = 0.0f;
    }
    for (int64_t b = 0; b < cols / kQuantBlock; ++b) {
      const int8x16_t x0 = vld1q_s8(xq[b].qs);
      const int8x16_t x1 = vld1q_s8(xq[b].qs + 16);
      for (int r = 0; r < R; ++r) {
        const io::Q4_1Block& wb = w[r][b];
        prefetch_next_group(&wb, R * row_bytes);
        int8x16_t low, high;
        unpack_nibbles(wb.qs, &low, &high);
        const int32x4_t lanes = block_dot(low, high, x0, x1);
        acc[r] = vfmaq_n_f32(acc[r], vcvtq_f32_s32(lanes), f16_scalar(wb.d) * xq[b].d);
        min_terms[r] += f16_scalar(wb.m) * xq[b].sum;
      }
    }
    for (int r = 0; r < R; ++r) out[r] = vaddvq_f32(acc[r]) + min_terms[r];
  }
};

using Drivers = RowDrivers<F32Dot, F16Dot, Q8_0Dot, Q4_0Dot, Q4_1Dot>;
constexpr RuntimeKernels kKernels = {"neon", quantize_activations, Drivers::matvec,
                                     Drivers::matmul};

}  // namespace

const RuntimeKernels& table() {
  return kKernels;
}

}  // namespace kernels_neon
}  // namespace edgedistill::runtime
