// The runtime kernels built for AVX2 + FMA + F16C (this file's flags; see CMakeLists.txt).
//
// Quantized blocks: the integer dot product of a block uses maddubs (unsigned x signed bytes ->
// pairs of int16) and madd (int16 pairs -> int32), then one FMA adds the int32 lanes, as floats,
// times d_w * d_x. Q8_0 takes one block per 256-bit vector; Q4_0 / Q4_1 take two blocks per step,
// one in each 128-bit half (their nibbles need half the bytes). Four rows share each load of the
// activations and everything derived from it, and one F16C conversion turns the four rows' f16
// scales into floats. matmul's quantized kernels (dot_tokens) go further: four rows x four tokens,
// each weight block loaded, unpacked and its scales converted once for the four tokens, every
// output computed by the same instructions in the same order as matvec's.
#include <immintrin.h>

#include <cstdint>
#include <vector>

#include "io/gguf_quants.h"
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

// Paired with an odd last block: contributes exact zeros.
constexpr Q8ActivationBlock kZeroActivations{};

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
        prefetch_next_group(w[r] + j, R * row_bytes);
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
        prefetch_next_group(w[r] + j, R * row_bytes);
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

// The f16 values at `field` of block b of R rows, as floats in lanes r and r + 4: one conversion
// for all rows, their halves packed in an integer register and then in both 128-bit lanes.
template <class Block, int R>
__m256 row_halves(const Block* const* w, int64_t b, uint16_t Block::*field) {
  uint64_t packed = 0;
  for (int r = 0; r < R; ++r) packed |= uint64_t{w[r][b].*field} << (16 * r);
  return _mm256_cvtph_ps(_mm_set1_epi64x(static_cast<long long>(packed)));
}

// Lane r of each 128-bit half of v (in-lane: cheaper than a lane-crossing permute).
template <int r>
__m256 lane(__m256 v) {
  return _mm256_permute_ps(v, _MM_SHUFFLE(r, r, r, r));
}

// For each row r, its block's int32 lanes as floats times the block's scale d_w * d_x (lane r of
// `scales`), added to acc[r].
template <int R>
void add_scaled(__m256* acc, const __m256i* lanes, __m256 scales) {
  static_assert(R == 1 || R == kRowGroup, "row kernels run on single rows or whole groups");
  acc[0] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(lanes[0]), lane<0>(scales), acc[0]);
  if constexpr (R > 1) {
    acc[1] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(lanes[1]), lane<1>(scales), acc[1]);
    acc[2] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(lanes[2]), lane<2>(scales), acc[2]);
    acc[3] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(lanes[3]), lane<3>(scales), acc[3]);
  }
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
      __m256i lanes[R];
      for (int r = 0; r < R; ++r) {
        prefetch_next_group(&w[r][b], R * row_bytes);
        const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[r][b].qs));
        // |w| as unsigned times x with w's sign: exact for every int8 w, -128 included.
        const __m256i pairs = _mm256_maddubs_epi16(_mm256_abs_epi8(wv), _mm256_sign_epi8(xv, wv));
        lanes[r] = _mm256_madd_epi16(pairs, ones);
      }
      const __m256 scales = _mm256_mul_ps(row_halves<io::Q8_0Block, R>(w, b, &io::Q8_0Block::d),
                                          _mm256_set1_ps(xq[b].d));
      add_scaled<R>(acc, lanes, scales);
    }
    for (int r = 0; r < R; ++r) out[r] = horizontal_sum(acc[r]);
  }

  // dot<kRowGroup> for T tokens at once (matmul): token t's blocks start at xq + t * x_stride,
  // its outputs at out + t * out_stride. Each weight block is loaded, and its sign and scales
  // derived, once for all T tokens; every (row, token) output runs dot's instructions in dot's
  // order, so it is bit-identical to dot<kRowGroup> for that token.
  template <int T>
  static void dot_tokens(const uint8_t* row, int64_t row_bytes, int64_t cols,
                         const Q8ActivationBlock* xq, int64_t x_stride, float* out,
                         int64_t out_stride) {
    constexpr int R = kRowGroup;
    const __m256i ones = _mm256_set1_epi16(1);
    const io::Q8_0Block* w[R];
    __m256 acc[T][R];
    for (int r = 0; r < R; ++r) w[r] = block_row<io::Q8_0Block>(row, row_bytes, r);
    for (int t = 0; t < T; ++t) {
      for (int r = 0; r < R; ++r) acc[t][r] = _mm256_setzero_ps();
    }
    for (int64_t b = 0; b < cols / kQuantBlock; ++b) {
      __m256i wv[R], magnitudes[R];
      for (int r = 0; r < R; ++r) {
        prefetch_next_group(&w[r][b], R * row_bytes);
        wv[r] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[r][b].qs));
        magnitudes[r] = _mm256_abs_epi8(wv[r]);
      }
      const __m256 row_scales = row_halves<io::Q8_0Block, R>(w, b, &io::Q8_0Block::d);
      for (int t = 0; t < T; ++t) {
        const Q8ActivationBlock& xb = xq[t * x_stride + b];
        const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb.qs));
        __m256i lanes[R];
        for (int r = 0; r < R; ++r) {
          const __m256i pairs = _mm256_maddubs_epi16(magnitudes[r], _mm256_sign_epi8(xv, wv[r]));
          lanes[r] = _mm256_madd_epi16(pairs, ones);
        }
        add_scaled<R>(acc[t], lanes, _mm256_mul_ps(row_scales, _mm256_set1_ps(xb.d)));
      }
    }
    for (int t = 0; t < T; ++t) {
      for (int r = 0; r < R; ++r) out[t * out_stride + r] = horizontal_sum(acc[t][r]);
    }
  }
};

// ---- Q4 weights, two blocks per step ----
//
// A step multiplies blocks b and b + 1 of every row: `low` vectors hold elements 0..15 of block b
// in their lower half and of block b + 1 in their upper half, `high` vectors elements 16..31. The
// int16 pair sums of low and high add up before one madd, so each 128-bit half of the int32
// result belongs to one block, and one scale vector [s_b x 4 | s_b+1 x 4] per row serves both.

// Activations of blocks b and b + 1 (an odd last block is paired with zeros).
struct ActivationPair {
  __m256i low;   // [x_b elements 0..15 | x_b+1 elements 0..15]
  __m256i high;  // [x_b elements 16..31 | x_b+1 elements 16..31]
};

ActivationPair load_activation_pair(const Q8ActivationBlock& x0, const Q8ActivationBlock& x1) {
  const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x0.qs));
  const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x1.qs));
  return {_mm256_permute2x128_si256(a, b, 0x20), _mm256_permute2x128_si256(a, b, 0x31)};
}

// int16 pair sums of q x over both blocks of one row, each lane at most 2 * 2 * 15 * 127 = 7620.
__m256i nibble_pair_products(const uint8_t* qa, const uint8_t* qb, const ActivationPair& x) {
  const __m256i packed = _mm256_inserti128_si256(
      _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qa))),
      _mm_loadu_si128(reinterpret_cast<const __m128i*>(qb)), 1);
  const __m256i mask = _mm256_set1_epi8(0x0F);
  const __m256i low = _mm256_and_si256(packed, mask);                         // elements 0..15
  const __m256i high = _mm256_and_si256(_mm256_srli_epi16(packed, 4), mask);  // elements 16..31
  return _mm256_add_epi16(_mm256_maddubs_epi16(low, x.low), _mm256_maddubs_epi16(high, x.high));
}

// The f16 values at `field` of blocks b0 and b1 of R rows as floats: lane r holds row r's value
// for b0, lane 4 + r for b1.
template <class Block, int R>
__m256 row_halves_pair(const Block* const* w, int64_t b0, int64_t b1, uint16_t Block::*field) {
  uint64_t first = 0, second = 0;
  for (int r = 0; r < R; ++r) {
    first |= uint64_t{w[r][b0].*field} << (16 * r);
    second |= uint64_t{w[r][b1].*field} << (16 * r);
  }
  return _mm256_cvtph_ps(
      _mm_set_epi64x(static_cast<long long>(second), static_cast<long long>(first)));
}

// Q4_0 (kOffset: (q - 8) x, the 8 x part shared by the rows) and Q4_1 (kMinimum: + m_w * x.sum).
template <class Block, bool kOffset, bool kMinimum>
struct Q4PairDot {
  template <int R>
  static void dot(const uint8_t* row, int64_t row_bytes, int64_t cols, const float* /*x*/,
                  const Q8ActivationBlock* xq, float* out) {
    const __m256i ones = _mm256_set1_epi16(1);
    const __m256i eight = _mm256_set1_epi8(8);
    const Block* w[R];
    __m256 acc[R];
    __m256 min_terms = _mm256_setzero_ps();  // Q4_1: lanes r and 4 + r sum row r's m_w * x.sum
    for (int r = 0; r < R; ++r) {
      w[r] = block_row<Block>(row, row_bytes, r);
      acc[r] = _mm256_setzero_ps();
    }
    auto step = [&](int64_t b0, int64_t b1, const Q8ActivationBlock& x0,
                    const Q8ActivationBlock& x1) {
      const ActivationPair x = load_activation_pair(x0, x1);
      // 8 x per int16 lane (at most 4 * 8 * 127 = 4064), subtracted from q x: the difference
      // (within +-11684) fits int16.
      __m256i offset = _mm256_setzero_si256();
      if constexpr (kOffset) {
        offset = _mm256_add_epi16(_mm256_maddubs_epi16(eight, x.low),
                                  _mm256_maddubs_epi16(eight, x.high));
      }
      __m256i lanes[R];
      for (int r = 0; r < R; ++r) {
        prefetch_next_group(&w[r][b0], R * row_bytes);
        __m256i pairs = nibble_pair_products(w[r][b0].qs, w[r][b1].qs, x);
        if constexpr (kOffset) pairs = _mm256_sub_epi16(pairs, offset);
        lanes[r] = _mm256_madd_epi16(pairs, ones);
      }
      const __m256 dx = _mm256_set_m128(_mm_set1_ps(x1.d), _mm_set1_ps(x0.d));
      add_scaled<R>(acc, lanes, _mm256_mul_ps(row_halves_pair<Block, R>(w, b0, b1, &Block::d), dx));
      if constexpr (kMinimum) {
        const __m256 sums = _mm256_set_m128(_mm_set1_ps(x1.sum), _mm_set1_ps(x0.sum));
        min_terms =
            _mm256_fmadd_ps(row_halves_pair<Block, R>(w, b0, b1, &Block::m), sums, min_terms);
      }
    };
    const int64_t blocks = cols / kQuantBlock;
    int64_t b = 0;
    for (; b + 2 <= blocks; b += 2) step(b, b + 1, xq[b], xq[b + 1]);
    // The odd last block meets itself times zero activations (x.d = 0, x.sum = 0): exact zeros.
    if (b < blocks) step(b, b, xq[b], kZeroActivations);
    alignas(32) float mins[8];
    _mm256_store_ps(mins, min_terms);
    for (int r = 0; r < R; ++r) out[r] = horizontal_sum(acc[r]) + (mins[r] + mins[4 + r]);
  }

  // dot<kRowGroup> for T tokens at once (see Q8_0Dot::dot_tokens): each pair of weight blocks is
  // unpacked from nibbles, and its scales converted, once for all T tokens; every (row, token)
  // output is bit-identical to dot<kRowGroup>'s.
  template <int T>
  static void dot_tokens(const uint8_t* row, int64_t row_bytes, int64_t cols,
                         const Q8ActivationBlock* xq, int64_t x_stride, float* out,
                         int64_t out_stride) {
    constexpr int R = kRowGroup;
    const __m256i ones = _mm256_set1_epi16(1);
    const __m256i eight = _mm256_set1_epi8(8);
    const __m256i nibble = _mm256_set1_epi8(0x0F);
    const Block* w[R];
    __m256 acc[T][R];
    __m256 min_terms[T];
    for (int r = 0; r < R; ++r) w[r] = block_row<Block>(row, row_bytes, r);
    for (int t = 0; t < T; ++t) {
      for (int r = 0; r < R; ++r) acc[t][r] = _mm256_setzero_ps();
      min_terms[t] = _mm256_setzero_ps();
    }
    auto step = [&](int64_t b0, int64_t b1, bool last_alone) {
      __m256i low[R], high[R];  // as in nibble_pair_products
      for (int r = 0; r < R; ++r) {
        prefetch_next_group(&w[r][b0], R * row_bytes);
        const __m256i packed = _mm256_inserti128_si256(
            _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w[r][b0].qs))),
            _mm_loadu_si128(reinterpret_cast<const __m128i*>(w[r][b1].qs)), 1);
        low[r] = _mm256_and_si256(packed, nibble);
        high[r] = _mm256_and_si256(_mm256_srli_epi16(packed, 4), nibble);
      }
      const __m256 row_scales = row_halves_pair<Block, R>(w, b0, b1, &Block::d);
      __m256 row_minima = _mm256_setzero_ps();
      if constexpr (kMinimum) row_minima = row_halves_pair<Block, R>(w, b0, b1, &Block::m);
      for (int t = 0; t < T; ++t) {
        const Q8ActivationBlock& x0 = xq[t * x_stride + b0];
        const Q8ActivationBlock& x1 = last_alone ? kZeroActivations : xq[t * x_stride + b1];
        const ActivationPair x = load_activation_pair(x0, x1);
        __m256i offset = _mm256_setzero_si256();
        if constexpr (kOffset) {
          offset = _mm256_add_epi16(_mm256_maddubs_epi16(eight, x.low),
                                    _mm256_maddubs_epi16(eight, x.high));
        }
        __m256i lanes[R];
        for (int r = 0; r < R; ++r) {
          __m256i pairs = _mm256_add_epi16(_mm256_maddubs_epi16(low[r], x.low),
                                           _mm256_maddubs_epi16(high[r], x.high));
          if constexpr (kOffset) pairs = _mm256_sub_epi16(pairs, offset);
          lanes[r] = _mm256_madd_epi16(pairs, ones);
        }
        const __m256 dx = _mm256_set_m128(_mm_set1_ps(x1.d), _mm_set1_ps(x0.d));
        add_scaled<R>(acc[t], lanes, _mm256_mul_ps(row_scales, dx));
        if constexpr (kMinimum) {
          const __m256 sums = _mm256_set_m128(_mm_set1_ps(x1.sum), _mm_set1_ps(x0.sum));
          min_terms[t] = _mm256_fmadd_ps(row_minima, sums, min_terms[t]);
        }
      }
    };
    const int64_t blocks = cols / kQuantBlock;
    int64_t b = 0;
    for (; b + 2 <= blocks; b += 2) step(b, b + 1, false);
    if (b < blocks) step(b, b, true);
    for (int t = 0; t < T; ++t) {
      alignas(32) float mins[8];
      _mm256_store_ps(mins, min_terms[t]);
      for (int r = 0; r < R; ++r) {
        out[t * out_stride + r] = horizontal_sum(acc[t][r]) + (mins[r] + mins[4 + r]);
      }
    }
  }
};

using Q4_0Dot = Q4PairDot<io::Q4_0Block, true, false>;
using Q4_1Dot = Q4PairDot<io::Q4_1Block, false, true>;

using Drivers = RowDrivers<F32Dot, F16Dot, Q8_0Dot, Q4_0Dot, Q4_1Dot>;

// Tokens per call of a multi-token kernel. 4 rows x 4 tokens needs 16 accumulators, more than
// the registers, yet measured fastest (one thread, 64 tokens, 1024x256 and 256x1024 matrices,
// against 4 rows x 1 token: Q4_0 1.4-1.6x, Q4_1 1.6-1.7x, Q8_0 1.4-1.5x; x 2 tokens: 1.2-1.4x; x 3
// tokens: 1.3-1.6x): the unpacking and the scale conversions are shared by four tokens, and the
// accumulators' spills are L1 traffic that overlaps the integer work.
constexpr int kTokensPerKernel = 4;

// matmul_rows for quantized weights: within a tile, each group of four rows meets the tile's
// tokens kTokensPerKernel at a time, a remainder two at a time and a last odd token through
// dot<kRowGroup> (all bit-identical per output); single rows as in matmul_rows.
template <class RowDot>
void matmul_token_groups(const WeightMatrix& w, int64_t row_begin, int64_t row_end,
                         const Q8ActivationBlock* xq, int64_t n_tokens, float* y,
                         int64_t y_stride) {
  const int64_t row_bytes = weight_row_bytes(w.type, w.cols);
  const int64_t blocks_per_token = w.cols / kQuantBlock;
  static_assert(kTokenTile % kTokensPerKernel == 0, "whole kernels per full tile");
  for (int64_t t0 = 0; t0 < n_tokens; t0 += kTokenTile) {
    const int64_t t1 = t0 + kTokenTile < n_tokens ? t0 + kTokenTile : n_tokens;
    int64_t r = row_begin;
    for (; r + kRowGroup <= row_end; r += kRowGroup) {
      const uint8_t* rows = w.data + r * row_bytes;
      int64_t t = t0;
      for (; t + kTokensPerKernel <= t1; t += kTokensPerKernel) {
        RowDot::template dot_tokens<kTokensPerKernel>(rows, row_bytes, w.cols,
                                                      xq + t * blocks_per_token, blocks_per_token,
                                                      y + t * y_stride + r, y_stride);
      }
      if constexpr (kTokensPerKernel > 2) {
        if (t + 2 <= t1) {  // (kTokensPerKernel = 4: at most one pair remains)
          RowDot::template dot_tokens<2>(rows, row_bytes, w.cols, xq + t * blocks_per_token,
                                         blocks_per_token, y + t * y_stride + r, y_stride);
          t += 2;
        }
      }
      for (; t < t1; ++t) {
        RowDot::template dot<kRowGroup>(rows, row_bytes, w.cols, nullptr, xq + t * blocks_per_token,
                                        y + t * y_stride + r);
      }
    }
    for (; r < row_end; ++r) {
      for (int64_t t = t0; t < t1; ++t) {
        RowDot::template dot<1>(w.data + r * row_bytes, row_bytes, w.cols, nullptr,
                                xq + t * blocks_per_token, y + t * y_stride + r);
      }
    }
  }
}

void matmul(const WeightMatrix& w, int64_t row_begin, int64_t row_end, const float* x,
            const Q8ActivationBlock* xq, int64_t n_tokens, float* y, int64_t y_stride) {
  switch (w.type) {
    case io::GgmlType::q8_0:
      return matmul_token_groups<Q8_0Dot>(w, row_begin, row_end, xq, n_tokens, y, y_stride);
    case io::GgmlType::q4_0:
      return matmul_token_groups<Q4_0Dot>(w, row_begin, row_end, xq, n_tokens, y, y_stride);
    case io::GgmlType::q4_1:
      return matmul_token_groups<Q4_1Dot>(w, row_begin, row_end, xq, n_tokens, y, y_stride);
    default:
      return Drivers::matmul(w, row_begin, row_end, x, xq, n_tokens, y, y_stride);
  }
}

constexpr RuntimeKernels kKernels = {"avx2", quantize_activations, Drivers::matvec, matmul};

}  // namespace

const RuntimeKernels& table() {
  return kKernels;
}

}  // namespace kernels_avx2
}  // namespace edgedistill::runtime
