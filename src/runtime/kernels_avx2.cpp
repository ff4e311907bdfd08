// The runtime kernels built for AVX2 + FMA + F16C (this file's flags; see CMakeLists.txt).
//
// Quantized blocks: one 32-element block is one 256-bit vector. The integer dot product of a
// block uses maddubs (unsigned x signed bytes -> pairs of int16) and madd (int16 pairs -> int32),
// then one FMA adds the block's eight int32 lanes, as floats, times d_w * d_x. Four rows share
// each load of an activation block and everything derived from it.
#include <immintrin.h>

#include <cstdint>

#include "io/gguf_types.h"
#include "runtime/kernels.h"
#include "runtime/kernels_builds.h"

namespace edgedistill::runtime {
namespace kernels_avx2 {
namespace {

#include "runtime/kernels_rows.inc"

using io::kQuantBlock;

float horizontal_sum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

int32_t horizontal_sum(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm_cvtsi128_si32(s);
}

float horizontal_max(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

// Lanes [0, count) all ones, the rest zero (count >= 8: all), for masked loads of a row's tail.
__m256i first_lanes(int64_t count) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(count)),
                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// The scalar build's formula, vectorised: d = max|x| / 127, q = x * (1 / d) rounded half to even
// (the MXCSR default), so the two builds agree bit for bit.
void quantize_activations(const float* x, int64_t n, Q8ActivationBlock* out) {
  const __m256 sign_bit = _mm256_set1_ps(-0.0f);
  // packs leaves each 128-bit lane's dwords in the order (q0, q1, q2, q3) x (low, high half).
  const __m256i unshuffle = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  for (int64_t b = 0; b < n / kQuantBlock; ++b) {
    const float* xb = x + b * kQuantBlock;
    const __m256 v0 = _mm256_loadu_ps(xb);
    const __m256 v1 = _mm256_loadu_ps(xb + 8);
    const __m256 v2 = _mm256_loadu_ps(xb + 16);
    const __m256 v3 = _mm256_loadu_ps(xb + 24);
    const __m256 abs_max = _mm256_max_ps(
        _mm256_max_ps(_mm256_andnot_ps(sign_bit, v0), _mm256_andnot_ps(sign_bit, v1)),
        _mm256_max_ps(_mm256_andnot_ps(sign_bit, v2), _mm256_andnot_ps(sign_bit, v3)));
    const float d = horizontal_max(abs_max) / 127.0f;
    const __m256 inverse = _mm256_set1_ps(d != 0.0f ? 1.0f / d : 0.0f);
    const __m256i q0 = _mm256_cvtps_epi32(_mm256_mul_ps(v0, inverse));
    const __m256i q1 = _mm256_cvtps_epi32(_mm256_mul_ps(v1, inverse));
    const __m256i q2 = _mm256_cvtps_epi32(_mm256_mul_ps(v2, inverse));
    const __m256i q3 = _mm256_cvtps_epi32(_mm256_mul_ps(v3, inverse));
    const int32_t sum =
        horizontal_sum(_mm256_add_epi32(_mm256_add_epi32(q0, q1), _mm256_add_epi32(q2, q3)));
    const __m256i bytes =
        _mm256_packs_epi16(_mm256_packs_epi32(q0, q1), _mm256_packs_epi32(q2, q3));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out[b].qs),
                        _mm256_permutevar8x32_epi32(bytes, unshuffle));
    out[b].d = d;
    out[b].sum = d * static_cast<float>(sum);
  }
}

struct F32Dot {
  template <int R>
  static void dot(const uint8_t* row, int64_t row_bytes, int64_t cols, const float* x,
                  const Q8ActivationBlock* /*xq*/, float* out) {
    const float* w[R];
    __m256 acc0[R], acc1[R];  // two per row: FMA latency needs 8 independent chains
    for (int r = 0; r < R; ++r) {
      w[r] = reinterpret_cast<const float*>(row + r * row_bytes);
      acc0[r] = _mm256_setzero_ps();
      acc1[r] = _mm256_setzero_ps();
    }
    int64_t j = 0;
    for (; j + 16 <= cols; j += 16) {
      const __m256 x0 = _mm256_loadu_ps(x + j);
      const __m256 x1 = _mm256_loadu_ps(x + j + 8);
      for (int r = 0; r < R; ++r) {
        acc0[r] = _mm256_fmadd_ps(_mm256_loadu_ps(w[r] + j), x0, acc0[r]);
        acc1[r] = _mm256_fmadd_ps(_mm256_loadu_ps(w[r] + j + 8), x1, acc1[r]);
      }
    }
    for (; j < cols; j += 8) {
      const __m256i mask = first_lanes(cols - j);
      const __m256 x0 = _mm256_maskload_ps(x + j, mask);
      for (int r = 0; r < R; ++r) {
        acc0[r] = _mm256_fmadd_ps(_mm256_maskload_ps(w[r] + j, mask), x0, acc0[r]);
      }
    }
    for (int r = 0; r < R; ++r) out[r] = horizontal_sum(_mm256_add_ps(acc0[r], acc1[r]));
  }
};

struct F16Dot {
  template <int R>
  static void dot(const uint8_t* row, int64_t row_bytes, int64_t cols, const float* x,
                  const Q8ActivationBlock* /*xq*/, float* out) {
    const uint16_t* w[R];
    __m256 acc0[R], acc1[R];
    for (int r = 0; r < R; ++r) {
      w[r] = reinterpret_cast<const uint16_t*>(row + r * row_bytes);
      acc0[r] = _mm256_setzero_ps();
      acc1[r] = _mm256_setzero_ps();
    }
    auto load_f16 = [](const uint16_t* p) {
      return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    };
    int64_t j = 0;
    for (; j + 16 <= cols; j += 16) {
      const __m256 x0 = _mm256_loadu_ps(x + j);
      const __m256 x1 = _mm256_loadu_ps(x + j + 8);
      for (int r = 0; r < R; ++r) {
        acc0[r] = _mm256_fmadd_ps(load_f16(w[r] + j), x0, acc0[r]);
        acc1[r] = _mm256_fmadd_ps(load_f16(w[r] + j + 8), x1, acc1[r]);
      }
    }
    for (; j < cols; j += 8) {
      // The tail through a zero-padded copy: no 16-bit masked load in AVX2.
      const int64_t count = cols - j < 8 ? cols - j : 8;
      const __m256 x0 = _mm256_maskload_ps(x + j, first_lanes(count));
      for (int r = 0; r < R; ++r) {
        alignas(16) uint16_t tail[8] = {};
        for (int64_t k = 0; k < count; ++k) tail[k] = w[r][j + k];
        acc0[r] = _mm256_fmadd_ps(load_f16(tail), x0, acc0[r]);
      }
    }
    for (int r = 0; r < R; ++r) out[r] = horizontal_sum(_mm256_add_ps(acc0[r], acc1[r]));
  }
};

// The 32 nibbles of a Q4 block as bytes 0..15 in block order: low nibbles are elements 0..15,
// high nibbles 16..31.
__m256i unpack_nibbles(const uint8_t* qs) {
  const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m256i both =
      _mm256_inserti128_si256(_mm256_castsi128_si256(packed), _mm_srli_epi16(packed, 4), 1);
  return _mm256_and_si256(both, _mm256_set1_epi8(0x0F));
}

// int32 lanes summing to the block's integer dot product, then acc += lanes * scale.
__m256 add_scaled(__m256 acc, __m256i lanes, float scale) {
  return _mm256_fmadd_ps(_mm256_cvtepi32_ps(lanes), _mm256_set1_ps(scale), acc);
}

template <class Block>
const Block* block_row(const uint8_t* row, int64_t row_bytes, int r) {
  return reinterpret_cast<const Block*>(row + r * row_bytes);
}

struct Q8_0Dot {
  template <int R>
  static void dot(const uint8_t* row, int64_t row_bytes, int64_t cols, const float* /*x*/,
                  const Q8ActivationBlock* xq, float* out) {
    const __m256i ones = _mm256_set1_epi16(1);
    const io::Q8_0Block* w[R];
    __m256 acc[R];
    for (int r = 0; r < R; ++r) {
      w[r] = block_row<io::Q8_0Block>(row, row_bytes, r);
      acc[r] = _mm256_setzero_ps();
    }
    for (int64_t b = 0; b < cols / kQuantBlock; ++b) {
      const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq[b].qs));
      for (int r = 0; r < R; ++r) {
        const io::Q8_0Block& wb = w[r][b];
        const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wb.qs));
        // |w| as unsigned times x with w's sign: exact for every int8 w, -128 included.
        const __m256i pairs = _mm256_maddubs_epi16(_mm256_abs_epi8(wv), _mm256_sign_epi8(xv, wv));
        acc[r] = add_scaled(acc[r], _mm256_madd_epi16(pairs, ones), _cvtsh_ss(wb.d) * xq[b].d);
      }
    }
    for (int r = 0; r < R; ++r) out[r] = horizontal_sum(acc[r]);
  }
};

struct Q4_0Dot {
  template <int R>
  static void dot(const uint8_t* row, int64_t row_bytes, int64_t cols, const float* /*x*/,
                  const Q8ActivationBlock* xq, float* out) {
    const __m256i ones = _mm256_set1_epi16(1);
    const __m256i eight = _mm256_set1_epi8(8);
    const io::Q4_0Block* w[R];
    __m256 acc[R];
    for (int r = 0; r < R; ++r) {
      w[r] = block_row<io::Q4_0Block>(row, row_bytes, r);
      acc[r] = _mm256_setzero_ps();
    }
    for (int64_t b = 0; b < cols / kQuantBlock; ++b) {
      const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq[b].qs));
      // sum (q - 8) x = sum q x - 8 sum x: the second term, per int16 pair, is shared by the rows.
      const __m256i offset = _mm256_maddubs_epi16(eight, xv);
      for (int r = 0; r < R; ++r) {
        const io::Q4_0Block& wb = w[r][b];
        // q x pairs are within +-3810 and 8 x pairs within +-2032: the difference fits int16.
        const __m256i pairs =
            _mm256_sub_epi16(_mm256_maddubs_epi16(unpack_nibbles(wb.qs), xv), offset);
        acc[r] = add_scaled(acc[r], _mm256_madd_epi16(pairs, ones), _cvtsh_ss(wb.d) * xq[b].d);
      }
    }
    for (int r = 0; r < R; ++r) out[r] = horizontal_sum(acc[r]);
  }
};

struct Q4_1Dot {
  template <int R>
  static void dot(const uint8_t* row, int64_t row_bytes, int64_t cols, const float* /*x*/,
                  const Q8ActivationBlock* xq, float* out) {
    const __m256i ones = _mm256_set1_epi16(1);
    const io::Q4_1Block* w[R];
    __m256 acc[R];
    float min_terms[R];  // sum_b m_w * x.sum
    for (int r = 0; r < R; ++r) {
      w[r] = block_row<io::Q4_1Block>(row, row_bytes, r);
      acc[r] = _mm256_setzero_ps();
      min_terms[r] = 0.0f;
    }
    for (int64_t b = 0; b < cols / kQuantBlock; ++b) {
      const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq[b].qs));
      for (int r = 0; r < R; ++r) {
        const io::Q4_1Block& wb = w[r][b];
        const __m256i pairs = _mm256_maddubs_epi16(unpack_nibbles(wb.qs), xv);
        acc[r] = add_scaled(acc[r], _mm256_madd_epi16(pairs, ones), _cvtsh_ss(wb.d) * xq[b].d);
        min_terms[r] += _cvtsh_ss(wb.m) * xq[b].sum;
      }
    }
    for (int r = 0; r < R; ++r) out[r] = horizontal_sum(acc[r]) + min_terms[r];
  }
};

using Drivers = RowDrivers<F32Dot, F16Dot, Q8_0Dot, Q4_0Dot, Q4_1Dot>;
constexpr RuntimeKernels kKernels = {"avx2", quantize_activations, Drivers::matvec,
                                     Drivers::matmul};

}  // namespace

const RuntimeKernels& table() {
  return kKernels;
}

}  // namespace kernels_avx2
}  // namespace edgedistill::runtime
