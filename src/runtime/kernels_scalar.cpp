// The reference build of the runtime kernels: plain loops over the block formulas of
// io/gguf_types.h, io/gguf_quants.h and io/gguf_kquants.h. Every vectorised build is tested against
// this one; only the order and grouping of float operations differ between them (the per-block
// integer sums are exact in every build).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "core/error.h"
#include "io/gguf_kquants.h"
#include "io/gguf_quants.h"
#include "io/gguf_types.h"
#include "io/half.h"
#include "runtime/kernels.h"
#include "runtime/kernels_builds.h"

namespace edgedistill::runtime {
namespace kernels_scalar {
namespace {

using io::kQuantBlock;

// Element j of a Q4_0 / Q4_1 block: low nibbles hold elements 0..15, high nibbles 16..31.
int nibble(const uint8_t* qs, int j) {
  return j < kQuantBlock / 2 ? qs[j] & 0x0F : qs[j - kQuantBlock / 2] >> 4;
}

void quantize_activations(const float* x, int64_t n, Q8ActivationBlock* out) {
  ED_CHECK(n % kQuantBlock == 0, "activation count ", n, " is not a multiple of ", kQuantBlock);
  for (int64_t b = 0; b < n / kQuantBlock; ++b) {
    const float* xb = x + b * kQuantBlock;
    float amax = 0.0f;
    for (int j = 0; j < kQuantBlock; ++j) amax = std::max(amax, std::fabs(xb[j]));
    const float d = amax / 127.0f;
    // Every build multiplies by the same inverse and rounds half to even, so all agree exactly.
    const float inverse = d != 0.0f ? 1.0f / d : 0.0f;
    int32_t sum = 0;
    for (int j = 0; j < kQuantBlock; ++j) {
      const int q = static_cast<int>(std::nearbyint(xb[j] * inverse));
      out[b].qs[j] = static_cast<int8_t>(q);
      sum += q;
    }
    out[b].d = d;
    out[b].sum = d * static_cast<float>(sum);
  }
}

float dot_f32(const float* w, const float* x, int64_t cols) {
  float sum = 0.0f;
  for (int64_t j = 0; j < cols; ++j) sum += w[j] * x[j];
  return sum;
}

float dot_f16(const uint16_t* w, const float* x, int64_t cols) {
  float sum = 0.0f;
  for (int64_t j = 0; j < cols; ++j) sum += io::f16_to_float(w[j]) * x[j];
  return sum;
}

// Blocks: sum_b isum_b * (d_w * d_x), with isum_b the exact integer dot product of block b.
float dot_q8_0(const io::Q8_0Block* w, const Q8ActivationBlock* x, int64_t blocks) {
  float sum = 0.0f;
  for (int64_t b = 0; b < blocks; ++b) {
    int32_t isum = 0;
    for (int j = 0; j < kQuantBlock; ++j) isum += w[b].qs[j] * x[b].qs[j];
    sum += static_cast<float>(isum) * (io::f16_to_float(w[b].d) * x[b].d);
  }
  return sum;
}

float dot_q4_0(const io::Q4_0Block* w, const Q8ActivationBlock* x, int64_t blocks) {
  float sum = 0.0f;
  for (int64_t b = 0; b < blocks; ++b) {
    int32_t isum = 0;
    for (int j = 0; j < kQuantBlock; ++j) isum += (nibble(w[b].qs, j) - 8) * x[b].qs[j];
    sum += static_cast<float>(isum) * (io::f16_to_float(w[b].d) * x[b].d);
  }
  return sum;
}

// sum_j (q_j d_w + m_w) x_j = d_w d_x sum_j q_j qx_j + m_w * x.sum.
float dot_q4_1(const io::Q4_1Block* w, const Q8ActivationBlock* x, int64_t blocks) {
  float sum = 0.0f;
  for (int64_t b = 0; b < blocks; ++b) {
    int32_t isum = 0;
    for (int j = 0; j < kQuantBlock; ++j) isum += nibble(w[b].qs, j) * x[b].qs[j];
    sum += static_cast<float>(isum) * (io::f16_to_float(w[b].d) * x[b].d) +
           io::f16_to_float(w[b].m) * x[b].sum;
  }
  return sum;
}

// Code j (0..31) of a Q5_0 / Q5_1 block: the nibble as Q4's, bit 4 from bit j of qh.
int five_bit_code(const uint8_t* qs, const uint8_t* qh, int j) {
  const uint32_t high = qh[0] | (qh[1] << 8) | (qh[2] << 16) | (uint32_t{qh[3]} << 24);
  return nibble(qs, j) | static_cast<int>(((high >> j) & 1) << 4);
}

// sum_j (q_j - 16) d_w x_j.
float dot_q5_0(const io::Q5_0Block* w, const Q8ActivationBlock* x, int64_t blocks) {
  float sum = 0.0f;
  for (int64_t b = 0; b < blocks; ++b) {
    int32_t isum = 0;
    for (int j = 0; j < kQuantBlock; ++j) {
      isum += (five_bit_code(w[b].qs, w[b].qh, j) - 16) * x[b].qs[j];
    }
    sum += static_cast<float>(isum) * (io::f16_to_float(w[b].d) * x[b].d);
  }
  return sum;
}

// As Q4_1: d_w d_x sum_j q_j qx_j + m_w * x.sum.
float dot_q5_1(const io::Q5_1Block* w, const Q8ActivationBlock* x, int64_t blocks) {
  float sum = 0.0f;
  for (int64_t b = 0; b < blocks; ++b) {
    int32_t isum = 0;
    for (int j = 0; j < kQuantBlock; ++j) isum += five_bit_code(w[b].qs, w[b].qh, j) * x[b].qs[j];
    sum += static_cast<float>(isum) * (io::f16_to_float(w[b].d) * x[b].d) +
           io::f16_to_float(w[b].m) * x[b].sum;
  }
  return sum;
}

// Q4_K / Q5_K: sub-block j of super-block s covers exactly activation block 8s + j, so its part
// of the dot product is sum_l (d sc_j q_l - dmin m_j) x_l = (d sc_j d_x) sum_l q_l qx_l -
// (dmin m_j) x.sum. Code l of sub-block j is the low (j even) or high (j odd) nibble of byte
// 32 (j / 2) + l, topped for Q5_K by bit j of qh[l] (io/gguf_types.h).
template <class Block>
float dot_k_affine(const Block* w, const Q8ActivationBlock* x, int64_t super_blocks) {
  constexpr bool kFifthBit = std::is_same_v<Block, io::Q5KBlock>;
  constexpr int kSubBlocks = io::kSuperBlock / kQuantBlock;
  float sum = 0.0f;
  for (int64_t s = 0; s < super_blocks; ++s) {
    const Block& wb = w[s];
    const float d = io::f16_to_float(wb.d), dmin = io::f16_to_float(wb.dmin);
    for (int j = 0; j < kSubBlocks; ++j) {
      const Q8ActivationBlock& xb = x[s * kSubBlocks + j];
      int scale, min;
      io::unpack_k_scale_min(wb.scales, j, &scale, &min);
      int32_t isum = 0;
      for (int l = 0; l < kQuantBlock; ++l) {
        int q = (wb.qs[kQuantBlock * (j / 2) + l] >> (4 * (j % 2))) & 0x0F;
        if constexpr (kFifthBit) q |= ((wb.qh[l] >> j) & 1) << 4;
        isum += q * xb.qs[l];
      }
      // d * scale and dmin * min are exact in float (11-bit f16 mantissas times 6-bit integers).
      sum += static_cast<float>(isum) * (d * static_cast<float>(scale) * xb.d) -
             dmin * static_cast<float>(min) * xb.sum;
    }
  }
  return sum;
}

// Q6_K: activation block b of a super-block (b = 4h + k) holds elements 128h + 32k + l, whose
// low 4 bits are nibble k / 2 of ql[64h + 32 (k % 2) + l] and high 2 bits bit pair k of
// qh[32h + l]; its two 16-element halves have scales[2b] and scales[2b + 1]. Per block:
// (d d_x) * (scales[2b] isum_0 + scales[2b + 1] isum_1), the integer combination exact in
// int32 and in float (|.| <= 2 * 128 * 16 * 32 * 127 < 2^24).
float dot_q6_k(const io::Q6KBlock* w, const Q8ActivationBlock* x, int64_t super_blocks) {
  constexpr int kBlocks = io::kSuperBlock / kQuantBlock;
  float sum = 0.0f;
  for (int64_t s = 0; s < super_blocks; ++s) {
    const io::Q6KBlock& wb = w[s];
    const float d = io::f16_to_float(wb.d);
    for (int b = 0; b < kBlocks; ++b) {
      const Q8ActivationBlock& xb = x[s * kBlocks + b];
      const int h = b / 4, k = b % 4;
      const uint8_t* ql = wb.ql + 64 * h + 32 * (k % 2);
      const uint8_t* qh = wb.qh + 32 * h;
      const int low_shift = 4 * (k / 2), high_shift = 2 * k;
      int32_t isum[2];
      for (int half = 0; half < 2; ++half) {
        int32_t partial = 0;
        for (int l = 16 * half; l < 16 * half + 16; ++l) {
          const int q = ((ql[l] >> low_shift) & 0x0F) | (((qh[l] >> high_shift) & 3) << 4);
          partial += (q - 32) * xb.qs[l];
        }
        isum[half] = partial;
      }
      const int32_t scaled = wb.scales[2 * b] * isum[0] + wb.scales[2 * b + 1] * isum[1];
      sum += static_cast<float>(scaled) * (d * xb.d);
    }
  }
  return sum;
}

// Row r of W times one token's activations.
float dot_row(const WeightMatrix& w, int64_t r, const float* x, const Q8ActivationBlock* xq) {
  const int64_t blocks = w.cols / kQuantBlock;
  const int64_t super_blocks = w.cols / io::kSuperBlock;
  switch (w.type) {
    case io::GgmlType::f32:
      return dot_f32(reinterpret_cast<const float*>(w.data) + r * w.cols, x, w.cols);
    case io::GgmlType::f16:
      return dot_f16(reinterpret_cast<const uint16_t*>(w.data) + r * w.cols, x, w.cols);
    case io::GgmlType::q8_0:
      return dot_q8_0(reinterpret_cast<const io::Q8_0Block*>(w.data) + r * blocks, xq, blocks);
    case io::GgmlType::q4_0:
      return dot_q4_0(reinterpret_cast<const io::Q4_0Block*>(w.data) + r * blocks, xq, blocks);
    case io::GgmlType::q4_1:
      return dot_q4_1(reinterpret_cast<const io::Q4_1Block*>(w.data) + r * blocks, xq, blocks);
    case io::GgmlType::q5_0:
      return dot_q5_0(reinterpret_cast<const io::Q5_0Block*>(w.data) + r * blocks, xq, blocks);
    case io::GgmlType::q5_1:
      return dot_q5_1(reinterpret_cast<const io::Q5_1Block*>(w.data) + r * blocks, xq, blocks);
    case io::GgmlType::q4_k:
      return dot_k_affine(reinterpret_cast<const io::Q4KBlock*>(w.data) + r * super_blocks, xq,
                          super_blocks);
    case io::GgmlType::q5_k:
      return dot_k_affine(reinterpret_cast<const io::Q5KBlock*>(w.data) + r * super_blocks, xq,
                          super_blocks);
    case io::GgmlType::q6_k:
      return dot_q6_k(reinterpret_cast<const io::Q6KBlock*>(w.data) + r * super_blocks, xq,
                      super_blocks);
    case io::GgmlType::q8_k:
      break;  // the activations' type, never a weight's
  }
  unsupported_weight_type(w.type);
}

void matvec(const WeightMatrix& w, int64_t row_begin, int64_t row_end, const float* x,
            const Q8ActivationBlock* xq, float* y) {
  for (int64_t r = row_begin; r < row_end; ++r) y[r] = dot_row(w, r, x, xq);
}

void matmul(const WeightMatrix& w, int64_t row_begin, int64_t row_end, const float* x,
            const Q8ActivationBlock* xq, int64_t n_tokens, float* y, int64_t y_stride) {
  const int64_t blocks = w.cols / kQuantBlock;
  for (int64_t t = 0; t < n_tokens; ++t) {
    const float* token_x = x != nullptr ? x + t * w.cols : nullptr;
    const Q8ActivationBlock* token_xq = xq != nullptr ? xq + t * blocks : nullptr;
    for (int64_t r = row_begin; r < row_end; ++r) {
      y[t * y_stride + r] = dot_row(w, r, token_x, token_xq);
    }
  }
}

constexpr RuntimeKernels kKernels = {"scalar", quantize_activations, matvec, matmul};

}  // namespace

const RuntimeKernels& table() {
  return kKernels;
}

}  // namespace kernels_scalar
}  // namespace edgedistill::runtime
