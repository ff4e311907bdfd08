// The runtime kernels built for AVX2 + FMA + F16C (this file's flags; see CMakeLists.txt).
//
// Quantized blocks: the integer dot product of a block uses maddubs (unsigned x signed bytes ->
// pairs of int16) and madd (int16 pairs -> int32), then one FMA adds the int32 lanes, as floats,
// times d_w * d_x. Q8_0 takes one block per 256-bit vector; Q4_0 / Q4_1 / Q5_0 / Q5_1 take two
// blocks per step, one in each 128-bit half (their nibbles need half the bytes). The K-quants
// (Q4_K, Q5_K, Q6_K) take one super-block per step, their sub-block scales multiplied in by madd.
// Four rows share each load of the activations and everything derived from it, and one F16C
// conversion turns the four rows' f16 scales into floats. matmul's Q4/Q5/Q8_0 kernels
// (dot_tokens) go further: four rows x four tokens, each weight block loaded, unpacked and its
// scales converted once for the four tokens, every output computed by the same instructions in
// the same order as matvec's.
#include <immintrin.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

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

// ---- Q4 and Q5 weights, two blocks per step ----
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

template <class Block>
constexpr bool kHasFifthBit =
    std::is_same_v<Block, io::Q5_0Block> || std::is_same_v<Block, io::Q5_1Block>;

// The codes of blocks a and b of one row, laid out as ActivationPair: nibbles for Q4, topped for
// Q5 by bit j of qh as 16 (byte j of a half <- byte j / 8 of its block's qh, then bit j % 8).
template <class Block>
void unpack_code_pair(const Block& a, const Block& b, __m256i* low, __m256i* high) {
  const __m256i packed = _mm256_inserti128_si256(
      _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a.qs))),
      _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.qs)), 1);
  const __m256i mask = _mm256_set1_epi8(0x0F);
  *low = _mm256_and_si256(packed, mask);                         // elements 0..15
  *high = _mm256_and_si256(_mm256_srli_epi16(packed, 4), mask);  // elements 16..31
  if constexpr (kHasFifthBit<Block>) {
    int32_t qh_a, qh_b;
    std::memcpy(&qh_a, a.qh, sizeof qh_a);
    std::memcpy(&qh_b, b.qh, sizeof qh_b);
    const __m256i qh = _mm256_set_m128i(_mm_cvtsi32_si128(qh_b), _mm_cvtsi32_si128(qh_a));
    const __m256i bit =
        _mm256_set1_epi64x(static_cast<long long>(0x8040201008040201u));  // bit j % 8
    const __m256i sixteen = _mm256_set1_epi8(0x10);
    auto fifth = [&](int first_byte) {
      const __m128i spread =
          _mm_set_epi64x(0x0101010101010101 * (first_byte + 1), 0x0101010101010101 * first_byte);
      const __m256i bytes = _mm256_shuffle_epi8(qh, _mm256_set_m128i(spread, spread));
      const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(bytes, bit), bit);
      return _mm256_and_si256(set, sixteen);
    };
    *low = _mm256_or_si256(*low, fifth(0));    // bits 0..15: qh bytes 0, 1
    *high = _mm256_or_si256(*high, fifth(2));  // bits 16..31: qh bytes 2, 3
  }
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

// kOffset x per int16 lane, summed over low and high: subtracted from q x, it gives (q - kOffset) x
// and is shared by the rows.
template <int kOffset>
__m256i offset_pairs(const ActivationPair& x) {
  const __m256i offset = _mm256_set1_epi8(kOffset);
  return _mm256_add_epi16(_mm256_maddubs_epi16(offset, x.low),
                          _mm256_maddubs_epi16(offset, x.high));
}

// Q4_0 (kOffset 8: (q - 8) x), Q4_1 (kMinimum: + m_w * x.sum), Q5_0 (kOffset 16) and Q5_1
// (kMinimum). int16 ranges, per lane of low + high (four products): q x within 4 * 31 * 127 =
// 15748, kOffset x within 4 * 16 * 127 = 8128, their difference within 8128: no overflow.
template <class Block, int kOffset, bool kMinimum>
struct Q4PairDot {
  template <int R>
  static void dot(const uint8_t* row, int64_t row_bytes, int64_t cols, const float* /*x*/,
                  const Q8ActivationBlock* xq, float* out) {
    const __m256i ones = _mm256_set1_epi16(1);
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
      __m256i offset = _mm256_setzero_si256();
      if constexpr (kOffset != 0) offset = offset_pairs<kOffset>(x);
      __m256i lanes[R];
      for (int r = 0; r < R; ++r) {
        prefetch_next_group(&w[r][b0], R * row_bytes);
        __m256i low, high;
        unpack_code_pair(w[r][b0], w[r][b1], &low, &high);
        __m256i pairs =
            _mm256_add_epi16(_mm256_maddubs_epi16(low, x.low), _mm256_maddubs_epi16(high, x.high));
        if constexpr (kOffset != 0) pairs = _mm256_sub_epi16(pairs, offset);
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
  // unpacked, and its scales converted, once for all T tokens; every (row, token) output is
  // bit-identical to dot<kRowGroup>'s.
  template <int T>
  static void dot_tokens(const uint8_t* row, int64_t row_bytes, int64_t cols,
                         const Q8ActivationBlock* xq, int64_t x_stride, float* out,
                         int64_t out_stride) {
    constexpr int R = kRowGroup;
    const __m256i ones = _mm256_set1_epi16(1);
    const Block* w[R];
    __m256 acc[T][R];
    __m256 min_terms[T];
    for (int r = 0; r < R; ++r) w[r] = block_row<Block>(row, row_bytes, r);
    for (int t = 0; t < T; ++t) {
      for (int r = 0; r < R; ++r) acc[t][r] = _mm256_setzero_ps();
      min_terms[t] = _mm256_setzero_ps();
    }
    auto step = [&](int64_t b0, int64_t b1, bool last_alone) {
      __m256i low[R], high[R];
      for (int r = 0; r < R; ++r) {
        prefetch_next_group(&w[r][b0], R * row_bytes);
        unpack_code_pair(w[r][b0], w[r][b1], &low[r], &high[r]);
      }
      const __m256 row_scales = row_halves_pair<Block, R>(w, b0, b1, &Block::d);
      __m256 row_minima = _mm256_setzero_ps();
      if constexpr (kMinimum) row_minima = row_halves_pair<Block, R>(w, b0, b1, &Block::m);
      for (int t = 0; t < T; ++t) {
        const Q8ActivationBlock& x0 = xq[t * x_stride + b0];
        const Q8ActivationBlock& x1 = last_alone ? kZeroActivations : xq[t * x_stride + b1];
        const ActivationPair x = load_activation_pair(x0, x1);
        __m256i offset = _mm256_setzero_si256();
        if constexpr (kOffset != 0) offset = offset_pairs<kOffset>(x);
        __m256i lanes[R];
        for (int r = 0; r < R; ++r) {
          __m256i pairs = _mm256_add_epi16(_mm256_maddubs_epi16(low[r], x.low),
                                           _mm256_maddubs_epi16(high[r], x.high));
          if constexpr (kOffset != 0) pairs = _mm256_sub_epi16(pairs, offset);
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

using Q4_0Dot = Q4PairDot<io::Q4_0Block, 8, false>;
using Q4_1Dot = Q4PairDot<io::Q4_1Block, 0, true>;
using Q5_0Dot = Q4PairDot<io::Q5_0Block, 16, false>;
using Q5_1Dot = Q4PairDot<io::Q5_1Block, 0, true>;

// ---- K-quants, one super-block (eight activation blocks) per step ----
//
// A super-block's sub-blocks line up with the activation blocks, so each (row, block) still has
// one integer dot product; its weight scale is an f16 per super-block times a small integer per
// sub-block (Q4_K/Q5_K: 6 bits per 32 elements; Q6_K: int8 per 16). The small integer multiplies
// inside the integer sum: madd's second operand is that scale instead of ones, so each int32 lane
// is sc * (four products). The lanes become floats times the block's d_x (one broadcast shared by
// the rows), summed over the super-block, and the sum is multiplied once by the f16 scale:
//   Q4_K/Q5_K: row += d * sum_j d_x,j * (sc_j sum q x) - dmin * sum_j m_j x_j.sum
//   Q6_K:      row += d * sum_b d_x,b * (sc_2b sum_{l<16} (q - 32) x + sc_2b+1 sum_{l>=16} ...)
// Lanes stay exact: Q5_K sc * 4 * 31 * 127 < 2^20, Q6_K 128 * 4 * 32 * 127 < 2^21.

// pshufb control: int16 lane j of each 128-bit half into every lane of that half.
__m256i word_broadcast(int j) {
  return _mm256_set1_epi16(static_cast<int16_t>((2 * j) | ((2 * j + 1) << 8)));
}

// Lane r of v in every lane (r is a constant once the row loops unroll).
__m256 lane_broadcast(__m256 v, int r) {
  return _mm256_permutevar_ps(v, _mm256_set1_epi32(r));
}

// The activations' `field` (d or sum) of the eight blocks at x, in lanes 0..7.
__m256 block_fields(const Q8ActivationBlock* x, float Q8ActivationBlock::*field) {
  return _mm256_setr_ps(x[0].*field, x[1].*field, x[2].*field, x[3].*field, x[4].*field,
                        x[5].*field, x[6].*field, x[7].*field);
}

template <class Block>
struct KAffineDot {
  static constexpr bool kFifthBit = std::is_same_v<Block, io::Q5KBlock>;

  template <int R>
  static void dot(const uint8_t* row, int64_t row_bytes, int64_t cols, const float* /*x*/,
                  const Q8ActivationBlock* xq, float* out) {
    const __m256i nibble = _mm256_set1_epi8(0x0F);
    const __m256i sixteen = _mm256_set1_epi8(0x10);
    const Block* w[R];
    __m256 acc[R];
    for (int r = 0; r < R; ++r) {
      w[r] = block_row<Block>(row, row_bytes, r);
      acc[r] = _mm256_setzero_ps();
    }
    for (int64_t s = 0; s < cols / io::kSuperBlock; ++s) {
      const Q8ActivationBlock* xs = xq + s * kBlocksPerSuperBlock;
      __m256i scales[R];      // sc_j as int16 in lane j of both halves
      uint64_t min_codes[R];  // m_j in byte j
      __m256 sums[R];         // sum_j d_x,j * lanes_j
      for (int r = 0; r < R; ++r) {
        prefetch_block(&w[r][s], sizeof(Block), R * row_bytes);
        uint64_t scale_codes;
        unpack_k_scales_mins(w[r][s].scales, &scale_codes, &min_codes[r]);
        scales[r] = _mm256_broadcastsi128_si256(
            _mm_cvtepu8_epi16(_mm_cvtsi64_si128(static_cast<long long>(scale_codes))));
        sums[r] = _mm256_setzero_ps();
      }
      // Chunk c: 32 bytes whose low nibbles are sub-block 2c and high nibbles sub-block 2c + 1.
      for (int c = 0; c < kBlocksPerSuperBlock / 2; ++c) {
        const Q8ActivationBlock& x0 = xs[2 * c];
        const Q8ActivationBlock& x1 = xs[2 * c + 1];
        const __m256i xv0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x0.qs));
        const __m256i xv1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x1.qs));
        const __m256 dx0 = _mm256_set1_ps(x0.d), dx1 = _mm256_set1_ps(x1.d);
        for (int r = 0; r < R; ++r) {
          const __m256i packed =
              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[r][s].qs + 32 * c));
          __m256i low = _mm256_and_si256(packed, nibble);
          __m256i high = _mm256_and_si256(_mm256_srli_epi16(packed, 4), nibble);
          if constexpr (kFifthBit) {
            // Bits 2c and 2c + 1 of qh[l], moved to bit 4 (16-bit shifts: the bits that cross into
            // a neighbouring byte are masked off). Reloaded per chunk: four rows' qh held across
            // the chunks would not leave registers for the rest.
            const __m256i qh = _mm256_srli_epi16(
                _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[r][s].qh)), 2 * c);
            low = _mm256_or_si256(low, _mm256_and_si256(_mm256_slli_epi16(qh, 4), sixteen));
            high = _mm256_or_si256(high, _mm256_and_si256(_mm256_slli_epi16(qh, 3), sixteen));
          }
          const __m256i lanes0 =
              _mm256_madd_epi16(_mm256_maddubs_epi16(low, xv0),
                                _mm256_shuffle_epi8(scales[r], word_broadcast(2 * c)));
          const __m256i lanes1 =
              _mm256_madd_epi16(_mm256_maddubs_epi16(high, xv1),
                                _mm256_shuffle_epi8(scales[r], word_broadcast(2 * c + 1)));
          sums[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(lanes0), dx0, sums[r]);
          sums[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(lanes1), dx1, sums[r]);
        }
      }
      const __m256 d = row_halves<Block, R>(w, s, &Block::d);
      const __m256 dmin = row_halves<Block, R>(w, s, &Block::dmin);
      const __m256 x_sums = block_fields(xs, &Q8ActivationBlock::sum);
      for (int r = 0; r < R; ++r) {
        const __m256 mins = _mm256_cvtepi32_ps(
            _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(static_cast<long long>(min_codes[r]))));
        acc[r] = _mm256_fmadd_ps(sums[r], lane_broadcast(d, r), acc[r]);
        acc[r] = _mm256_fnmadd_ps(_mm256_mul_ps(mins, x_sums), lane_broadcast(dmin, r), acc[r]);
      }
    }
    for (int r = 0; r < R; ++r) out[r] = horizontal_sum(acc[r]);
  }
};

using Q4KDot = KAffineDot<io::Q4KBlock>;
using Q5KDot = KAffineDot<io::Q5KBlock>;

struct Q6KDot {
  // pshufb control for activation block 4h + i: in a [sc_0..7 | sc_0..7] (h = 0) or [sc_8..15 |
  // sc_8..15] (h = 1) vector, the block's first scale into the lower half, its second into the
  // upper half (madd's lanes 0..3 cover elements 0..15, lanes 4..7 elements 16..31).
  static __m256i scale_pair(int i) {
    return _mm256_set_m128i(_mm256_castsi256_si128(word_broadcast(2 * i + 1)),
                            _mm256_castsi256_si128(word_broadcast(2 * i)));
  }

  // The codes of block 4h + k of one row: low 4 bits from nibble k / 2 of ql[32 (k % 2) + l], the
  // high 2 from bit pair k of qh[l] moved to bits 4 and 5 (16-bit shifts; crossing bits masked).
  template <int k>
  static __m256i codes(const uint8_t* ql, const uint8_t* qh) {
    const __m256i low_bits =
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql + 32 * (k % 2)));
    const __m256i high_bits = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qh));
    const __m256i low = k < 2 ? low_bits : _mm256_srli_epi16(low_bits, 4);
    __m256i high = high_bits;  // k == 2: bits 4 and 5 already
    if constexpr (k == 0) high = _mm256_slli_epi16(high_bits, 4);
    if constexpr (k == 1) high = _mm256_slli_epi16(high_bits, 2);
    if constexpr (k == 3) high = _mm256_srli_epi16(high_bits, 2);
    return _mm256_or_si256(_mm256_and_si256(low, _mm256_set1_epi8(0x0F)),
                           _mm256_and_si256(high, _mm256_set1_epi8(0x30)));
  }

  template <int R>
  static void dot(const uint8_t* row, int64_t row_bytes, int64_t cols, const float* /*x*/,
                  const Q8ActivationBlock* xq, float* out) {
    const io::Q6KBlock* w[R];
    __m256 acc[R];
    for (int r = 0; r < R; ++r) {
      w[r] = block_row<io::Q6KBlock>(row, row_bytes, r);
      acc[r] = _mm256_setzero_ps();
    }
    for (int64_t s = 0; s < cols / io::kSuperBlock; ++s) {
      const Q8ActivationBlock* xs = xq + s * kBlocksPerSuperBlock;
      __m256i scales[R][2];  // int16 scales 8h .. 8h + 7 in both halves
      __m256 sums[R];
      for (int r = 0; r < R; ++r) {
        prefetch_block(&w[r][s], sizeof(io::Q6KBlock), R * row_bytes);
        const __m256i all =
            _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w[r][s].scales)));
        scales[r][0] = _mm256_permute4x64_epi64(all, 0x44);
        scales[r][1] = _mm256_permute4x64_epi64(all, 0xEE);
        sums[r] = _mm256_setzero_ps();
      }
      for (int h = 0; h < 2; ++h) {
        auto block = [&](auto k_constant) {
          constexpr int k = decltype(k_constant)::value;
          const Q8ActivationBlock& xb = xs[4 * h + k];
          const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb.qs));
          // 32 x per int16 pair, shared by the rows: (q - 32) x = q x - 32 x. q x within 2 * 63 *
          // 127 = 16002, 32 x within 8128: no overflow.
          const __m256i offset = _mm256_maddubs_epi16(_mm256_set1_epi8(32), xv);
          const __m256 dx = _mm256_set1_ps(xb.d);
          const __m256i control = scale_pair(k);
          for (int r = 0; r < R; ++r) {
            const __m256i q = codes<k>(w[r][s].ql + 64 * h, w[r][s].qh + 32 * h);
            const __m256i pairs = _mm256_sub_epi16(_mm256_maddubs_epi16(q, xv), offset);
            const __m256i lanes =
                _mm256_madd_epi16(pairs, _mm256_shuffle_epi8(scales[r][h], control));
            sums[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(lanes), dx, sums[r]);
          }
        };
        block(std::integral_constant<int, 0>{});
        block(std::integral_constant<int, 1>{});
        block(std::integral_constant<int, 2>{});
        block(std::integral_constant<int, 3>{});
      }
      const __m256 d = row_halves<io::Q6KBlock, R>(w, s, &io::Q6KBlock::d);
      for (int r = 0; r < R; ++r) acc[r] = _mm256_fmadd_ps(sums[r], lane_broadcast(d, r), acc[r]);
    }
    for (int r = 0; r < R; ++r) out[r] = horizontal_sum(acc[r]);
  }
};

using Drivers =
    RowDrivers<F32Dot, F16Dot, Q8_0Dot, Q4_0Dot, Q4_1Dot, Q5_0Dot, Q5_1Dot, Q4KDot, Q5KDot, Q6KDot>;

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
    case io::GgmlType::q5_0:
      return matmul_token_groups<Q5_0Dot>(w, row_begin, row_end, xq, n_tokens, y, y_stride);
    case io::GgmlType::q5_1:
      return matmul_token_groups<Q5_1Dot>(w, row_begin, row_end, xq, n_tokens, y, y_stride);
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
