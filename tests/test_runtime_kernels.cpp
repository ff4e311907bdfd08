// The runtime's matrix kernels, thread pool and linear layer.
//
// The scalar build is checked against the block formulas of docs/quantization.md written out
// here (weights and activations dequantized to double; the formulas themselves checked against
// io's reference decoders); every other build this CPU can run is checked against the scalar build
// over many shapes. All comparisons use the worst-case bound of float summation (Higham, "Accuracy
// and Stability of Numerical Algorithms", 2nd ed., eq. 4.4): |computed - exact| <= (terms +
// kExtraRoundings) * u * sum |term|, u = 2^-24. The integer kernels are also compared with the
// f32 dot of the decoded rows and the float activations (what the runtime computed before they
// existed), within the error of quantizing the activations.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "io/gguf_quants.h"
#include "io/gguf_types.h"
#include "io/half.h"
#include "runtime/kernels.h"
#include "runtime/linear.h"
#include "runtime/thread_pool.h"

using namespace edgedistill;
using runtime::Q8ActivationBlock;
using runtime::RuntimeKernels;
using runtime::WeightMatrix;

namespace {

// Unit roundoff of binary32.
constexpr double kFloatRoundoff = 1.0 / 16777216.0;
// Roundings besides the additions: the product of each term (or the scale d_w * d_x and then the
// product with the block's integer sum; a K-quant's f16 scale times its 6- or 8-bit sub-block
// scale is exact), a minimum's x.sum stored rounded, and the final reduction of the vector lanes
// (counted once more).
constexpr double kExtraRoundings = 3;
// A vectorised build and the scalar build are each within one bound of the exact value.
constexpr double kTwinBounds = 2;
// quantize_activations multiplies by 1 / d rather than dividing by d: x * (1/d) differs from x / d
// by at most 2 ulps of a value of magnitude <= 127 (2 * 127 * 2^-23 = 3e-5), so a rounded q may
// sit that much beyond 0.5 from x / d.
constexpr double kQuantizeRoundingSlack = 1e-4;

const io::GgmlType kAllTypes[] = {io::GgmlType::f32,  io::GgmlType::f16,  io::GgmlType::q8_0,
                                  io::GgmlType::q4_0, io::GgmlType::q4_1, io::GgmlType::q5_0,
                                  io::GgmlType::q5_1, io::GgmlType::q4_k, io::GgmlType::q5_k,
                                  io::GgmlType::q6_k};

bool is_k_quant(io::GgmlType type) {
  return type == io::GgmlType::q4_k || type == io::GgmlType::q5_k || type == io::GgmlType::q6_k;
}

// The types whose formulas this file writes out and checks against io's reference decoders.
bool is_checked_against_io(io::GgmlType type) {
  return is_k_quant(type) || type == io::GgmlType::q5_0 || type == io::GgmlType::q5_1;
}

const io::GgmlType kIntegerTypes[] = {io::GgmlType::q8_0, io::GgmlType::q4_0, io::GgmlType::q4_1,
                                      io::GgmlType::q5_0, io::GgmlType::q5_1, io::GgmlType::q4_k,
                                      io::GgmlType::q5_k, io::GgmlType::q6_k};

const char* type_name(io::GgmlType type) {
  switch (type) {
    case io::GgmlType::f32:
      return "f32";
    case io::GgmlType::f16:
      return "f16";
    case io::GgmlType::q8_0:
      return "q8_0";
    case io::GgmlType::q4_0:
      return "q4_0";
    case io::GgmlType::q4_1:
      return "q4_1";
    case io::GgmlType::q5_0:
      return "q5_0";
    case io::GgmlType::q5_1:
      return "q5_1";
    case io::GgmlType::q4_k:
      return "q4_k";
    case io::GgmlType::q5_k:
      return "q5_k";
    case io::GgmlType::q6_k:
      return "q6_k";
    case io::GgmlType::q8_k:
      return "q8_k";
  }
  return "?";
}

// The weight types whose kernels take 8-bit activation blocks: every block type.
bool is_quantized(io::GgmlType type) {
  return type != io::GgmlType::f32 && type != io::GgmlType::f16;
}

int64_t test_row_bytes(io::GgmlType type, int64_t cols) {
  switch (type) {
    case io::GgmlType::f32:
      return cols * 4;
    case io::GgmlType::f16:
      return cols * 2;
    case io::GgmlType::q8_0:
      return cols / 32 * 34;
    case io::GgmlType::q4_0:
      return cols / 32 * 18;
    case io::GgmlType::q4_1:
      return cols / 32 * 20;
    case io::GgmlType::q5_0:
      return cols / 32 * 22;
    case io::GgmlType::q5_1:
      return cols / 32 * 24;
    case io::GgmlType::q4_k:
      return cols / 256 * 144;
    case io::GgmlType::q5_k:
      return cols / 256 * 176;
    case io::GgmlType::q6_k:
      return cols / 256 * 210;
    case io::GgmlType::q8_k:
      return cols / 256 * 292;
  }
  return 0;
}

uint16_t read_u16(const uint8_t* p) {
  return static_cast<uint16_t>(p[0] | (p[1] << 8));
}

void write_u16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v & 0xFF);
  p[1] = static_cast<uint8_t>(v >> 8);
}

// A weight matrix of random contents covering the whole format: every int8 (Q8_0, -128
// included), every nibble, scales of both signs.
struct TestMatrix {
  io::GgmlType type;
  int64_t rows;
  int64_t cols;
  std::vector<uint8_t> bytes;

  WeightMatrix view() const { return {type, rows, cols, bytes.data()}; }
  const uint8_t* row(int64_t r) const { return bytes.data() + r * test_row_bytes(type, cols); }
};

TestMatrix random_matrix(io::GgmlType type, int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> scale(0.002f, 0.05f);
  std::uniform_int_distribution<int> byte(0, 255);
  std::bernoulli_distribution negative(0.3);
  TestMatrix m{type, rows, cols, std::vector<uint8_t>(rows * test_row_bytes(type, cols))};
  uint8_t* p = m.bytes.data();
  const int64_t blocks = rows * cols / 32;
  switch (type) {
    case io::GgmlType::f32:
      for (int64_t i = 0; i < rows * cols; ++i) {
        const float v = normal(rng);
        std::memcpy(p + 4 * i, &v, 4);
      }
      break;
    case io::GgmlType::f16:
      for (int64_t i = 0; i < rows * cols; ++i) write_u16(p + 2 * i, io::float_to_f16(normal(rng)));
      break;
    case io::GgmlType::q8_0:
      for (int64_t b = 0; b < blocks; ++b, p += 34) {
        write_u16(p, io::float_to_f16(negative(rng) ? -scale(rng) : scale(rng)));
        for (int j = 0; j < 32; ++j) p[2 + j] = static_cast<uint8_t>(byte(rng));
      }
      break;
    case io::GgmlType::q4_0:
      for (int64_t b = 0; b < blocks; ++b, p += 18) {
        write_u16(p, io::float_to_f16(negative(rng) ? -scale(rng) : scale(rng)));
        for (int j = 0; j < 16; ++j) p[2 + j] = static_cast<uint8_t>(byte(rng));
      }
      break;
    case io::GgmlType::q4_1:
      for (int64_t b = 0; b < blocks; ++b, p += 20) {
        write_u16(p, io::float_to_f16(scale(rng)));
        write_u16(p + 2, io::float_to_f16(-8.0f * scale(rng)));
        for (int j = 0; j < 16; ++j) p[4 + j] = static_cast<uint8_t>(byte(rng));
      }
      break;
    case io::GgmlType::q5_0:
    case io::GgmlType::q5_1:
      for (int64_t b = 0; b < blocks; ++b, p += test_row_bytes(type, 32)) {
        for (int64_t j = 0; j < test_row_bytes(type, 32); ++j)
          p[j] = static_cast<uint8_t>(byte(rng));
        write_u16(p, io::float_to_f16(negative(rng) ? -scale(rng) : scale(rng)));
        if (type == io::GgmlType::q5_1) write_u16(p + 2, io::float_to_f16(-16.0f * scale(rng)));
      }
      break;
    case io::GgmlType::q4_k:
    case io::GgmlType::q5_k:
    case io::GgmlType::q6_k: {
      // Random bytes (every code, sub-block scale and minimum), then finite super-block scales:
      // d and dmin lead a Q4_K/Q5_K block, d ends a Q6_K block (of either sign).
      const int64_t size = test_row_bytes(type, 256);
      for (int64_t b = 0; b < rows * cols / 256; ++b, p += size) {
        for (int64_t j = 0; j < size; ++j) p[j] = static_cast<uint8_t>(byte(rng));
        if (type == io::GgmlType::q6_k) {
          write_u16(p + 208, io::float_to_f16((negative(rng) ? -0.02f : 0.02f) * scale(rng)));
        } else {
          write_u16(p, io::float_to_f16(0.1f * scale(rng)));
          write_u16(p + 2, io::float_to_f16(0.1f * scale(rng)));
        }
      }
      break;
    }
    case io::GgmlType::q8_k:
      break;
  }
  return m;
}

// Q4_K/Q5_K's 6-bit scale and minimum of sub-block j from the 12 packed bytes (io/gguf_types.h,
// docs/quantization.md): j < 4 in the low 6 bits of bytes j (scale) and j + 4 (minimum); j >= 4
// in the nibbles of byte j + 4 (scale low, minimum high) with their top 2 bits in the top 2 bits
// of bytes j - 4 (scale) and j (minimum).
std::pair<int, int> k_scale_min(const uint8_t* packed, int j) {
  if (j < 4) return {packed[j] & 63, packed[j + 4] & 63};
  return {(packed[j + 4] & 0x0F) | ((packed[j - 4] >> 6) << 4),
          (packed[j + 4] >> 4) | ((packed[j] >> 6) << 4)};
}

// Row r's weights from the block formulas of the spec: Q8_0 qs[j] d; Q4_0 (q_j - 8) d and
// Q4_1 q_j d + m, where byte j holds q_j in its low nibble and q_{j+16} in its high nibble; Q5_0
// (q_j - 16) d and Q5_1 q_j d + m with bit 4 of q_j in bit j of qh; Q4_K/Q5_K d sc_j q - dmin m_j
// per sub-block of 32, q of element 64c + l in the low nibble of qs[32c + l] and of 64c + 32 + l in
// its high nibble (Q5_K: bit 4 from bits 2c and 2c + 1 of qh[l]); Q6_K d sc_k (q - 32) per 16,
// element 128h + 32k + l's low 4 bits in nibble k / 2 of ql[64h + 32 (k % 2) + l] and high 2 bits
// in bit pair k of qh[32h + l]. Every value is exact in double. `minimum` receives each element's
// additive part (Q4_1/Q5_1 m, Q4_K/Q5_K -dmin m_j: the term a kernel applies through x.sum).
std::vector<double> dequantize_row(const TestMatrix& m, int64_t r, std::vector<double>* minimum) {
  std::vector<double> w(m.cols);
  std::vector<double> unused;
  if (minimum == nullptr) minimum = &unused;
  minimum->assign(m.cols, 0.0);
  const uint8_t* p = m.row(r);
  auto half = [](const uint8_t* q) { return double{io::f16_to_float(read_u16(q))}; };
  for (int64_t b = 0; b < m.cols / 32; ++b) {
    if (m.type == io::GgmlType::q8_0) {
      const uint8_t* block = p + b * 34;
      const double d = half(block);
      for (int j = 0; j < 32; ++j) w[b * 32 + j] = static_cast<int8_t>(block[2 + j]) * d;
    } else if (m.type == io::GgmlType::q4_0) {
      const uint8_t* block = p + b * 18;
      const double d = half(block);
      for (int j = 0; j < 16; ++j) {
        w[b * 32 + j] = ((block[2 + j] & 0x0F) - 8) * d;
        w[b * 32 + j + 16] = ((block[2 + j] >> 4) - 8) * d;
      }
    } else if (m.type == io::GgmlType::q4_1) {
      const uint8_t* block = p + b * 20;
      const double d = half(block);
      const double min = half(block + 2);
      for (int j = 0; j < 16; ++j) {
        w[b * 32 + j] = (block[4 + j] & 0x0F) * d;
        w[b * 32 + j + 16] = (block[4 + j] >> 4) * d;
      }
      std::fill(minimum->begin() + b * 32, minimum->begin() + b * 32 + 32, min);
    } else if (m.type == io::GgmlType::q5_0 || m.type == io::GgmlType::q5_1) {
      const bool affine = m.type == io::GgmlType::q5_1;
      const uint8_t* block = p + b * (affine ? 24 : 22);
      const double d = half(block);
      const uint8_t* qh = block + (affine ? 4 : 2);
      const uint8_t* qs = qh + 4;
      for (int j = 0; j < 32; ++j) {
        const int low = j < 16 ? qs[j] & 0x0F : qs[j - 16] >> 4;
        const int q = low | (((qh[j / 8] >> (j % 8)) & 1) << 4);
        w[b * 32 + j] = (affine ? q : q - 16) * d;
        if (affine) (*minimum)[b * 32 + j] = half(block + 2);
      }
    }
  }
  for (int64_t s = 0; s < m.cols / 256 && is_k_quant(m.type); ++s) {
    if (m.type == io::GgmlType::q4_k || m.type == io::GgmlType::q5_k) {
      const bool fifth = m.type == io::GgmlType::q5_k;
      const uint8_t* block = p + s * (fifth ? 176 : 144);
      const double d = half(block), dmin = half(block + 2);
      const uint8_t* scales = block + 4;
      const uint8_t* qh = block + 16;
      const uint8_t* qs = block + (fifth ? 48 : 16);
      for (int e = 0; e < 256; ++e) {
        const int c = e / 64, l = e % 32, j = e / 32;
        int q = (e % 64 < 32 ? qs[32 * c + l] & 0x0F : qs[32 * c + l] >> 4);
        if (fifth) q |= ((qh[l] >> j) & 1) << 4;
        const auto [sc, mn] = k_scale_min(scales, j);
        w[s * 256 + e] = d * sc * q;
        (*minimum)[s * 256 + e] = -dmin * mn;
      }
    } else {
      const uint8_t* block = p + s * 210;
      const uint8_t* ql = block;
      const uint8_t* qh = block + 128;
      const auto* scales = reinterpret_cast<const int8_t*>(block + 192);
      const double d = half(block + 208);
      for (int e = 0; e < 256; ++e) {
        const int h = e / 128, k = e % 128 / 32, l = e % 32;
        const int low = (ql[64 * h + 32 * (k % 2) + l] >> (4 * (k / 2))) & 0x0F;
        const int q = low | (((qh[32 * h + l] >> (2 * k)) & 3) << 4);
        w[s * 256 + e] = d * scales[e / 16] * (q - 32);
      }
    }
  }
  for (int64_t j = 0; j < m.cols; ++j) {
    if (m.type == io::GgmlType::f32) {
      float v;
      std::memcpy(&v, p + 4 * j, 4);
      w[j] = v;
    } else if (m.type == io::GgmlType::f16) {
      w[j] = io::f16_to_float(read_u16(p + 2 * j));
    }
  }
  return w;
}

std::vector<float> random_activations(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> block_scale(0.01f, 10.0f);
  std::vector<float> x(n);
  // Each block of 32 gets its own magnitude, as activations of real layers do.
  float s = 1.0f;
  for (int64_t i = 0; i < n; ++i) {
    if (i % 32 == 0) s = block_scale(rng);
    x[i] = s * normal(rng);
  }
  return x;
}

std::vector<Q8ActivationBlock> quantize(const RuntimeKernels& kernels,
                                        const std::vector<float>& x) {
  std::vector<Q8ActivationBlock> xq(x.size() / 32);
  kernels.quantize_activations(x.data(), static_cast<int64_t>(x.size()), xq.data());
  return xq;
}

// The exact value of one output (in double) and the sum of |terms| the bound scales.
struct Expected {
  double value = 0;
  double magnitude = 0;
  double terms = 0;  // how many float additions a kernel makes for this output
};

// Row r times token t's activations: x (float) for F32/F16 weights, xq dequantized otherwise.
Expected expected_output(const TestMatrix& m, int64_t r, const float* x,
                         const Q8ActivationBlock* xq) {
  std::vector<double> minimum;
  const std::vector<double> w = dequantize_row(m, r, &minimum);
  Expected e;
  for (int64_t j = 0; j < m.cols; ++j) {
    const double xj = is_quantized(m.type) ? xq[j / 32].qs[j % 32] * double{xq[j / 32].d} : x[j];
    e.value += (w[j] + minimum[j]) * xj;
    e.magnitude += std::fabs(w[j] * xj) + std::fabs(minimum[j] * xj);
  }
  e.terms = is_quantized(m.type) ? 2.0 * (m.cols / 32) : static_cast<double>(m.cols);
  return e;
}

double summation_bound(const Expected& e) {
  return (e.terms + kExtraRoundings) * kFloatRoundoff * e.magnitude;
}

// Activations for n_tokens tokens: float rows and their 8-bit blocks (by `quantizer`).
struct TestActivations {
  std::vector<float> x;
  std::vector<Q8ActivationBlock> xq;
};

TestActivations random_tokens(const RuntimeKernels& quantizer, int64_t n_tokens, int64_t cols,
                              uint32_t seed) {
  TestActivations a;
  a.x = random_activations(n_tokens * cols, seed);
  if (cols % 32 == 0) a.xq = quantize(quantizer, a.x);
  return a;
}

std::vector<const RuntimeKernels*> vector_builds() {
  std::vector<const RuntimeKernels*> builds;
  const std::pair<const char*, const RuntimeKernels*> candidates[] = {
      {"avx2", runtime::avx2_runtime_kernels()},
      {"avx512", runtime::avx512_runtime_kernels()},
      {"avx512 without VNNI", runtime::avx512_without_vnni_runtime_kernels()},
      {"neon", runtime::neon_runtime_kernels()}};
  for (const auto& [name, kernels] : candidates) {
    if (kernels != nullptr) {
      // Without VNNI, "avx512" already is the build without it.
      if (std::find(builds.begin(), builds.end(), kernels) == builds.end()) {
        builds.push_back(kernels);
      }
    } else {
      WARN("the " << name << " build is not available on this CPU: skipped");
    }
  }
  return builds;
}

// The weight types whose rows of `cols` elements exist (block types need multiples of 32, the
// K-quants of 256).
std::vector<io::GgmlType> types_for(int64_t cols) {
  std::vector<io::GgmlType> types;
  for (io::GgmlType type : kAllTypes) {
    const int64_t block = is_k_quant(type) ? 256 : is_quantized(type) ? 32 : 1;
    if (cols % block == 0) {
      types.push_back(type);
    }
  }
  return types;
}

// Checks `build` against the scalar build on one shape: matvec over all rows and over an inner
// range (rows outside it must stay untouched), and matmul for several token counts.
void check_twin(const RuntimeKernels& build, io::GgmlType type, int64_t rows, int64_t cols,
                const std::vector<int64_t>& token_counts) {
  const RuntimeKernels& scalar = runtime::scalar_runtime_kernels();
  CAPTURE(build.isa, type_name(type), rows, cols);
  const TestMatrix m = random_matrix(type, rows, cols, static_cast<uint32_t>(rows * 7919 + cols));
  const WeightMatrix w = m.view();
  const int64_t max_tokens = *std::max_element(token_counts.begin(), token_counts.end());
  const TestActivations a = random_tokens(scalar, max_tokens, cols, static_cast<uint32_t>(cols));
  const Q8ActivationBlock* xq = is_quantized(type) ? a.xq.data() : nullptr;
  const float* x = is_quantized(type) ? nullptr : a.x.data();

  // matvec, all rows
  std::vector<float> y_scalar(rows), y_build(rows);
  scalar.matvec(w, 0, rows, x, xq, y_scalar.data());
  build.matvec(w, 0, rows, x, xq, y_build.data());
  for (int64_t r = 0; r < rows; ++r) {
    const double bound = kTwinBounds * summation_bound(expected_output(m, r, a.x.data(), xq));
    CAPTURE(r, y_scalar[r], y_build[r], bound);
    REQUIRE(std::fabs(double{y_build[r]} - y_scalar[r]) <= bound);
  }

  // matvec over [1, rows - 1): a range that starts off a row group
  if (rows >= 3) {
    const float kUntouched = 12345.0f;
    std::vector<float> y_range(rows, kUntouched);
    build.matvec(w, 1, rows - 1, x, xq, y_range.data());
    REQUIRE(y_range.front() == kUntouched);
    REQUIRE(y_range.back() == kUntouched);
    // A row's value does not depend on where the range starts (rows keep their own accumulators).
    for (int64_t r = 1; r < rows - 1; ++r) REQUIRE(y_range[r] == y_build[r]);
  }

  // matmul into a wider output (y_stride > rows); token 0 equals matvec exactly
  const int64_t stride = rows + 3;
  for (int64_t n_tokens : token_counts) {
    CAPTURE(n_tokens);
    std::vector<float> z_scalar(n_tokens * stride, 0.0f), z_build(n_tokens * stride, 0.0f);
    scalar.matmul(w, 0, rows, x, xq, n_tokens, z_scalar.data(), stride);
    build.matmul(w, 0, rows, x, xq, n_tokens, z_build.data(), stride);
    for (int64_t t = 0; t < n_tokens; ++t) {
      const float* xt = a.x.data() + t * cols;
      const Q8ActivationBlock* xqt = xq != nullptr ? xq + t * (cols / 32) : nullptr;
      for (int64_t r = 0; r < rows; ++r) {
        const double bound = kTwinBounds * summation_bound(expected_output(m, r, xt, xqt));
        CAPTURE(t, r, z_scalar[t * stride + r], z_build[t * stride + r], bound);
        REQUIRE(std::fabs(double{z_build[t * stride + r]} - z_scalar[t * stride + r]) <= bound);
      }
      for (int64_t r = rows; r < stride; ++r) REQUIRE(z_build[t * stride + r] == 0.0f);
    }
    for (int64_t r = 0; r < rows; ++r) REQUIRE(z_build[r] == y_build[r]);
    // Every token equals matvec on that token exactly, whichever multi-token kernel (or
    // remainder path) computed it.
    for (int64_t t = 1; t < n_tokens; ++t) {
      const float* xt = x != nullptr ? x + t * cols : nullptr;
      const Q8ActivationBlock* xqt = xq != nullptr ? xq + t * (cols / 32) : nullptr;
      std::vector<float> y_token(rows);
      build.matvec(w, 0, rows, xt, xqt, y_token.data());
      for (int64_t r = 0; r < rows; ++r) {
        CAPTURE(t, r);
        REQUIRE(z_build[t * stride + r] == y_token[r]);
      }
    }
  }
}

}  // namespace

TEST_CASE("quantize_activations follows the Q8 formula", "[runtime][kernels]") {
  const RuntimeKernels& scalar = runtime::scalar_runtime_kernels();
  std::vector<float> x = random_activations(32 * 64, 1);
  std::fill(x.begin() + 64, x.begin() + 96, 0.0f);  // block 2: all zero
  x[100] = 1e30f;                                   // block 3: one huge value
  x[130] = -3.0f;                                   // block 4: the maximum is negative
  for (int j = 128; j < 160; ++j) x[j] = std::max(-2.0f, std::min(2.0f, x[j]));
  const std::vector<Q8ActivationBlock> xq = quantize(scalar, x);
  for (size_t b = 0; b < xq.size(); ++b) {
    CAPTURE(b);
    float amax = 0.0f;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[b * 32 + j]));
    REQUIRE(xq[b].d == amax / 127.0f);
    int32_t sum = 0;
    for (int j = 0; j < 32; ++j) {
      const double exact = xq[b].d != 0.0f ? x[b * 32 + j] / double{xq[b].d} : 0.0;
      CAPTURE(j, x[b * 32 + j], int{xq[b].qs[j]}, exact);
      REQUIRE(std::fabs(xq[b].qs[j] - exact) <= 0.5 + kQuantizeRoundingSlack);
      REQUIRE(std::abs(int{xq[b].qs[j]}) <= 127);
      sum += xq[b].qs[j];
    }
    REQUIRE(xq[b].sum == xq[b].d * static_cast<float>(sum));
  }
  REQUIRE(xq[2].d == 0.0f);
  REQUIRE(xq[2].sum == 0.0f);
  REQUIRE(xq[3].qs[100 - 96] == 127);
  REQUIRE(xq[4].qs[2] == -127);
  // n = 0 writes nothing
  Q8ActivationBlock untouched{};
  untouched.d = 7.0f;
  scalar.quantize_activations(x.data(), 0, &untouched);
  REQUIRE(untouched.d == 7.0f);
}

TEST_CASE("every build quantizes activations exactly as the scalar build", "[runtime][kernels]") {
  const RuntimeKernels& scalar = runtime::scalar_runtime_kernels();
  // The same formula in every build: max, one division, a multiply and round-half-to-even.
  std::vector<float> x = random_activations(32 * 257, 2);
  for (int j = 0; j < 32; ++j) x[32 + j] = 0.5f * (j - 16);  // exact halves: ties to even
  std::fill(x.begin() + 64, x.begin() + 96, 0.0f);
  const std::vector<Q8ActivationBlock> expected = quantize(scalar, x);
  for (const RuntimeKernels* build : vector_builds()) {
    CAPTURE(build->isa);
    const std::vector<Q8ActivationBlock> got = quantize(*build, x);
    for (size_t b = 0; b < got.size(); ++b) {
      CAPTURE(b);
      REQUIRE(got[b].d == expected[b].d);
      REQUIRE(got[b].sum == expected[b].sum);
      REQUIRE(std::memcmp(got[b].qs, expected[b].qs, 32) == 0);
    }
  }
}

TEST_CASE("scalar kernels match the block formulas", "[runtime][kernels]") {
  const RuntimeKernels& scalar = runtime::scalar_runtime_kernels();
  std::vector<int64_t> column_counts = {32, 64, 96, 160, 512, 1024};
  for (int64_t cols = 1; cols <= 40; ++cols) column_counts.push_back(cols);  // float types only
  for (int64_t cols : column_counts) {
    for (io::GgmlType type : types_for(cols)) {
      CAPTURE(type_name(type), cols);
      const int64_t rows = 5, n_tokens = 3;
      const TestMatrix m = random_matrix(type, rows, cols, static_cast<uint32_t>(cols + 11));
      const TestActivations a = random_tokens(scalar, n_tokens, cols, 3);
      const Q8ActivationBlock* xq = is_quantized(type) ? a.xq.data() : nullptr;
      const float* x = is_quantized(type) ? nullptr : a.x.data();
      std::vector<float> y(n_tokens * rows);
      scalar.matmul(m.view(), 0, rows, x, xq, n_tokens, y.data(), rows);
      std::vector<float> y0(rows);
      scalar.matvec(m.view(), 0, rows, x, xq, y0.data());
      for (int64_t t = 0; t < n_tokens; ++t) {
        const Q8ActivationBlock* xqt = xq != nullptr ? xq + t * (cols / 32) : nullptr;
        for (int64_t r = 0; r < rows; ++r) {
          const Expected e = expected_output(m, r, a.x.data() + t * cols, xqt);
          CAPTURE(t, r, y[t * rows + r], e.value, e.magnitude);
          REQUIRE(std::fabs(y[t * rows + r] - e.value) <= summation_bound(e));
        }
      }
      for (int64_t r = 0; r < rows; ++r) REQUIRE(y0[r] == y[r]);
    }
  }
}

TEST_CASE("a Q4_0 block decodes with the spec's nibble order", "[runtime][kernels]") {
  // One row, one block: q_j = j % 16 placed by the spec's layout, d = 1, and activations that are
  // 1 at a single element: the product picks out (q_j - 8) for that j, in every build.
  std::vector<uint8_t> block(18, 0);
  write_u16(block.data(), io::float_to_f16(1.0f));
  uint8_t q[32];
  for (int j = 0; j < 32; ++j) q[j] = static_cast<uint8_t>((j * 5 + 3) % 16);
  for (int j = 0; j < 16; ++j) block[2 + j] = static_cast<uint8_t>(q[j] | (q[j + 16] << 4));
  const WeightMatrix w{io::GgmlType::q4_0, 1, 32, block.data()};
  std::vector<const RuntimeKernels*> builds = vector_builds();
  builds.push_back(&runtime::scalar_runtime_kernels());
  for (const RuntimeKernels* build : builds) {
    for (int j = 0; j < 32; ++j) {
      CAPTURE(build->isa, j);
      Q8ActivationBlock x{};
      x.d = 1.0f;
      x.qs[j] = 1;
      x.sum = 1.0f;
      float y = 0.0f;
      build->matvec(w, 0, 1, nullptr, &x, &y);
      REQUIRE(y == static_cast<float>(q[j] - 8));
    }
  }
}

TEST_CASE("the block formulas written here decode as io's reference decoders",
          "[runtime][kernels]") {
  // io's decoders are checked bit for bit against an independent numpy reader
  // (test_kquants_reference.cpp); the formulas above, in double, must round to their values.
  for (io::GgmlType type : kIntegerTypes) {
    if (!is_checked_against_io(type)) continue;
    for (uint32_t seed : {1u, 2u, 3u}) {
      CAPTURE(type_name(type), seed);
      const TestMatrix m = random_matrix(type, 3, 512, seed);
      std::vector<float> decoded(static_cast<size_t>(m.rows * m.cols));
      io::dequantize_rows(type, m.bytes.data(), m.rows, m.cols, decoded.data());
      for (int64_t r = 0; r < m.rows; ++r) {
        std::vector<double> minimum;
        const std::vector<double> w = dequantize_row(m, r, &minimum);
        for (int64_t j = 0; j < m.cols; ++j) {
          CAPTURE(r, j, w[j], minimum[j]);
          REQUIRE(static_cast<float>(w[j] + minimum[j]) == decoded[r * m.cols + j]);
        }
      }
    }
  }
}

TEST_CASE("Q5 and K-quant elements sit where the layouts put them", "[runtime][kernels]") {
  // One row of random codes and scales with unit super-block scales (Q4_K/Q5_K dmin 0.5; a Q6_K
  // row with d = -1 as well), times activations that are 1 at a single element: every build must
  // return exactly the weight io's decoder gives that element (all values are small integers or
  // halves, exact in float).
  std::vector<const RuntimeKernels*> builds = vector_builds();
  builds.push_back(&runtime::scalar_runtime_kernels());
  for (io::GgmlType type : {io::GgmlType::q5_0, io::GgmlType::q5_1, io::GgmlType::q4_k,
                            io::GgmlType::q5_k, io::GgmlType::q6_k}) {
    for (float d : {1.0f, -1.0f}) {
      CAPTURE(type_name(type), d);
      const int64_t cols = 512;
      TestMatrix m = random_matrix(type, 1, cols, 21);
      if (type == io::GgmlType::q5_0 || type == io::GgmlType::q5_1) {
        const int64_t size = test_row_bytes(type, 32);
        for (int64_t b = 0; b < cols / 32; ++b) {
          write_u16(m.bytes.data() + b * size, io::float_to_f16(d));
          if (type == io::GgmlType::q5_1) {
            write_u16(m.bytes.data() + b * size + 2, io::float_to_f16(0.5f));
          }
        }
      } else {
        const int64_t size = test_row_bytes(type, 256);
        for (int64_t b = 0; b < cols / 256; ++b) {
          uint8_t* block = m.bytes.data() + b * size;
          if (type == io::GgmlType::q6_k) {
            write_u16(block + 208, io::float_to_f16(d));
          } else {
            write_u16(block, io::float_to_f16(d));
            write_u16(block + 2, io::float_to_f16(0.5f));
          }
        }
      }
      std::vector<float> decoded(cols);
      io::dequantize_rows(type, m.bytes.data(), 1, cols, decoded.data());
      std::vector<Q8ActivationBlock> x(cols / 32);
      for (int64_t j = 0; j < cols; ++j) {
        std::fill(x.begin(), x.end(), Q8ActivationBlock{});
        x[j / 32].d = 1.0f;
        x[j / 32].qs[j % 32] = 1;
        x[j / 32].sum = 1.0f;
        for (const RuntimeKernels* build : builds) {
          CAPTURE(build->isa, j);
          float y = 0.0f;
          build->matvec(m.view(), 0, 1, nullptr, x.data(), &y);
          REQUIRE(y == decoded[j]);
        }
      }
    }
  }
}

TEST_CASE("integer kernels equal the decoded rows' f32 dot up to the activations' rounding",
          "[runtime][kernels]") {
  // What the runtime computed before these types had integer kernels: the row decoded by io's
  // reference decoder, times the float activations x. The integer kernels multiply by x^ instead,
  // x^_j = qs_j d_b, where quantize_activations rounds x_j / d_b to qs_j: |x_j - x^_j| <= d_b (1/2
  // + kQuantizeRoundingSlack). So
  //   |kernel - sum_j w_j x_j| <= sum_b d_b (1/2 + slack) sum_{j in b} |w_j|     (quantization)
  //                               + summation_bound (the kernel's error against sum_j w_j x^_j)
  //                               + 2 u sum_j |w_j x_j|  (the decoded w_j are floats, rounded once
  //                                 from the exact formulas, and the reference's final rounding).
  // The first term is ~1% of sum_j |w_j x_j| for these activations (d_b = max|x| / 127), checked
  // below so that a wrong sub-block scale or a lost minimum (several % of the dot) fails.
  const RuntimeKernels& scalar = runtime::scalar_runtime_kernels();
  std::vector<const RuntimeKernels*> builds = vector_builds();
  builds.push_back(&scalar);
  for (io::GgmlType type : kIntegerTypes) {
    for (int64_t cols : {256, 1024}) {
      CAPTURE(type_name(type), cols);
      const int64_t rows = 9;
      const TestMatrix m = random_matrix(type, rows, cols, static_cast<uint32_t>(cols + 5));
      const TestActivations a = random_tokens(scalar, 1, cols, 17);
      std::vector<float> decoded(static_cast<size_t>(rows * cols));
      io::dequantize_rows(type, m.bytes.data(), rows, cols, decoded.data());
      for (const RuntimeKernels* build : builds) {
        std::vector<float> y(rows);
        build->matvec(m.view(), 0, rows, nullptr, a.xq.data(), y.data());
        for (int64_t r = 0; r < rows; ++r) {
          const float* w = decoded.data() + r * cols;
          double reference = 0, magnitude = 0, quantization = 0;
          for (int64_t j = 0; j < cols; ++j) {
            reference += double{w[j]} * a.x[j];
            magnitude += std::fabs(double{w[j]} * a.x[j]);
            quantization +=
                std::fabs(w[j]) * double{a.xq[j / 32].d} * (0.5 + kQuantizeRoundingSlack);
          }
          const double bound = quantization +
                               summation_bound(expected_output(m, r, a.x.data(), a.xq.data())) +
                               2 * kFloatRoundoff * magnitude;
          CAPTURE(build->isa, r, y[r], reference, bound, magnitude);
          REQUIRE(quantization < 0.02 * magnitude);
          REQUIRE(std::fabs(y[r] - reference) <= bound);
        }
      }
    }
  }
}

TEST_CASE("K-quant kernels at the extremes of their scales and codes", "[runtime][kernels]") {
  // Rows at the ends of every field: all bytes 0xFF (every code at its maximum, 6-bit scales and
  // minimums 63, Q6_K scales -1), all 0x00 (codes 0: Q6_K's q - 32 = -32), Q6_K scales -128 and
  // 127 with random codes, and random rows; super-block scales large, of both signs (a Q6_K d is
  // negative whenever its largest sub-block scale is positive). Activations at the ends too: all
  // qs 127, all -127, alternating, a zero block. Integer sums reach their largest magnitudes here
  // (a maddubs pair overflowing int16, or a lane overflowing its float conversion, would show).
  const RuntimeKernels& scalar = runtime::scalar_runtime_kernels();
  const int64_t cols = 768, rows = 7;
  for (io::GgmlType type : {io::GgmlType::q4_k, io::GgmlType::q5_k, io::GgmlType::q6_k}) {
    CAPTURE(type_name(type));
    TestMatrix m = random_matrix(type, rows, cols, 99);
    const int64_t size = test_row_bytes(type, 256);
    std::mt19937 rng(5);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t s = 0; s < cols / 256; ++s) {
        uint8_t* block = m.bytes.data() + r * test_row_bytes(type, cols) + s * size;
        if (r == 0) std::fill(block, block + size, uint8_t{0xFF});
        if (r == 1) std::fill(block, block + size, uint8_t{0x00});
        if (r == 2 || r == 3) {
          if (type == io::GgmlType::q6_k) {
            std::fill(block + 192, block + 208, static_cast<uint8_t>(r == 2 ? 0x80 : 0x7F));
          } else {
            std::fill(block + 4, block + 16, uint8_t{0xFF});  // every scale and minimum 63
          }
        }
        const float sign = (r + s) % 2 == 0 ? 1.0f : -1.0f;
        if (type == io::GgmlType::q6_k) {
          write_u16(block + 208, io::float_to_f16(sign * 0.75f));
        } else {
          write_u16(block, io::float_to_f16(sign * 0.5f));
          write_u16(block + 2, io::float_to_f16(-sign * 0.25f));
        }
      }
    }
    std::vector<Q8ActivationBlock> xq(3 * cols / 32);  // three tokens
    for (size_t b = 0; b < xq.size(); ++b) {
      int32_t sum = 0;
      xq[b].d = b % 7 == 3 ? 0.0f : 0.01f * static_cast<float>(b % 5 + 1);
      for (int j = 0; j < 32; ++j) {
        const int q = xq[b].d == 0.0f ? 0
                      : b % 3 == 0    ? 127
                      : b % 3 == 1    ? -127
                                      : (j % 2 == 0 ? 127 : -127);
        xq[b].qs[j] = static_cast<int8_t>(q);
        sum += q;
      }
      xq[b].sum = xq[b].d * static_cast<float>(sum);
    }
    std::vector<float> y_scalar(3 * rows);
    scalar.matmul(m.view(), 0, rows, nullptr, xq.data(), 3, y_scalar.data(), rows);
    for (int64_t t = 0; t < 3; ++t) {
      for (int64_t r = 0; r < rows; ++r) {
        const Expected e = expected_output(m, r, nullptr, xq.data() + t * (cols / 32));
        CAPTURE(t, r, y_scalar[t * rows + r], e.value);
        REQUIRE(std::fabs(y_scalar[t * rows + r] - e.value) <= summation_bound(e));
      }
    }
    for (const RuntimeKernels* build : vector_builds()) {
      std::vector<float> y(3 * rows);
      build->matmul(m.view(), 0, rows, nullptr, xq.data(), 3, y.data(), rows);
      for (int64_t t = 0; t < 3; ++t) {
        for (int64_t r = 0; r < rows; ++r) {
          const Expected e = expected_output(m, r, nullptr, xq.data() + t * (cols / 32));
          CAPTURE(build->isa, t, r, y[t * rows + r], y_scalar[t * rows + r]);
          REQUIRE(std::fabs(double{y[t * rows + r]} - y_scalar[t * rows + r]) <=
                  kTwinBounds * summation_bound(e));
        }
      }
      // matvec gives matmul's values bit for bit.
      for (int64_t t = 0; t < 3; ++t) {
        std::vector<float> y_token(rows);
        build->matvec(m.view(), 0, rows, nullptr, xq.data() + t * (cols / 32), y_token.data());
        for (int64_t r = 0; r < rows; ++r) REQUIRE(y_token[r] == y[t * rows + r]);
      }
    }
  }
}

TEST_CASE("vectorised builds match the scalar build", "[runtime][kernels]") {
  // Token counts around the AVX2 kernels' groups of 4 tokens in tiles of 8: 4 + 1, 4 + 2, 4 + 2 +
  // 1, whole tiles, whole tiles + 1.
  const std::vector<int64_t> token_counts = {1, 2, 3, 5, 6, 7, 16, 33};
  for (const RuntimeKernels* build : vector_builds()) {
    SECTION(std::string(build->isa) + ": every multiple of 32 up to 512, odd row counts") {
      for (int64_t cols = 32; cols <= 512; cols += 32) {
        for (int64_t rows : {1, 3, 5, 7, 13}) {
          for (io::GgmlType type : types_for(cols)) {
            check_twin(*build, type, rows, cols,
                       rows == 13 ? token_counts : std::vector<int64_t>{2});
          }
        }
      }
    }
    SECTION(std::string(build->isa) + ": float rows of every length up to 70 (vector tails)") {
      for (int64_t cols = 1; cols <= 70; ++cols) {
        for (io::GgmlType type : types_for(cols)) check_twin(*build, type, 6, cols, {1, 3});
      }
    }
    SECTION(std::string(build->isa) + ": wide rows") {
      for (int64_t cols : {640, 1024, 1056, 2048, 4096, 8192}) {
        for (io::GgmlType type : types_for(cols)) check_twin(*build, type, 7, cols, token_counts);
      }
    }
  }
}

TEST_CASE("the chosen kernels are one of the builds", "[runtime][kernels]") {
  const std::string isa = runtime::runtime_kernels().isa;
  const bool known =
      isa == "scalar" || isa == "avx2" || isa == "avx512" || isa == "avx512vnni" || isa == "neon";
  REQUIRE(known);
#if defined(__aarch64__)
  // NEON is part of every aarch64 CPU: the choice must not fall back to scalar there.
  if (std::getenv("EDGEDISTILL_ISA") == nullptr) REQUIRE(isa == "neon");
#endif
  const RuntimeKernels* avx512 = runtime::avx512_runtime_kernels();
  if (avx512 != nullptr) {
    REQUIRE(std::string(avx512->isa).rfind("avx512", 0) == 0);
  }
}

// ---- thread pool ----

TEST_CASE("parallel_for covers every index exactly once", "[runtime][thread_pool]") {
  for (int threads = 1; threads <= 4; ++threads) {
    runtime::ThreadPool pool(threads);
    REQUIRE(pool.size() == threads);
    for (int64_t n : {1, 2, 3, 4, 5, 7, 64, 100, 1000}) {
      for (int64_t grain : {1, 3, 4, 16, 2000}) {
        CAPTURE(threads, n, grain);
        std::vector<std::atomic<int>> hits(n);
        std::mutex mutex;
        std::vector<std::pair<int64_t, int64_t>> chunks;
        for (int call = 0; call < 20; ++call) {
          chunks.clear();
          pool.parallel_for(n, grain, [&](int64_t begin, int64_t end) {
            for (int64_t i = begin; i < end; ++i) hits[i].fetch_add(1);
            std::lock_guard<std::mutex> lock(mutex);
            chunks.emplace_back(begin, end);
          });
        }
        for (int64_t i = 0; i < n; ++i) REQUIRE(hits[i].load() == 20);
        // The last call's chunks: at most one per thread, none empty, starting on multiples of
        // grain, contiguous from 0 to n.
        REQUIRE(static_cast<int64_t>(chunks.size()) <= threads);
        std::sort(chunks.begin(), chunks.end());
        int64_t next = 0;
        for (const auto& [begin, end] : chunks) {
          REQUIRE(begin == next);
          REQUIRE(begin % grain == 0);
          REQUIRE(end > begin);
          next = end;
        }
        REQUIRE(next == n);
        if (grain >= n) REQUIRE(chunks.size() == 1);
      }
    }
  }
}

TEST_CASE("parallel_for uses every thread when there is enough work", "[runtime][thread_pool]") {
  runtime::ThreadPool pool(3);
  std::atomic<int> calls{0};
  pool.parallel_for(3 * 8, 8, [&](int64_t begin, int64_t end) {
    REQUIRE(end - begin == 8);
    calls.fetch_add(1);
  });
  REQUIRE(calls.load() == 3);
}

TEST_CASE("parallel_for with n = 0 calls nothing", "[runtime][thread_pool]") {
  for (int threads : {1, 3}) {
    runtime::ThreadPool pool(threads);
    int calls = 0;
    pool.parallel_for(0, 4, [&](int64_t, int64_t) { ++calls; });
    REQUIRE(calls == 0);
  }
}

TEST_CASE("parallel_for survives many short calls and idle sleeps", "[runtime][thread_pool]") {
  runtime::ThreadPool pool(4);
  std::atomic<int64_t> total{0};
  for (int call = 0; call < 5000; ++call) {
    const int64_t n = call % 9;  // 0..8: often fewer chunks than threads
    pool.parallel_for(n, 1, [&](int64_t begin, int64_t end) { total.fetch_add(end - begin); });
    if (call % 1000 == 999) {
      // Long enough that the workers stop spinning and sleep.
      const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(5);
      while (std::chrono::steady_clock::now() < until) {
      }
    }
  }
  int64_t expected = 0;
  for (int call = 0; call < 5000; ++call) expected += call % 9;
  REQUIRE(total.load() == expected);
}

TEST_CASE("an exception in a chunk reaches the caller after every chunk ends",
          "[runtime][thread_pool]") {
  runtime::ThreadPool pool(3);
  std::atomic<int> finished{0};
  REQUIRE_THROWS_AS(pool.parallel_for(3, 1,
                                      [&](int64_t begin, int64_t) {
                                        if (begin == 2) throw std::runtime_error("chunk 2");
                                        finished.fetch_add(1);
                                      }),
                    std::runtime_error);
  REQUIRE(finished.load() == 2);
  // The pool is usable afterwards.
  std::atomic<int> calls{0};
  pool.parallel_for(3, 1, [&](int64_t, int64_t) { calls.fetch_add(1); });
  REQUIRE(calls.load() == 3);
}

// ---- linear ----

TEST_CASE("linear equals the kernel on one thread, for any thread count", "[runtime][linear]") {
  const RuntimeKernels& kernels = runtime::runtime_kernels();
  runtime::ThreadPool one(1), three(3);
  for (const auto& [cols, type] :
       std::vector<std::pair<int64_t, io::GgmlType>>{{96, io::GgmlType::f32},
                                                     {96, io::GgmlType::f16},
                                                     {96, io::GgmlType::q8_0},
                                                     {96, io::GgmlType::q4_0},
                                                     {96, io::GgmlType::q4_1},
                                                     {96, io::GgmlType::q5_0},
                                                     {96, io::GgmlType::q5_1},
                                                     {256, io::GgmlType::q4_k},
                                                     {256, io::GgmlType::q5_k},
                                                     {512, io::GgmlType::q6_k}}) {
    for (int64_t n_tokens : {1, 2, 5}) {
      const int64_t rows = 75;
      CAPTURE(type_name(type), n_tokens);
      const TestMatrix m = random_matrix(type, rows, cols, 5);
      const std::vector<float> x = random_activations(n_tokens * cols, 6);
      // The reference: quantize (for block types) and run the kernel over all rows at once.
      std::vector<Q8ActivationBlock> xq;
      if (is_quantized(type)) xq = quantize(kernels, x);
      std::vector<float> expected(n_tokens * rows);
      if (n_tokens == 1) {
        kernels.matvec(m.view(), 0, rows, x.data(), xq.empty() ? nullptr : xq.data(),
                       expected.data());
      } else {
        kernels.matmul(m.view(), 0, rows, x.data(), xq.empty() ? nullptr : xq.data(), n_tokens,
                       expected.data(), rows);
      }
      runtime::ActivationScratch scratch;
      for (runtime::ThreadPool* pool : {&one, &three}) {
        CAPTURE(pool->size());
        std::vector<float> y(n_tokens * rows, -1.0f);
        runtime::linear(*pool, kernels, m.view(), x.data(), n_tokens, y.data(), scratch);
        // Bit-identical: each row is computed by the same instructions wherever the split falls.
        REQUIRE(y == expected);
      }
    }
  }
}

TEST_CASE("linear's scratch grows only when too small", "[runtime][linear]") {
  const RuntimeKernels& kernels = runtime::runtime_kernels();
  runtime::ThreadPool pool(2);
  const TestMatrix m = random_matrix(io::GgmlType::q4_0, 8, 64, 9);
  const std::vector<float> x = random_activations(4 * 64, 10);
  std::vector<float> y(4 * 8);
  runtime::ActivationScratch scratch;
  runtime::linear(pool, kernels, m.view(), x.data(), 4, y.data(), scratch);
  REQUIRE(scratch.size() == 4 * 2);
  const Q8ActivationBlock* data = scratch.data();
  runtime::linear(pool, kernels, m.view(), x.data(), 1, y.data(), scratch);
  REQUIRE(scratch.size() == 4 * 2);
  REQUIRE(scratch.data() == data);
}
