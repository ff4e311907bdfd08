// The reference build of the runtime kernels: plain loops over the block formulas of
// io/gguf_types.h and io/gguf_quants.h. Every vectorised build is tested against this one; only the
// order of float additions differs between them (the per-block integer sums are exact in every
// build).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "core/error.h"
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

// Row r of W times one token's activations.
float dot_row(const WeightMatrix& w, int64_t r, const float* x, const Q8ActivationBlock* xq) {
  const int64_t blocks = w.cols / kQuantBlock;
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
    case io::GgmlType::q5_1:
    case io::GgmlType::q4_k:
    case io::GgmlType::q5_k:
    case io::GgmlType::q6_k: {
      // Decoded by the reference dequantizer, then the f32 dot (the vectorised builds do the same
      // until these types have integer kernels).
      thread_local std::vector<float> decoded;
      decoded.resize(static_cast<size_t>(w.cols));
      const uint64_t row_bytes = io::ggml_row_bytes(w.type, static_cast<uint64_t>(w.cols));
      io::row_dequantizer(w.type)(w.data + static_cast<uint64_t>(r) * row_bytes, w.cols,
                                  decoded.data());
      return dot_f32(decoded.data(), x, w.cols);
    }
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
