// The runtime kernels built for AVX-512 F/BW/VL + FMA + F16C (this file's flags; see
// CMakeLists.txt). kernels_avx512vnni.cpp compiles this same source a second time with
// EDGEDISTILL_KERNELS_AVX512_VNNI defined and -mavx512vnni, for the CPUs that have VNNI; the two
// differ only in how a block's integer dot product is formed.
//
// Quantized blocks go two at a time: one 512-bit vector holds the 32 activation bytes of blocks b
// and b + 1, and each 256-bit half of the int32 result belongs to one block, so the scale vector
// is [s_b x 8 | s_b+1 x 8]. An odd last block is paired with all-zero activations. The K-quants
// (Q4_K, Q5_K, Q6_K) go a super-block at a time, as four such pairs with per-lane scales.
// - without VNNI: maddubs (unsigned x signed bytes -> int16 pairs) and madd (-> int32);
// - with VNNI: vpdpbusd (unsigned x signed bytes, four at a time, added to int32), which needs an
//   unsigned operand: Q4/Q5/K-quant codes are unsigned already (a code offset such as Q4_0's 8 is
//   subtracted as offset * sum x); Q8_0 weights are offset by 128.

// GCC 12's AVX-512 headers initialise the "undefined" pass-through vector of many intrinsics from
// itself, and at -O3 -Wall every inlined use then warns (GCC bug 105593, fixed in GCC 13).
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ == 12
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

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

// The term, per activation pair and shared by the rows, that turns sum q x into sum (q - k) x:
// with VNNI -k sum x per int32 lane, without k x per int16 pair (k = 0: none).
template <int k>
__m512i offset_term(__m512i xqs) {
  if constexpr (k == 0) {
    return zero();
  } else {
#if defined(EDGEDISTILL_KERNELS_AVX512_VNNI)
    return _mm512_sub_epi32(zero(), _mm512_dpbusd_epi32(zero(), _mm512_set1_epi8(k), xqs));
#else
    return _mm512_maddubs_epi16(_mm512_set1_epi8(k), xqs);
#endif
  }
}

// int32 lane i = sum over elements 4i .. 4i + 3 of (q - k) x, for unsigned codes q (at most 63)
// and `offset` = offset_term<k>(xqs). Without VNNI the int16 pairs q x stay within 2 * 63 * 127 =
// 16002 and k x within 2 * 32 * 127 = 8128: no overflow. Both ways give the same lanes.
template <int k>
__m512i code_lanes(__m512i q, __m512i xqs, __m512i offset) {
#if defined(EDGEDISTILL_KERNELS_AVX512_VNNI)
  return _mm512_dpbusd_epi32(offset, q, xqs);
#else
  __m512i pairs = _mm512_maddubs_epi16(q, xqs);
  if constexpr (k != 0) pairs = _mm512_sub_epi16(pairs, offset);
  return _mm512_madd_epi16(pairs, _mm512_set1_epi16(1));
#endif
}

// The codes of Q4 / Q5 blocks a and b in block order, as unpack_nibble_pair: Q5's fifth bits (bit
// j of qh for element j) are one 64-bit mask for the pair, adding 16 where set.
template <class Block>
__m512i unpack_code_pair(const Block& a, const Block& b) {
  const __m512i nibbles = unpack_nibble_pair(a.qs, b.qs);
  if constexpr (std::is_same_v<Block, io::Q5_0Block> || std::is_same_v<Block, io::Q5_1Block>) {
    uint32_t qh_a, qh_b;
    std::memcpy(&qh_a, a.qh, sizeof qh_a);
    std::memcpy(&qh_b, b.qh, sizeof qh_b);
    const __mmask64 fifth = qh_a | (uint64_t{qh_b} << 32);
    return _mm512_mask_add_epi8(nibbles, fifth, nibbles, _mm512_set1_epi8(16));
  } else {
    return nibbles;
  }
}

// Q4_0 (kOffset 8: (q - 8) x), Q4_1 (+ m_w * x.sum per block), Q5_0 (kOffset 16) and Q5_1.
template <class B, int kOffset>
struct CodePair {
  using Block = B;
  static constexpr bool kHasMinimum = kOffset == 0;
  static __m512i offset(__m512i xqs) { return offset_term<kOffset>(xqs); }
  static __m512i lanes(const Block& a, const Block& b, const ActivationPair& x) {
    return code_lanes<kOffset>(unpack_code_pair(a, b), x.qs, x.offset);
  }
};

using Q4_0Pair = CodePair<io::Q4_0Block, 8>;
using Q4_1Pair = CodePair<io::Q4_1Block, 0>;
using Q5_0Pair = CodePair<io::Q5_0Block, 16>;
using Q5_1Pair = CodePair<io::Q5_1Block, 0>;

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

// ---- K-quants, one super-block (eight activation blocks) per step ----
//
// A vector holds two activation blocks, and both ways of forming the integer dot product leave
// int32 lane i with elements 4i .. 4i + 3 of the pair: lanes 0..7 the first block, 8..15 the
// second, and each 16-element half of a block (a Q6_K scale's reach) four lanes. The weights'
// sub-block scales therefore multiply the lanes as floats: per row and super-block, one vector of
// d * scale * d_x per sub-block (Q4_K/Q5_K: eight, Q6_K: sixteen) is formed, and each pair's lanes
// take theirs from it by one permute. Q4_K/Q5_K's minimums: dmin * sum_j m_j x_j.sum per
// super-block, in eight lanes. Lanes stay exact as floats (|lane| <= 4 * 32 * 127 < 2^24).

// The activations' `field` (d or sum) of the eight blocks at x, in lanes 0..7.
__m256 block_fields(const Q8ActivationBlock* x, float Q8ActivationBlock::*field) {
  return _mm256_setr_ps(x[0].*field, x[1].*field, x[2].*field, x[3].*field, x[4].*field,
                        x[5].*field, x[6].*field, x[7].*field);
}

// Lane r of v in every lane.
__m256 lane_broadcast(__m256 v, int r) {
  return _mm256_permutexvar_ps(_mm256_set1_epi32(r), v);
}

// The eight lanes of v summed in a fixed order.
float sum8(__m256 v) {
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, v);
  return ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) +
         ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
}

template <class Block>
struct KAffineDot {
  static constexpr bool kFifthBit = std::is_same_v<Block, io::Q5KBlock>;

  template <int R>
  static void dot(const uint8_t* row, int64_t row_bytes, int64_t cols, const float* /*x*/,
                  const Q8ActivationBlock* xq, float* out) {
    static_assert(R == 1 || R == kRowGroup, "row kernels run on single rows or whole groups");
    const __m512i nibble = _mm512_set1_epi8(0x0F);
    // Chunk c's 32 bytes twice: low nibbles (sub-block 2c) in the lower half, high in the upper.
    const __m512i nibble_shift = _mm512_setr_epi64(0, 0, 0, 0, 4, 4, 4, 4);
    const Block* w[R];
    __m512 acc[R];
    __m256 min_terms[R];  // dmin * m_j * x_j.sum
    for (int r = 0; r < R; ++r) {
      w[r] = reinterpret_cast<const Block*>(row + r * row_bytes);
      acc[r] = _mm512_setzero_ps();
      min_terms[r] = _mm256_setzero_ps();
    }
    for (int64_t s = 0; s < cols / io::kSuperBlock; ++s) {
      const Q8ActivationBlock* xs = xq + s * kBlocksPerSuperBlock;
      const __m256 x_scales = block_fields(xs, &Q8ActivationBlock::d);
      const __m256 x_sums = block_fields(xs, &Q8ActivationBlock::sum);
      const __m256 d = row_halves<Block, R>(w, s, s, &Block::d);
      const __m256 dmin = row_halves<Block, R>(w, s, s, &Block::dmin);
      __m256 scales[R];      // lane j: d * sc_j * d_x,j
      __m512i high_bits[R];  // Q5_K: qh in both halves
      for (int r = 0; r < R; ++r) {
        prefetch_block(&w[r][s], sizeof(Block), R * row_bytes);
        uint64_t scale_codes, min_codes;
        unpack_k_scales_mins(w[r][s].scales, &scale_codes, &min_codes);
        auto as_floats = [](uint64_t bytes) {
          return _mm256_cvtepi32_ps(
              _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(static_cast<long long>(bytes))));
        };
        scales[r] =
            _mm256_mul_ps(as_floats(scale_codes), _mm256_mul_ps(x_scales, lane_broadcast(d, r)));
        min_terms[r] = _mm256_fmadd_ps(_mm256_mul_ps(as_floats(min_codes), x_sums),
                                       lane_broadcast(dmin, r), min_terms[r]);
        if constexpr (kFifthBit) {
          high_bits[r] = _mm512_broadcast_i64x4(
              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[r][s].qh)));
        }
      }
      for (int c = 0; c < kBlocksPerSuperBlock / 2; ++c) {
        const __m512i xqs = load_pair(xs[2 * c].qs, xs[2 * c + 1].qs);
        const __m512i pick = _mm512_setr_epi32(2 * c, 2 * c, 2 * c, 2 * c, 2 * c, 2 * c, 2 * c,
                                               2 * c, 2 * c + 1, 2 * c + 1, 2 * c + 1, 2 * c + 1,
                                               2 * c + 1, 2 * c + 1, 2 * c + 1, 2 * c + 1);
        // Q5_K: bit 2c of qh[l] for the lower half, bit 2c + 1 for the upper.
        const __m512i fifth_bits =
            _mm512_inserti64x4(_mm512_set1_epi8(static_cast<char>(1 << (2 * c))),
                               _mm256_set1_epi8(static_cast<char>(1 << (2 * c + 1))), 1);
        for (int r = 0; r < R; ++r) {
          const __m512i twice = _mm512_broadcast_i64x4(
              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[r][s].qs + 32 * c)));
          __m512i q = _mm512_and_si512(_mm512_srlv_epi64(twice, nibble_shift), nibble);
          if constexpr (kFifthBit) {
            const __mmask64 fifth = _mm512_test_epi8_mask(high_bits[r], fifth_bits);
            q = _mm512_mask_add_epi8(q, fifth, q, _mm512_set1_epi8(16));
          }
          const __m512i lanes = code_lanes<0>(q, xqs, zero());
          const __m512 lane_scales = _mm512_permutexvar_ps(pick, _mm512_castps256_ps512(scales[r]));
          acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(lanes), lane_scales, acc[r]);
        }
      }
    }
    for (int r = 0; r < R; ++r) out[r] = _mm512_reduce_add_ps(acc[r]) - sum8(min_terms[r]);
  }
};

struct Q6KDot {
  template <int R>
  static void dot(const uint8_t* row, int64_t row_bytes, int64_t cols, const float* /*x*/,
                  const Q8ActivationBlock* xq, float* out) {
    static_assert(R == 1 || R == kRowGroup, "row kernels run on single rows or whole groups");
    const __m512i low4 = _mm512_set1_epi8(0x0F);
    const __m512i high2 = _mm512_set1_epi8(0x30);
    // Lane g: d_x of block g / 2 (the reach of scale g).
    const __m512i spread_blocks = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    const io::Q6KBlock* w[R];
    __m512 acc[R];
    for (int r = 0; r < R; ++r) {
      w[r] = reinterpret_cast<const io::Q6KBlock*>(row + r * row_bytes);
      acc[r] = _mm512_setzero_ps();
    }
    for (int64_t s = 0; s < cols / io::kSuperBlock; ++s) {
      const Q8ActivationBlock* xs = xq + s * kBlocksPerSuperBlock;
      const __m512 x_scales = _mm512_permutexvar_ps(
          spread_blocks, _mm512_castps256_ps512(block_fields(xs, &Q8ActivationBlock::d)));
      const __m256 d = row_halves<io::Q6KBlock, R>(w, s, s, &io::Q6KBlock::d);
      __m512 scales[R];  // lane g: d * scales[g] * d_x,g/2
      for (int r = 0; r < R; ++r) {
        prefetch_block(&w[r][s], sizeof(io::Q6KBlock), R * row_bytes);
        const __m512 codes = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
            _mm_loadu_si128(reinterpret_cast<const __m128i*>(w[r][s].scales))));
        scales[r] = _mm512_mul_ps(
            codes, _mm512_mul_ps(x_scales, _mm512_broadcastss_ps(
                                               _mm256_castps256_ps128(lane_broadcast(d, r)))));
      }
      // Half h (blocks 4h .. 4h + 3) in two pairs: p = 0 takes the low nibbles of ql[64h ..
      // 64h + 63] (blocks 4h, 4h + 1), p = 1 the high nibbles (4h + 2, 4h + 3); block 4h + k's high
      // bits are bit pair k of qh[32h + l], moved to bits 4 and 5 (64-bit shifts; crossing bits
      // masked off).
      for (int h = 0; h < 2; ++h) {
        for (int p = 0; p < 2; ++p) {
          const int b = 4 * h + 2 * p;
          const __m512i xqs = load_pair(xs[b].qs, xs[b + 1].qs);
          const __m512i offset = offset_term<32>(xqs);
          const __m512i pick = _mm512_setr_epi32(
              2 * b, 2 * b, 2 * b, 2 * b, 2 * b + 1, 2 * b + 1, 2 * b + 1, 2 * b + 1, 2 * b + 2,
              2 * b + 2, 2 * b + 2, 2 * b + 2, 2 * b + 3, 2 * b + 3, 2 * b + 3, 2 * b + 3);
          for (int r = 0; r < R; ++r) {
            const __m512i ql = _mm512_loadu_si512(w[r][s].ql + 64 * h);
            const __m512i qh = _mm512_broadcast_i64x4(
                _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[r][s].qh + 32 * h)));
            __m512i low, high;
            if (p == 0) {
              low = ql;
              high = _mm512_sllv_epi64(qh, _mm512_setr_epi64(4, 4, 4, 4, 2, 2, 2, 2));
            } else {
              low = _mm512_srli_epi16(ql, 4);
              high = _mm512_srlv_epi64(qh, _mm512_setr_epi64(0, 0, 0, 0, 2, 2, 2, 2));
            }
            const __m512i q =
                _mm512_or_si512(_mm512_and_si512(low, low4), _mm512_and_si512(high, high2));
            const __m512i lanes = code_lanes<32>(q, xqs, offset);
            acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(lanes),
                                     _mm512_permutexvar_ps(pick, scales[r]), acc[r]);
          }
        }
      }
    }
    for (int r = 0; r < R; ++r) out[r] = _mm512_reduce_add_ps(acc[r]);
  }
};

using Drivers = RowDrivers<F32Dot, F16Dot, QuantizedDot<Q8_0Pair>, QuantizedDot<Q4_0Pair>,
                           QuantizedDot<Q4_1Pair>, QuantizedDot<Q5_0Pair>, QuantizedDot<Q5_1Pair>,
                           KAffineDot<io::Q4KBlock>, KAffineDot<io::Q5KBlock>, Q6KDot>;
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
