// The runtime kernels for aarch64 NEON, base ARMv8-A only (no dot-product extension, so they run
// on a Cortex-A53 or A72 board as well as on newer cores).
//
// Quantized blocks: a block is two 16-byte vectors. vmull_s8 / vmlal_s8 form int16 sums of two
// byte products (at most 2 * 128 * 127 = 32512, so no overflow), vpaddlq / vpadalq_s16 widen them
// into four int32 lanes, and one FMA adds the lanes, as floats, times d_w * d_x. Q4/Q5 codes are
// unpacked to int8 first; the K-quants (Q4_K, Q5_K, Q6_K) go a super-block at a time, each
// activation block's lanes multiplied by its sub-block's integer scale.
#include <arm_neon.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

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

// Q5_0 / Q5_1 fifth bits as 16 where set: bit j of qh for element j (low: elements 0..15 from qh
// bytes 0 and 1, high: 16..31 from bytes 2 and 3).
void unpack_fifth_bits(const uint8_t* qh, uint8x16_t* low, uint8x16_t* high) {
  static const uint8_t kBits[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
  const uint8x16_t bit = vld1q_u8(kBits);
  const uint8x16_t sixteen = vdupq_n_u8(16);
  *low = vandq_u8(vtstq_u8(vcombine_u8(vdup_n_u8(qh[0]), vdup_n_u8(qh[1])), bit), sixteen);
  *high = vandq_u8(vtstq_u8(vcombine_u8(vdup_n_u8(qh[2]), vdup_n_u8(qh[3])), bit), sixteen);
}

// Q4_0 (kOffset 8: (q - 8) x), Q4_1 (+ m_w * x.sum), Q5_0 (kOffset 16) and Q5_1: codes as int8
// (at most 31 - 0, so q - kOffset and q both fit), then block_dot.
template <class Block, int kOffset>
struct CodeBlockDot {
  static constexpr bool kMinimum = kOffset == 0;
  static constexpr bool kFifthBit =
      std::is_same_v<Block, io::Q5_0Block> || std::is_same_v<Block, io::Q5_1Block>;

  template <int R>
  static void dot(const uint8_t* row, int64_t row_bytes, int64_t cols, const float* /*x*/,
                  const Q8ActivationBlock* xq, float* out) {
    const int8x16_t offset = vdupq_n_s8(kOffset);
    const Block* w[R];
    float32x4_t acc[R];
    float min_terms[R];  // sum_b m_w * x.sum
    for (int r = 0; r < R; ++r) {
      w[r] = block_row<Block>(row, row_bytes, r);
      acc[r] = vdupq_n_f32(0.0f);
      min_terms[r] = 0.0f;
    }
    for (int64_t b = 0; b < cols / kQuantBlock; ++b) {
      const int8x16_t x0 = vld1q_s8(xq[b].qs);
      const int8x16_t x1 = vld1q_s8(xq[b].qs + 16);
      for (int r = 0; r < R; ++r) {
        const Block& wb = w[r][b];
        prefetch_next_group(&wb, R * row_bytes);
        int8x16_t low, high;
        unpack_nibbles(wb.qs, &low, &high);
        if constexpr (kFifthBit) {
          uint8x16_t fifth_low, fifth_high;
          unpack_fifth_bits(wb.qh, &fifth_low, &fifth_high);
          low = vorrq_s8(low, vreinterpretq_s8_u8(fifth_low));
          high = vorrq_s8(high, vreinterpretq_s8_u8(fifth_high));
        }
        if constexpr (kOffset != 0) {
          low = vsubq_s8(low, offset);
          high = vsubq_s8(high, offset);
        }
        const int32x4_t lanes = block_dot(low, high, x0, x1);
        acc[r] = vfmaq_n_f32(acc[r], vcvtq_f32_s32(lanes), f16_scalar(wb.d) * xq[b].d);
        if constexpr (kMinimum) min_terms[r] += f16_scalar(wb.m) * xq[b].sum;
      }
    }
    for (int r = 0; r < R; ++r) out[r] = vaddvq_f32(acc[r]) + min_terms[r];
  }
};

using Q4_0Dot = CodeBlockDot<io::Q4_0Block, 8>;
using Q4_1Dot = CodeBlockDot<io::Q4_1Block, 0>;
using Q5_0Dot = CodeBlockDot<io::Q5_0Block, 16>;
using Q5_1Dot = CodeBlockDot<io::Q5_1Block, 0>;

// ---- K-quants, one super-block (eight activation blocks) per step ----
//
// Each (row, activation block) has one integer dot product, as for Q4_0; the sub-block's small
// integer scale multiplies its int32 lanes (exact: |lane| <= 8 * 32 * 127 * 128 < 2^24), the lanes
// become floats times d_x and are summed over the super-block, and the sum is multiplied once by
// the super-block's f16 scale. Q4_K/Q5_K's minimums add dmin * sum_j m_j x_j.sum per
// super-block.

template <class Block>
struct KAffineDot {
  static constexpr bool kFifthBit = std::is_same_v<Block, io::Q5KBlock>;

  template <int R>
  static void dot(const uint8_t* row, int64_t row_bytes, int64_t cols, const float* /*x*/,
                  const Q8ActivationBlock* xq, float* out) {
    const uint8x16_t nibble = vdupq_n_u8(0x0F);
    const uint8x16_t sixteen = vdupq_n_u8(16);
    const Block* w[R];
    float32x4_t acc[R];
    float min_terms[R];  // dmin * sum_j m_j x_j.sum
    for (int r = 0; r < R; ++r) {
      w[r] = block_row<Block>(row, row_bytes, r);
      acc[r] = vdupq_n_f32(0.0f);
      min_terms[r] = 0.0f;
    }
    for (int64_t s = 0; s < cols / io::kSuperBlock; ++s) {
      const Q8ActivationBlock* xs = xq + s * kBlocksPerSuperBlock;
      uint8_t scales[R][8], mins[R][8];
      float32x4_t sums[R];  // sum_j d_x,j * sc_j * lanes_j
      for (int r = 0; r < R; ++r) {
        prefetch_block(&w[r][s], sizeof(Block), R * row_bytes);
        uint64_t scale_codes, min_codes;
        unpack_k_scales_mins(w[r][s].scales, &scale_codes, &min_codes);
        std::memcpy(scales[r], &scale_codes, 8);
        std::memcpy(mins[r], &min_codes, 8);
        sums[r] = vdupq_n_f32(0.0f);
      }
      // Chunk c: 32 bytes whose low nibbles are sub-block 2c and high nibbles sub-block 2c + 1.
      for (int c = 0; c < kBlocksPerSuperBlock / 2; ++c) {
        const Q8ActivationBlock& xa = xs[2 * c];
        const Q8ActivationBlock& xb = xs[2 * c + 1];
        const int8x16_t xa0 = vld1q_s8(xa.qs), xa1 = vld1q_s8(xa.qs + 16);
        const int8x16_t xb0 = vld1q_s8(xb.qs), xb1 = vld1q_s8(xb.qs + 16);
        for (int r = 0; r < R; ++r) {
          const uint8_t* qs = w[r][s].qs + 32 * c;
          const uint8x16_t packed0 = vld1q_u8(qs), packed1 = vld1q_u8(qs + 16);
          uint8x16_t low0 = vandq_u8(packed0, nibble), low1 = vandq_u8(packed1, nibble);
          uint8x16_t high0 = vshrq_n_u8(packed0, 4), high1 = vshrq_n_u8(packed1, 4);
          if constexpr (kFifthBit) {
            // Bit 2c of qh[l] tops sub-block 2c's element l, bit 2c + 1 sub-block 2c + 1's.
            const uint8x16_t qh0 = vld1q_u8(w[r][s].qh), qh1 = vld1q_u8(w[r][s].qh + 16);
            const uint8x16_t bit_low = vdupq_n_u8(static_cast<uint8_t>(1 << (2 * c)));
            const uint8x16_t bit_high = vdupq_n_u8(static_cast<uint8_t>(2 << (2 * c)));
            low0 = vorrq_u8(low0, vandq_u8(vtstq_u8(qh0, bit_low), sixteen));
            low1 = vorrq_u8(low1, vandq_u8(vtstq_u8(qh1, bit_low), sixteen));
            high0 = vorrq_u8(high0, vandq_u8(vtstq_u8(qh0, bit_high), sixteen));
            high1 = vorrq_u8(high1, vandq_u8(vtstq_u8(qh1, bit_high), sixteen));
          }
          const int32x4_t lanes_a =
              block_dot(vreinterpretq_s8_u8(low0), vreinterpretq_s8_u8(low1), xa0, xa1);
          const int32x4_t lanes_b =
              block_dot(vreinterpretq_s8_u8(high0), vreinterpretq_s8_u8(high1), xb0, xb1);
          sums[r] =
              vfmaq_n_f32(sums[r], vcvtq_f32_s32(vmulq_n_s32(lanes_a, scales[r][2 * c])), xa.d);
          sums[r] =
              vfmaq_n_f32(sums[r], vcvtq_f32_s32(vmulq_n_s32(lanes_b, scales[r][2 * c + 1])), xb.d);
        }
      }
      for (int r = 0; r < R; ++r) {
        acc[r] = vfmaq_n_f32(acc[r], sums[r], f16_scalar(w[r][s].d));
        float min_sum = 0.0f;
        for (int j = 0; j < kBlocksPerSuperBlock; ++j) {
          min_sum += static_cast<float>(mins[r][j]) * xs[j].sum;
        }
        min_terms[r] += f16_scalar(w[r][s].dmin) * min_sum;
      }
    }
    for (int r = 0; r < R; ++r) out[r] = vaddvq_f32(acc[r]) - min_terms[r];
  }
};

struct Q6KDot {
  template <int R>
  static void dot(const uint8_t* row, int64_t row_bytes, int64_t cols, const float* /*x*/,
                  const Q8ActivationBlock* xq, float* out) {
    const uint8x16_t low4 = vdupq_n_u8(0x0F);
    const uint8x16_t high2 = vdupq_n_u8(0x30);
    const int8x16_t offset = vdupq_n_s8(32);
    const io::Q6KBlock* w[R];
    float32x4_t acc[R];
    for (int r = 0; r < R; ++r) {
      w[r] = block_row<io::Q6KBlock>(row, row_bytes, r);
      acc[r] = vdupq_n_f32(0.0f);
    }
    for (int64_t s = 0; s < cols / io::kSuperBlock; ++s) {
      const Q8ActivationBlock* xs = xq + s * kBlocksPerSuperBlock;
      float32x4_t sums[R];  // sum_b d_x,b * (scaled lanes of block b)
      for (int r = 0; r < R; ++r) {
        prefetch_block(&w[r][s], sizeof(io::Q6KBlock), R * row_bytes);
        sums[r] = vdupq_n_f32(0.0f);
      }
      // Block b = 4h + k: low 4 bits from nibble k / 2 of ql[64h + 32 (k % 2) + l], high 2 bits
      // from bit pair k of qh[32h + l], shifted to bits 4 and 5 (a negative count shifts right).
      for (int b = 0; b < kBlocksPerSuperBlock; ++b) {
        const int h = b / 4, k = b % 4;
        const int8x16_t x0 = vld1q_s8(xs[b].qs), x1 = vld1q_s8(xs[b].qs + 16);
        const int8x16_t high_shift = vdupq_n_s8(static_cast<int8_t>(4 - 2 * k));
        for (int r = 0; r < R; ++r) {
          const io::Q6KBlock& wb = w[r][s];
          const uint8_t* ql = wb.ql + 64 * h + 32 * (k % 2);
          const uint8_t* qh = wb.qh + 32 * h;
          int8x16_t q[2];
          for (int half = 0; half < 2; ++half) {
            const uint8x16_t low_bits = vld1q_u8(ql + 16 * half);
            const uint8x16_t low = k < 2 ? vandq_u8(low_bits, low4) : vshrq_n_u8(low_bits, 4);
            const uint8x16_t high = vandq_u8(vshlq_u8(vld1q_u8(qh + 16 * half), high_shift), high2);
            q[half] = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(low, high)), offset);
          }
          // Elements 0..15 (scale 2b) and 16..31 (scale 2b + 1) kept apart.
          const int16x8_t p0 = vmlal_s8(vmull_s8(vget_low_s8(q[0]), vget_low_s8(x0)),
                                        vget_high_s8(q[0]), vget_high_s8(x0));
          const int16x8_t p1 = vmlal_s8(vmull_s8(vget_low_s8(q[1]), vget_low_s8(x1)),
                                        vget_high_s8(q[1]), vget_high_s8(x1));
          const int32x4_t lanes = vmlaq_n_s32(vmulq_n_s32(vpaddlq_s16(p0), wb.scales[2 * b]),
                                              vpaddlq_s16(p1), wb.scales[2 * b + 1]);
          sums[r] = vfmaq_n_f32(sums[r], vcvtq_f32_s32(lanes), xs[b].d);
        }
      }
      for (int r = 0; r < R; ++r) acc[r] = vfmaq_n_f32(acc[r], sums[r], f16_scalar(w[r][s].d));
    }
    for (int r = 0; r < R; ++r) out[r] = vaddvq_f32(acc[r]);
  }
};

using Drivers = RowDrivers<F32Dot, F16Dot, Q8_0Dot, Q4_0Dot, Q4_1Dot, Q5_0Dot, Q5_1Dot,
                           KAffineDot<io::Q4KBlock>, KAffineDot<io::Q5KBlock>, Q6KDot>;
constexpr RuntimeKernels kKernels = {"neon", quantize_activations, Drivers::matvec,
                                     Drivers::matmul};

}  // namespace

const RuntimeKernels& table() {
  return kKernels;
}

}  // namespace kernels_neon
}  // namespace edgedistill::runtime
