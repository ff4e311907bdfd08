#include "io/gguf_kquants.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "core/error.h"
#include "io/half.h"

namespace edgedistill::io {
namespace {

constexpr int kQ4KSub = 32;      // Q4_K / Q5_K sub-block length
constexpr int kQ6KSub = 16;      // Q6_K sub-block length
constexpr int kScaleCodes = 63;  // 6-bit sub-block scales and minimums
// The candidate grids of a sub-block search: code range + delta for delta in
// [-kSweep, kSweep] * kSweepStep, each refitted.
constexpr int kSweep = 10;
constexpr float kSweepStep = 0.1f;

void check_super_blocks(const char* what, int64_t n) {
  ED_CHECK(n >= 0 && n % kSuperBlock == 0, what, ": a row of ", n,
           " elements is not a whole number of ", kSuperBlock, "-element super-blocks");
}

void check_finite(const char* what, const float* x, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    ED_CHECK(std::isfinite(x[j]), what, ": element ", j, " is ", x[j],
             "; only finite values can be quantized");
  }
}

int nearest(float v) {
  return static_cast<int>(std::nearbyint(v));
}

// The weights of a super-block: the importances, or ones.
std::vector<float> block_weights(const float* importance, int64_t offset) {
  std::vector<float> w(kSuperBlock, 1.0f);
  if (importance != nullptr)
    std::copy(importance + offset, importance + offset + kSuperBlock, w.begin());
  return w;
}

// Weighted least squares of x ~ scale * q + offset over the codes q; with `affine` false the
// offset is 0. Returns false when the codes do not determine the fit (all equal, or all weights
// 0). For the affine fit the offset is kept <= 0 (a K-quant minimum is stored as -offset >= 0).
bool refit(const float* x, const float* w, const int* q, int n, bool affine, float* scale,
           float* offset) {
  double sw = 0, sq = 0, sqq = 0, sx = 0, sqx = 0;
  for (int i = 0; i < n; ++i) {
    sw += w[i];
    sq += w[i] * q[i];
    sqq += w[i] * q[i] * q[i];
    sx += w[i] * x[i];
    sqx += w[i] * q[i] * x[i];
  }
  if (sqq <= 0) return false;
  if (affine) {
    const double det = sw * sqq - sq * sq;
    if (det > 0) {
      const double b = (sqq * sx - sq * sqx) / det;
      if (b <= 0) {
        *scale = static_cast<float>((sw * sqx - sq * sx) / det);
        *offset = static_cast<float>(b);
        return true;
      }
    }
  }
  *scale = static_cast<float>(sqx / sqq);
  *offset = 0.0f;
  return true;
}

double weighted_error(const float* x, const float* w, const int* q, int n, float scale,
                      float offset) {
  double err = 0;
  for (int i = 0; i < n; ++i) {
    const double e = x[i] - (static_cast<double>(scale) * q[i] + offset);
    err += w[i] * e * e;
  }
  return err;
}

// Q4_K / Q5_K: the eight sub-block fits -> 6-bit scales and minimums against f16 super-scales,
// then every code on the stored grid. Writes d, dmin, scales and the codes [256] (0..nmax).
void quantize_k_affine(const float* x, const float* w, int nmax, uint16_t* d_out,
                       uint16_t* dmin_out, uint8_t* packed, int* codes) {
  AffineFit fits[kSuperBlock / kQ4KSub];
  float max_scale = 0.0f, max_min = 0.0f;
  for (int j = 0; j < kSuperBlock / kQ4KSub; ++j) {
    fits[j] = fit_affine_codes(x + j * kQ4KSub, w + j * kQ4KSub, kQ4KSub, nmax);
    max_scale = std::max(max_scale, fits[j].scale);
    max_min = std::max(max_min, fits[j].min);
  }
  *d_out = float_to_f16(max_scale / kScaleCodes);
  *dmin_out = float_to_f16(max_min / kScaleCodes);
  const float d = f16_to_float(*d_out), dmin = f16_to_float(*dmin_out);
  int scales[8], mins[8];
  for (int j = 0; j < 8; ++j) {
    scales[j] = d > 0 ? std::clamp(nearest(fits[j].scale / d), 0, kScaleCodes) : 0;
    mins[j] = dmin > 0 ? std::clamp(nearest(fits[j].min / dmin), 0, kScaleCodes) : 0;
  }
  pack_k_scales_mins(scales, mins, packed);
  for (int j = 0; j < 8; ++j) {
    const float step = d * static_cast<float>(scales[j]);
    const float shift = dmin * static_cast<float>(mins[j]);
    for (int i = 0; i < kQ4KSub; ++i) {
      const int e = j * kQ4KSub + i;
      codes[e] = step > 0 ? std::clamp(nearest((x[e] + shift) / step), 0, nmax) : 0;
    }
  }
}

}  // namespace

void unpack_k_scale_min(const uint8_t* packed, int j, int* scale, int* min) {
  if (j < 4) {
    *scale = packed[j] & 63;
    *min = packed[j + 4] & 63;
  } else {
    *scale = (packed[j + 4] & 0xF) | ((packed[j - 4] >> 6) << 4);
    *min = (packed[j + 4] >> 4) | ((packed[j] >> 6) << 4);
  }
}

void pack_k_scales_mins(const int* scales, const int* mins, uint8_t* packed) {
  std::fill(packed, packed + 12, uint8_t{0});
  for (int j = 0; j < 4; ++j) {
    packed[j] = static_cast<uint8_t>(scales[j] & 63);
    packed[j + 4] = static_cast<uint8_t>(mins[j] & 63);
  }
  for (int j = 4; j < 8; ++j) {
    packed[j + 4] = static_cast<uint8_t>((scales[j] & 0xF) | ((mins[j] & 0xF) << 4));
    packed[j - 4] = static_cast<uint8_t>(packed[j - 4] | ((scales[j] >> 4) << 6));
    packed[j] = static_cast<uint8_t>(packed[j] | ((mins[j] >> 4) << 6));
  }
}

AffineFit fit_affine_codes(const float* x, const float* weights, int n, int nmax) {
  float lo = 0.0f, hi = -std::numeric_limits<float>::infinity();
  for (int i = 0; i < n; ++i) {
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
  }
  if (!(hi > lo)) return {0.0f, -lo};  // every value equal to lo <= 0
  AffineFit best{(hi - lo) / static_cast<float>(nmax), -lo};
  std::vector<int> q(static_cast<size_t>(n));
  double best_error = std::numeric_limits<double>::infinity();
  {
    std::vector<int> base(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) {
      base[i] = std::clamp(nearest((x[i] - lo) / best.scale), 0, nmax);
    }
    best_error = weighted_error(x, weights, base.data(), n, best.scale, -best.min);
  }
  for (int step = -kSweep; step <= kSweep; ++step) {
    const float inverse = (static_cast<float>(nmax) + kSweepStep * step) / (hi - lo);
    for (int i = 0; i < n; ++i) q[i] = std::clamp(nearest(inverse * (x[i] - lo)), 0, nmax);
    float scale, offset;
    // Refit, then round again on the refitted grid and refit once more.
    for (int pass = 0; pass < 2; ++pass) {
      if (!refit(x, weights, q.data(), n, true, &scale, &offset) || !(scale > 0)) break;
      const double error = weighted_error(x, weights, q.data(), n, scale, offset);
      if (error < best_error) {
        best_error = error;
        best = {scale, -offset};
      }
      for (int i = 0; i < n; ++i) q[i] = std::clamp(nearest((x[i] - offset) / scale), 0, nmax);
    }
  }
  return best;
}

float fit_symmetric_codes(const float* x, const float* weights, int n, int nmax) {
  float amax = 0.0f, max = 0.0f;
  for (int i = 0; i < n; ++i) {
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      max = x[i];
    }
  }
  if (amax == 0.0f) return 0.0f;
  // The base grid maps the largest magnitude to the extra negative code -nmax - 1.
  float best = max / static_cast<float>(-nmax - 1);
  std::vector<int> q(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) q[i] = std::clamp(nearest(x[i] / best), -nmax - 1, nmax);
  double best_error = weighted_error(x, weights, q.data(), n, best, 0.0f);
  for (int step = -kSweep; step <= kSweep; ++step) {
    const float inverse = -(static_cast<float>(nmax + 1) + kSweepStep * step) / max;
    for (int i = 0; i < n; ++i) q[i] = std::clamp(nearest(inverse * x[i]), -nmax - 1, nmax);
    float scale, offset;
    for (int pass = 0; pass < 2; ++pass) {
      if (!refit(x, weights, q.data(), n, false, &scale, &offset) || scale == 0.0f) break;
      const double error = weighted_error(x, weights, q.data(), n, scale, 0.0f);
      if (error < best_error) {
        best_error = error;
        best = scale;
      }
      for (int i = 0; i < n; ++i) q[i] = std::clamp(nearest(x[i] / scale), -nmax - 1, nmax);
    }
  }
  return best;
}

namespace {

// Q4_K and Q5_K decode alike: value = d * sc * q - dmin * m per 32-element sub-block, Q5_K's codes
// topped by their fifth bit from qh.
template <class Block>
void dequantize_k_affine(const Block* in, int64_t n, float* y, const char* what) {
  check_super_blocks(what, n);
  for (int64_t b = 0; b < n / kSuperBlock; ++b, y += kSuperBlock) {
    const float d = f16_to_float(in[b].d), dmin = f16_to_float(in[b].dmin);
    for (int c = 0; c < 4; ++c) {
      int sc0, m0, sc1, m1;
      unpack_k_scale_min(in[b].scales, 2 * c, &sc0, &m0);
      unpack_k_scale_min(in[b].scales, 2 * c + 1, &sc1, &m1);
      const float d0 = d * static_cast<float>(sc0), min0 = dmin * static_cast<float>(m0);
      const float d1 = d * static_cast<float>(sc1), min1 = dmin * static_cast<float>(m1);
      const uint8_t* qs = in[b].qs + 32 * c;
      for (int l = 0; l < 32; ++l) {
        int low = qs[l] & 0xF, high = qs[l] >> 4;
        if constexpr (std::is_same_v<Block, Q5KBlock>) {
          low |= ((in[b].qh[l] >> (2 * c)) & 1) << 4;
          high |= ((in[b].qh[l] >> (2 * c + 1)) & 1) << 4;
        }
        y[64 * c + l] = d0 * static_cast<float>(low) - min0;
        y[64 * c + 32 + l] = d1 * static_cast<float>(high) - min1;
      }
    }
  }
}

}  // namespace

void dequantize_row_q4_k(const Q4KBlock* in, int64_t n, float* y) {
  dequantize_k_affine(in, n, y, "dequantize_row_q4_k");
}

void dequantize_row_q5_k(const Q5KBlock* in, int64_t n, float* y) {
  dequantize_k_affine(in, n, y, "dequantize_row_q5_k");
}

void dequantize_row_q6_k(const Q6KBlock* in, int64_t n, float* y) {
  check_super_blocks("dequantize_row_q6_k", n);
  for (int64_t b = 0; b < n / kSuperBlock; ++b, y += kSuperBlock) {
    const float d = f16_to_float(in[b].d);
    for (int h = 0; h < 2; ++h) {
      const uint8_t* ql = in[b].ql + 64 * h;
      const uint8_t* qh = in[b].qh + 32 * h;
      for (int l = 0; l < 32; ++l) {
        const int q[4] = {(ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4),
                          (ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4),
                          (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4),
                          (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)};
        for (int k = 0; k < 4; ++k) {
          const int e = 128 * h + 32 * k + l;
          y[e] = d * static_cast<float>(in[b].scales[e / kQ6KSub]) * static_cast<float>(q[k] - 32);
        }
      }
    }
  }
}

void dequantize_row_q8_k(const Q8KBlock* in, int64_t n, float* y) {
  check_super_blocks("dequantize_row_q8_k", n);
  for (int64_t b = 0; b < n / kSuperBlock; ++b, y += kSuperBlock) {
    for (int j = 0; j < kSuperBlock; ++j) y[j] = in[b].d * static_cast<float>(in[b].qs[j]);
  }
}

namespace {

// Q4_K and Q5_K: the search of quantize_k_affine per super-block, then the codes packed (Q5_K's
// fifth bits into qh).
// 256 codes into a Q4_K/Q5_K block's qs (and Q5_K's qh): sub-blocks 2c and 2c + 1 share the 32
// bytes qs[32c..], low and high nibble; Q5_K's fifth bits of those two sub-blocks are bits 2c and
// 2c + 1 of qh[l].
template <class Block>
void pack_affine_codes(const int* codes, Block& block) {
  constexpr bool kFifthBit = std::is_same_v<Block, Q5KBlock>;
  if constexpr (kFifthBit) std::fill(std::begin(block.qh), std::end(block.qh), uint8_t{0});
  for (int c = 0; c < 4; ++c) {
    for (int l = 0; l < 32; ++l) {
      const int low = codes[64 * c + l], high = codes[64 * c + 32 + l];
      block.qs[32 * c + l] = static_cast<uint8_t>((low & 0xF) | ((high & 0xF) << 4));
      if constexpr (kFifthBit) {
        block.qh[l] = static_cast<uint8_t>(block.qh[l] | ((low >> 4) << (2 * c)) |
                                           ((high >> 4) << (2 * c + 1)));
      }
    }
  }
}

// 256 six-bit codes into a Q6_K block's ql (low nibbles) and qh (top two bits), in the order
// dequantize_row_q6_k reads them.
void pack_q6_k_codes(const int* codes, Q6KBlock& block) {
  for (int h = 0; h < 2; ++h) {
    for (int l = 0; l < 32; ++l) {
      const int* c = codes + 128 * h + l;
      block.ql[64 * h + l] = static_cast<uint8_t>((c[0] & 0xF) | ((c[64] & 0xF) << 4));
      block.ql[64 * h + 32 + l] = static_cast<uint8_t>((c[32] & 0xF) | ((c[96] & 0xF) << 4));
      block.qh[32 * h + l] = static_cast<uint8_t>((c[0] >> 4) | ((c[32] >> 4) << 2) |
                                                  ((c[64] >> 4) << 4) | ((c[96] >> 4) << 6));
    }
  }
}

template <class Block>
void quantize_k_affine_row(const float* x, int64_t n, Block* out, const float* importance,
                           const char* what) {
  constexpr bool kFifthBit = std::is_same_v<Block, Q5KBlock>;
  check_super_blocks(what, n);
  check_finite(what, x, n);
  int codes[kSuperBlock];
  for (int64_t b = 0; b < n / kSuperBlock; ++b) {
    const auto w = block_weights(importance, b * kSuperBlock);
    Block& block = out[b];
    quantize_k_affine(x + b * kSuperBlock, w.data(), kFifthBit ? 31 : 15, &block.d, &block.dmin,
                      block.scales, codes);
    pack_affine_codes(codes, block);
  }
}

}  // namespace

void quantize_row_q4_k(const float* x, int64_t n, Q4KBlock* out, const float* importance) {
  quantize_k_affine_row(x, n, out, importance, "quantize_row_q4_k");
}

void quantize_row_q5_k(const float* x, int64_t n, Q5KBlock* out, const float* importance) {
  quantize_k_affine_row(x, n, out, importance, "quantize_row_q5_k");
}

void quantize_row_q6_k(const float* x, int64_t n, Q6KBlock* out, const float* importance) {
  check_super_blocks("quantize_row_q6_k", n);
  check_finite("quantize_row_q6_k", x, n);
  constexpr int kSubs = kSuperBlock / kQ6KSub;
  for (int64_t b = 0; b < n / kSuperBlock; ++b) {
    const float* xb = x + b * kSuperBlock;
    const auto w = block_weights(importance, b * kSuperBlock);
    float fits[kSubs];
    float max = 0.0f;
    for (int j = 0; j < kSubs; ++j) {
      fits[j] = fit_symmetric_codes(xb + j * kQ6KSub, w.data() + j * kQ6KSub, kQ6KSub, 31);
      if (std::fabs(fits[j]) > std::fabs(max)) max = fits[j];
    }
    Q6KBlock& block = out[b];
    // The largest sub-block scale becomes -128 (the int8 end with room).
    block.d = float_to_f16(max / -128.0f);
    const float d = f16_to_float(block.d);
    int codes[kSuperBlock];
    for (int j = 0; j < kSubs; ++j) {
      block.scales[j] =
          static_cast<int8_t>(d != 0.0f ? std::clamp(nearest(fits[j] / d), -128, 127) : 0);
      const float step = d * static_cast<float>(block.scales[j]);
      for (int i = 0; i < kQ6KSub; ++i) {
        const int e = j * kQ6KSub + i;
        codes[e] = (step != 0.0f ? std::clamp(nearest(xb[e] / step), -32, 31) : 0) + 32;
      }
    }
    pack_q6_k_codes(codes, block);
  }
}

void quantize_row_q8_k(const float* x, int64_t n, Q8KBlock* out) {
  check_super_blocks("quantize_row_q8_k", n);
  check_finite("quantize_row_q8_k", x, n);
  for (int64_t b = 0; b < n / kSuperBlock; ++b) {
    const float* xb = x + b * kSuperBlock;
    float amax = 0.0f;
    for (int j = 0; j < kSuperBlock; ++j) amax = std::max(amax, std::fabs(xb[j]));
    Q8KBlock& block = out[b];
    block.d = amax / 127.0f;
    const float inverse = amax > 0 ? 127.0f / amax : 0.0f;
    for (int j = 0; j < kSuperBlock; ++j) {
      block.qs[j] = static_cast<int8_t>(std::clamp(nearest(xb[j] * inverse), -127, 127));
    }
    for (int i = 0; i < kSuperBlock / 16; ++i) {
      int sum = 0;
      for (int j = 0; j < 16; ++j) sum += block.qs[16 * i + j];
      block.bsums[i] = static_cast<int16_t>(sum);
    }
  }
}

namespace {

template <class Block>
Block block_of(const KGrid& grid) {
  Block block;
  std::memcpy(&block, grid.block, sizeof block);
  return block;
}

template <class Block>
void affine_grid(const float* x, const float* importance, KGrid& grid,
                 void (*quantize)(const float*, int64_t, Block*, const float*)) {
  Block block;
  quantize(x, kSuperBlock, &block, importance);
  std::memcpy(grid.block, &block, sizeof block);
  // The same float operations as dequantize_k_affine, so k_grid_value decodes bit for bit.
  const float d = f16_to_float(block.d), dmin = f16_to_float(block.dmin);
  for (int j = 0; j < kSuperBlock / kQ4KSub; ++j) {
    int sc, m;
    unpack_k_scale_min(block.scales, j, &sc, &m);
    grid.step[j] = d * static_cast<float>(sc);
    grid.shift[j] = dmin * static_cast<float>(m);
  }
}

}  // namespace

KGrid k_grid(GgmlType type, const float* x, const float* importance) {
  check_finite("k_grid", x, kSuperBlock);
  KGrid grid;
  grid.type = type;
  switch (type) {
    case GgmlType::q4_k:
      affine_grid<Q4KBlock>(x, importance, grid, quantize_row_q4_k);
      return grid;
    case GgmlType::q5_k:
      affine_grid<Q5KBlock>(x, importance, grid, quantize_row_q5_k);
      return grid;
    case GgmlType::q6_k: {
      Q6KBlock block;
      quantize_row_q6_k(x, kSuperBlock, &block, importance);
      std::memcpy(grid.block, &block, sizeof block);
      const float d = f16_to_float(block.d);
      for (int j = 0; j < kSuperBlock / kQ6KSub; ++j) {
        grid.step[j] = d * static_cast<float>(block.scales[j]);
      }
      return grid;
    }
    default:
      break;
  }
  ED_CHECK(false, "k_grid: ", ggml_type_traits(type).name, " is not q4_k, q5_k or q6_k");
  return grid;
}

int k_grid_code(const KGrid& grid, int e, float x) {
  if (grid.type == GgmlType::q6_k) {
    const float step = grid.step[e / kQ6KSub];
    return (step != 0.0f ? std::clamp(nearest(x / step), -32, 31) : 0) + 32;
  }
  const int nmax = grid.type == GgmlType::q5_k ? 31 : 15;
  const float step = grid.step[e / kQ4KSub];
  return step > 0 ? std::clamp(nearest((x + grid.shift[e / kQ4KSub]) / step), 0, nmax) : 0;
}

float k_grid_value(const KGrid& grid, int e, int code) {
  if (grid.type == GgmlType::q6_k) return grid.step[e / kQ6KSub] * static_cast<float>(code - 32);
  return grid.step[e / kQ4KSub] * static_cast<float>(code) - grid.shift[e / kQ4KSub];
}

void k_grid_pack(const KGrid& grid, const int* codes, uint8_t* out) {
  switch (grid.type) {
    case GgmlType::q4_k: {
      auto block = block_of<Q4KBlock>(grid);
      pack_affine_codes(codes, block);
      std::memcpy(out, &block, sizeof block);
      return;
    }
    case GgmlType::q5_k: {
      auto block = block_of<Q5KBlock>(grid);
      pack_affine_codes(codes, block);
      std::memcpy(out, &block, sizeof block);
      return;
    }
    case GgmlType::q6_k: {
      auto block = block_of<Q6KBlock>(grid);
      pack_q6_k_codes(codes, block);
      std::memcpy(out, &block, sizeof block);
      return;
    }
    default:
      break;
  }
  ED_CHECK(false, "k_grid_pack: not a K-quant grid");
}

}  // namespace edgedistill::io
