// The runtime kernels built for AVX-512 F/BW/VL + FMA + F16C (this file's flags; see
// CMakeLists.txt). kernels_avx512vnni.cpp compiles this same source a second time with
// EDGEDISTILL_KERNELS_AVX512_VNNI defined and -mavx512vnni, for the CPUs that have VNNI; the two
// differ only in how a block's integer dot product is formed.
//
// Quantized blocks go two at a time: one 512-bit vector holds the 32 activation bytes of blocks b
// and b + 1, and each 256-bit half of the int32 result belongs to one block, so the scale vector
// is [s_b x 8 | s_b+1 x 8]. An odd last block is paired with all-zero activations.
// - without VNNI: maddubs (unsigned x signed bytes -> int16 pairs) and madd (-> int32);
// - with VNNI: vpdpbusd (unsigned x signed bytes, four at a time, added to int32), which needs an
//   unsigned operand: Q4 nibbles are unsigned already; Q8_0 weights are offset by 128.

// GCC 12's AVX-512 headers initialise the "undefined" pass-through vector of many intrinsics from
// itself, and at -O3 -Wall every inlined use then warns (GCC bug 105593, fixed in GCC 13).
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ == 12
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <cstdint>
#include <vector>

#include "io/gguf_quants.h"
#include "io/gguf_types.h"
#include "runtime/kernels.h"
#include "runtime/kernels_builds.h"

#if defined(EDGEDISTILL_KERNELS_AVX512_VNNI)
#define EDGEDISTILL_AVX512_BUILD kernels_avx512vnni
#define EDGEDISTILL_AVX512_NAME "avx512vnni"
#else
#define EDGEDISTILL_AVX512_BUILD kernels_avx512
#define EDGEDISTILL_AVX512_NAME "avx512"
#endif

namespace edgedistill::runtime {
namespace EDGEDISTILL_AVX512_BUILD {
namespace {

#include "runtime/kernels_rows.inc"

using io::kQuantBlock;

// Lanes [0, count) set, count in 1..16.
__mmask16 first_lanes(int64_t count) {
  return count >= 16 ? __mmask16{0xFFFF} : static_cast<__mmask16>((1u << count) - 1);
}

// The scalar build's formula, vectorised: d = max|x| / 127, q = x * (1 / d) rounded half to even
// (the MXCSR default), so the two builds agree bit for bit.
void quantize_activations(const float* x, int64_t n, Q8ActivationBlock* out) {
  for (int64_t b = 0; b < n / kQuantBlock; ++b) {
    const float* xb = x + b * kQuantBlock;
    const __m512 v0 = _mm512_loadu_ps(xb);
    const __m512 v1 = _mm512_loadu_ps(xb + 16);
    const float d =
        _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1))) / 127.0f;
    const __m512 inverse = _mm512_set1_ps(d != 0.0f ? 1.0f / d : 0.0f);
    const __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, inverse));
    const __m512i q1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, inverse));
    const int32_t sum = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out[b].qs), _mm512_cvtsepi32_epi8(q0));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out[b].qs + 16), _mm512_cvtsepi32_epi8(q1));
    out[b].d = d;
    out[b].sum = d * static_cast<float>(sum);
  }
}

struct F32Dot {
  template <int R>
  static void dot(const uint8_t* row, int64_t row_bytes, int64_t cols, const float* x,
                  const Q8ActivationBlock* /*xq*/, float* out) {
    const float* w[R];
    __m512 acc0[R], acc1[R];  // two per row: FMA latency needs 8 independent chains
    for (int r = 0; r < R; ++r) {
      w[r] = reinterpret_cast<const float*>(row + r * row_bytes);
      acc0[r] = _mm512_setzero_ps();
      acc1[r] = _mm512_setzero_ps();
    }
    int64_t j = 0;
    for (; j + 32 <= cols; j += 32) {
      const __m512 x0 = _mm512_loadu_ps(x + j);
      const __m512 x1 = _mm512_loadu_ps(x + j + 16);
      for (int r = 0; r < R; ++r) {
        prefetch_next_group(w[r] + j, R * row_bytes);
        acc0[r] = _mm512_fmadd_ps(_mm512_loadu_ps(w[r] + j), x0, acc0[r]);
        acc1[r] = _mm512_fmadd_ps(_mm512_loadu_ps(w[r] + j + 16), x1, acc1[r]);
      }
    }
    for (; j < cols; j += 16) {
      const __mmask16 mask = first_lanes(cols - j);
      const __m512 x0 = _mm512_maskz_loadu_ps(mask, x + j);
      for (int r = 0; r < R; ++r) {
        acc0[r] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mask, w[r] + j), x0, acc0[r]);
      }
    }
    for (int r = 0; r < R; ++r) out[r] = _mm512_reduce_add_ps(_mm512_add_ps(acc0[r], acc1[r]));
  }
};

struct F16Dot {
  template <int R>
  static void dot(const uint8_t* row, int64_t row_bytes, int64_t cols, const float* x,
                  const Q8ActivationBlock* /*xq*/, float* out) {
    const uint16_t* w[R];
    __m512 acc0[R], acc1[R];
    for (int r = 0; r < R; ++r) {
      w[r] = reinterpret_cast<const uint16_t*>(row + r * row_bytes);
      acc0[r] = _mm512_setzero_ps();
      acc1[r] = _mm512_setzero_ps();
    }
    auto load_f16 = [](const uint16_t* p) {
      return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    };
    int64_t j = 0;
    for (; j + 32 <= cols; j += 32) {
      const __m512 x0 = _mm512_loadu_ps(x + j);
      const __m512 x1 = _mm512_loadu_ps(x + j + 16);
      for (int r = 0; r < R; ++r) {
        prefetch_next_group(w[r] + j, R * row_bytes);
        acc0[r] = _mm512_fmadd_ps(load_f16(w[r] + j), x0, acc0[r]);
        acc1[r] = _mm512_fmadd_ps(load_f16(w[r] + j + 16), x1, acc1[r]);
      }
    }
    for (; j < cols; j += 16) {
      const __mmask16 mask = first_lanes(cols - j);
      const __m512 x0 = _mm512_maskz_loadu_ps(mask, x + j);
      for (int r = 0; r < R; ++r) {
        const __m256i half = _mm256_maskz_loadu_epi16(mask, w[r] + j);
        acc0[r] = _mm512_fmadd_ps(_mm512_cvtph_ps(half), x0, acc0[r]);
      }
    }
    for (int r = 0; r < R; ++r) out[r] = _mm512_reduce_add_ps(_mm512_add_ps(acc0[r], acc1[r]));
  }
};

// ---- quantized weights, two blocks per step ----

// Activations of blocks b and b + 1, shared by every row of a step.
struct ActivationPair {
  __m512i qs;      // [x_b.qs | x_b+1.qs]
  __m512i offset;  // the weight type's correction term (see each type)
};

// Paired with an odd last block: contributes exact zeros.
constexpr Q8ActivationBlock kZeroActivations{};

__m512i load_pair(const int8_t* a, const int8_t* b) {
  return _mm512_inserti64x4(
      _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a))),
      _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b)), 1);
}

// The f16 values at `field` of blocks b0 and b1 of R rows (R <= 4) as floats: lane r holds row
// r's value for b0, lane 4 + r for b1. One conversion serves every row of the step.
template <class Block, int R>
__m256 row_halves(const Block* const* w, int64_t b0, int64_t b1, uint16_t Block::*field) {
  uint64_t first = 0, second = 0;
  for (int r = 0; r < R; ++r) {
    first |= uint64_t{w[r][b0].*field} << (16 * r);
    second |= uint64_t{w[r][b1].*field} << (16 * r);
  }
  return _mm256_cvtph_ps(
      _mm_set_epi64x(static_cast<long long>(second), static_cast<long long>(first)));
}

// Row r's scales from row_halves-shaped `scales`: [lane r x 8 | lane 4 + r x 8].
template <int r>
__m512 row_scale(__m256 scales) {
  const __m512i spread = _mm512_setr_epi32(r, r, r, r, r, r, r, r, r + 4, r + 4, r + 4, r + 4,
                                           r + 4, r + 4, r + 4, r + 4);
  return _mm512_permutexvar_ps(spread, _mm512_castps256_ps512(scales));
}

// The nibbles of two Q4 blocks as bytes in block order: [b low | b high | b+1 low | b+1 high]
// (low nibbles are elements 0..15, high ones 16..31), matching ActivationPair::qs.
__m512i unpack_nibble_pair(const uint8_t* qa, const uint8_t* qb) {
  const __m256i packed = _mm256_inserti128_si256(
      _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qa))),
      _mm_loadu_si128(reinterpret_cast<const __m128i*>(qb)), 1);
  // 128-bit lanes [b, b, b+1, b+1]; the second of each pair shifted down by one nibble.
  const __m512i twice = _mm512_permutexvar_epi64(_mm512_setr_epi64(0, 1, 0, 1, 2, 3, 2, 3),
                                                 _mm512_castsi256_si512(packed));
  const __m512i shifted = _mm512_srlv_epi64(twice, _mm512_setr_epi64(0, 0, 4, 4, 0, 0, 4, 4));
  return _mm512_and_si512(shifted, _mm512_set1_epi8(0x0F));
}

// A function, not a namespace-scope constant: a dynamic initializer would run AVX-512 code at
// program start, on every CPU.
__m512i zero() {
  return _mm512_setzero_si512();
}

struct Q8_0Pair {
  using Block = io::Q8_0Block;
  static constexpr bool kHasMinimum = false;
#if defined(EDGEDISTILL_KERNELS_AVX512_VNNI)
  // (w + 128) is unsigned, so vpdpbusd applies; sum (w + 128) x - 128 sum x = sum w x, and the
  // second term, per int32 lane, is shared by the rows: offset = -128 sum x.
  static __m512i offset(__m512i xqs) {
    return _mm512_sub_epi32(
        zero(), _mm512_dpbusd_epi32(zero(), _mm512_set1_epi8(static_cast<char>(-128)), xqs));
  }
  static __m512i lanes(const Block& a, const Block& b, const ActivationPair& x) {
    const __m512i biased =
        _mm512_xor_si512(load_pair(a.qs, b.qs), _mm512_set1_epi8(static_cast<char>(-128)));
    return _mm512_dpbusd_epi32(x.offset, biased, x.qs);
  }
#else
  static __m512i offset(__m512i /*xqs*/) {
    return zero();
  }
  // |w| as unsigned times x with w's sign: exact for every int8 w, -128 included.
  static __m512i lanes(const Block& a, const Block& b, const ActivationPair& x) {
    const __m512i wv = load_pair(a.qs, b.qs);
    const __m512i x_signed = _mm512_mask_sub_epi8(x.qs, _mm512_movepi8_mask(wv), zero(), x.qs);
    return _mm512_madd_epi16(_mm512_maddubs_epi16(_mm512_abs_epi8(wv), x_signed),
                             _mm512_set1_epi16(1));
  }
#endif
};

struct Q4_0Pair {
  using Block = io::Q4_0Block;
  static constexpr bool kHasMinimum = false;
  // sum (q - 8) x = sum q x - 8 sum x; the second term is shared by the rows.
#if defined(EDGEDISTILL_KERNELS_AVX512_VNNI)
  static __m512i offset(__m512i xqs) {  // -8 sum x per int32 lane
    return _mm512_sub_epi32(zero(), _mm512_dpbusd_epi32(zero(), _mm512_set1_epi8(8), xqs));
  }
  static __m512i lanes(const Block& a, const Block& b, const ActivationPair& x) {
    return _mm512_dpbusd_epi32(x.offset, unpack_nibble_pair(a.qs, b.qs), x.qs);
  }
#else
  static __m512i offset(__m512i xqs) {  // 8 x per int16 pair
    return _mm512_maddubs_epi16(_mm512_set1_epi8(8), xqs);
  }
  // q x pairs are within +-3810 and 8 x pairs within +-2032: the difference fits int16.
  static __m512i lanes(const Block& a, const Block& b, const ActivationPair& x) {
    const __m512i pairs =
        _mm512_sub_epi16(_mm512_maddubs_epi16(unpack_nibble_pair(a.qs, b.qs), x.qs), x.offset);
    return _mm512_madd_epi16(pairs, _mm512_set1_epi16(1));
  }
#endif
};

struct Q4_1Pair {
  using Block = io::Q4_1Block;
  static constexpr bool kHasMinimum = true;  // + m_w * x.sum per block
  static __m512i offset(__m512i /*xqs*/) { return zero(); }
  static __m512i lanes(const Block& a, const Block& b, const ActivationPair& x) {
#if defined(EDGEDISTILL_KERNELS_AVX512_VNNI)
    return _mm512_dpbusd_epi32(zero(), unpack_nibble_pair(a.qs, b.qs), x.qs);
#else
    return _mm512_madd_epi16(_mm512_maddubs_epi16(unpack_nibble_pair(a.qs, b.qs), x.qs),
                             _mm512_set1_epi16(1));
#endif
  }
};

template <class Pair>
struct QuantizedDot {
  template <int R>
  static void dot(const uint8_t* row, int64_t row_bytes, int64_t cols, const float* /*x*/,
                  const Q8ActivationBlock* xq, float* out) {
    static_assert(R == 1 || R == kRowGroup, "row kernels run on single rows or whole groups");
    using Block = typename Pair::Block;
    const Block* w[R];
    __m512 acc[R];
    __m256 min_terms = _mm256_setzero_ps();  // Q4_1: lanes r and 4 + r sum row r's m_w * x.sum
    for (int r = 0; r < R; ++r) {
      w[r] = reinterpret_cast<const Block*>(row + r * row_bytes);
      acc[r] = _mm512_setzero_ps();
    }
    // Blocks b0 and b1 of every row times activations x0, x1.
    auto step = [&](int64_t b0, int64_t b1, const Q8ActivationBlock& x0,
                    const Q8ActivationBlock& x1) {
      ActivationPair x;
      x.qs = load_pair(x0.qs, x1.qs);
      x.offset = Pair::offset(x.qs);
      __m512i lanes[R];
      for (int r = 0; r < R; ++r) {
        prefetch_next_group(&w[r][b0], R * row_bytes);
        lanes[r] = Pair::lanes(w[r][b0], w[r][b1], x);
      }
      // d_w * d_x for both blocks of every row, in the scalar build's order of operations.
      const __m256 dx = _mm256_set_m128(_mm_set1_ps(x1.d), _mm_set1_ps(x0.d));
      const __m256 scales = _mm256_mul_ps(row_halves<Block, R>(w, b0, b1, &Block::d), dx);
      acc[0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(lanes[0]), row_scale<0>(scales), acc[0]);
      if constexpr (R > 1) {
        acc[1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(lanes[1]), row_scale<1>(scales), acc[1]);
        acc[2] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(lanes[2]), row_scale<2>(scales), acc[2]);
        acc[3] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(lanes[3]), row_scale<3>(scales), acc[3]);
      }
      if constexpr (Pair::kHasMinimum) {
        const __m256 sums = _mm256_set_m128(_mm_set1_ps(x1.sum), _mm_set1_ps(x0.sum));
        min_terms = _mm256_fmadd_ps(row_halves<Block, R>(w, b0, b1, &Block::m), sums, min_terms);
      }
    };
    const int64_t blocks = cols / kQuantBlock;
    int64_t b = 0;
    for (; b + 2 <= blocks; b += 2) step(b, b + 1, xq[b], xq[b + 1]);
    // The odd last block meets itself times zero activations (x.d = 0, x.sum = 0): exact zeros.
    if (b < blocks) step(b, b, xq[b], kZeroActivations);
    alignas(32) float mins[8];
    _mm256_store_ps(mins, min_terms);
    for (int r = 0; r < R; ++r) out[r] = _mm512_reduce_add_ps(acc[r]) + (mins[r] + mins[4 + r]);
  }
};

using Drivers = RowDrivers<F32Dot, F16Dot, QuantizedDot<Q8_0Pair>, QuantizedDot<Q4_0Pair>,
                           QuantizedDot<Q4_1Pair>>;
constexpr RuntimeKernels kKernels = {EDGEDISTILL_AVX512_NAME, quantize_activations, Drivers::matvec,
                                     Drivers::matmul};

}  // namespace

const RuntimeKernels& table() {
  return kKernels;
}

}  // namespace EDGEDISTILL_AVX512_BUILD
}  // namespace edgedistill::runtime

#undef EDGEDISTILL_AVX512_BUILD
#undef EDGEDISTILL_AVX512_NAME
