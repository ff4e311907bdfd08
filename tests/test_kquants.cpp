// The K-quant block types: scale packing, our quantizers' error against the simpler types and
// with importances, and the layouts against an independent numpy reader
// (tests/python/kquants_reference.py; the Python cases run where /usr/bin/python3 is the host's).

#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "io/gguf_kquants.h"
#include "io/gguf_quants.h"
#include "random_values.h"
#include "test_util.h"

using namespace edgedistill;
using io::GgmlType;
using test::unit_normal;

namespace {

double weighted_squared_error(const std::vector<float>& x, const std::vector<float>& y,
                              const std::vector<float>& w) {
  double sum = 0;
  for (size_t i = 0; i < x.size(); ++i) sum += w[i] * (double(x[i]) - y[i]) * (double(x[i]) - y[i]);
  return sum;
}

std::vector<float> round_trip(GgmlType type, const std::vector<float>& x, int64_t rows,
                              int64_t cols) {
  const auto bytes = io::quantize_rows(type, x.data(), rows, cols);
  std::vector<float> y(x.size());
  io::dequantize_rows(type, bytes.data(), rows, cols, y.data());
  return y;
}

double rmse(const std::vector<float>& x, const std::vector<float>& y) {
  return std::sqrt(weighted_squared_error(x, y, std::vector<float>(x.size(), 1.0f)) /
                   static_cast<double>(x.size()));
}

}  // namespace

TEST_CASE("K-quant scales and minimums pack into 12 bytes and back") {
  // A hand-worked case: sub-block 4 with scale 63 and minimum 42 puts 63 & 15 | (42 & 15) << 4
  // = 0xAF in byte 8, and the high bits 63 >> 4 = 3 and 42 >> 4 = 2 in bits 6-7 of bytes 0 and 4.
  int scales[8] = {0, 0, 0, 0, 63, 0, 0, 0};
  int mins[8] = {0, 0, 0, 0, 42, 0, 0, 0};
  uint8_t packed[12];
  io::pack_k_scales_mins(scales, mins, packed);
  CHECK(packed[8] == 0xAF);
  CHECK(packed[0] == 0xC0);
  CHECK(packed[4] == 0x80);
  for (int j : {1, 2, 3, 5, 6, 7, 9, 10, 11}) CHECK(packed[j] == 0);

  // Every 6-bit value in every position, beside random neighbours, comes back.
  core::Rng rng(7);
  for (int position = 0; position < 8; ++position) {
    for (int value = 0; value < 64; ++value) {
      for (int j = 0; j < 8; ++j) {
        scales[j] = static_cast<int>(rng.uniform() * 64);
        mins[j] = static_cast<int>(rng.uniform() * 64);
      }
      scales[position] = value;
      mins[position] = 63 - value;
      io::pack_k_scales_mins(scales, mins, packed);
      for (int j = 0; j < 8; ++j) {
        int scale, min;
        io::unpack_k_scale_min(packed, j, &scale, &min);
        REQUIRE(scale == scales[j]);
        REQUIRE(min == mins[j]);
      }
    }
  }
}

TEST_CASE("K-quants are more accurate than the 32-block types of the same or fewer bits") {
  constexpr int64_t kRows = 32, kCols = 512;
  const auto x = unit_normal(kRows * kCols, 31);
  auto error = [&](GgmlType type) { return rmse(x, round_trip(type, x, kRows, kCols)); };
  const double q4_0 = error(GgmlType::q4_0), q4_1 = error(GgmlType::q4_1);
  const double q4_k = error(GgmlType::q4_k), q5_k = error(GgmlType::q5_k);
  const double q6_k = error(GgmlType::q6_k), q8_0 = error(GgmlType::q8_0);
  INFO("RMSE q4_0 " << q4_0 << " q4_1 " << q4_1 << " q4_k " << q4_k << " q5_k " << q5_k << " q6_k "
                    << q6_k << " q8_0 " << q8_0);
  // Q4_K (4.5 bits per weight) against Q4_0 (4.5) and Q4_1 (5.0); each extra bit about halves
  // the error (q5_k: 5.5 bits, q6_k: 6.56), and Q8_0 (8.5 bits) stays ahead of them all.
  CHECK(q4_k < q4_0);
  CHECK(q4_k < q4_1);
  CHECK(q5_k < 0.6 * q4_k);
  CHECK(q6_k < 0.6 * q5_k);
  CHECK(q8_0 < q6_k);
  // The 5-bit 32-blocks (llama.cpp's fallbacks for Q4_K and Q5_K rows that are not whole
  // super-blocks) halve their 4-bit twins' error with one more bit.
  const double q5_0 = error(GgmlType::q5_0), q5_1 = error(GgmlType::q5_1);
  CHECK(q5_0 < 0.6 * q4_0);
  CHECK(q5_1 < 0.6 * q4_1);
  // A unit normal on a uniform 16-level grid over +-2.5 sigma has RMSE ~ (5 / 15) / sqrt(12) =
  // 0.096; sub-block scales fitted to 32 values do better.
  CHECK(q4_k < 0.096);
}

TEST_CASE("importances steer the K-quant search to the weighted error") {
  constexpr int64_t kCols = 1024;
  const auto x = unit_normal(kCols, 5);
  // Heavy-tailed importances, as activation statistics are: a few columns matter most.
  const auto z = unit_normal(kCols, 6);
  std::vector<float> w(kCols);
  for (int64_t i = 0; i < kCols; ++i) w[static_cast<size_t>(i)] = std::exp(2.0f * z[i]);
  auto decoded = [&](auto quantize, auto dequantize, auto block, const float* importance) {
    std::vector<decltype(block)> blocks(kCols / io::kSuperBlock);
    quantize(x.data(), kCols, blocks.data(), importance);
    std::vector<float> y(kCols);
    dequantize(blocks.data(), kCols, y.data());
    return y;
  };
  const auto plain4 =
      decoded(io::quantize_row_q4_k, io::dequantize_row_q4_k, io::Q4KBlock{}, nullptr);
  const auto weighted4 =
      decoded(io::quantize_row_q4_k, io::dequantize_row_q4_k, io::Q4KBlock{}, w.data());
  CHECK(weighted_squared_error(x, weighted4, w) < 0.9 * weighted_squared_error(x, plain4, w));
  const auto plain5 =
      decoded(io::quantize_row_q5_k, io::dequantize_row_q5_k, io::Q5KBlock{}, nullptr);
  const auto weighted5 =
      decoded(io::quantize_row_q5_k, io::dequantize_row_q5_k, io::Q5KBlock{}, w.data());
  CHECK(weighted_squared_error(x, weighted5, w) < 0.9 * weighted_squared_error(x, plain5, w));
  const auto plain6 =
      decoded(io::quantize_row_q6_k, io::dequantize_row_q6_k, io::Q6KBlock{}, nullptr);
  const auto weighted6 =
      decoded(io::quantize_row_q6_k, io::dequantize_row_q6_k, io::Q6KBlock{}, w.data());
  CHECK(weighted_squared_error(x, weighted6, w) < 0.95 * weighted_squared_error(x, plain6, w));
  // Equal importances are no importances.
  const std::vector<float> ones(kCols, 1.0f);
  CHECK(decoded(io::quantize_row_q4_k, io::dequantize_row_q4_k, io::Q4KBlock{}, ones.data()) ==
        plain4);
}

TEST_CASE("the affine sub-block fit is the least-squares optimum on its grid") {
  // Values exactly on a grid scale * q - min with q in [0, 15] come back exactly.
  std::vector<float> x(32), w(32, 1.0f);
  for (int i = 0; i < 32; ++i) x[i] = 0.25f * static_cast<float>(i % 16) - 1.5f;
  const io::AffineFit fit = io::fit_affine_codes(x.data(), w.data(), 32, 15);
  CHECK(fit.scale == Approx(0.25f));
  CHECK(fit.min == Approx(1.5f));
  // All positive values: the minimum stays at 0 (it is stored unsigned) and the grid starts at 0.
  for (int i = 0; i < 32; ++i) x[i] = 1.0f + 0.1f * static_cast<float>(i % 8);
  const io::AffineFit positive = io::fit_affine_codes(x.data(), w.data(), 32, 15);
  CHECK(positive.min == 0.0f);
  CHECK(positive.scale > 0.0f);
  // Zeros give a zero grid.
  std::fill(x.begin(), x.end(), 0.0f);
  CHECK(io::fit_affine_codes(x.data(), w.data(), 32, 15).scale == 0.0f);
  CHECK(io::fit_symmetric_codes(x.data(), w.data(), 16, 31) == 0.0f);
  // Symmetric: values on scale * q, q in [-32, 31], come back exactly.
  for (int i = 0; i < 16; ++i) x[i] = 0.5f * static_cast<float>(i * 4 - 32);
  CHECK(std::fabs(io::fit_symmetric_codes(x.data(), w.data(), 16, 31)) == Approx(0.5f));
}

TEST_CASE("Q8_K holds d = max|x| / 127, rounded codes and their sums per 16") {
  const auto x = unit_normal(512, 9);
  std::vector<io::Q8KBlock> blocks(2);
  io::quantize_row_q8_k(x.data(), 512, blocks.data());
  for (int b = 0; b < 2; ++b) {
    float amax = 0;
    for (int j = 0; j < 256; ++j) amax = std::max(amax, std::fabs(x[b * 256 + j]));
    CHECK(blocks[b].d == amax / 127.0f);
    for (int i = 0; i < 16; ++i) {
      int sum = 0;
      for (int j = 0; j < 16; ++j) sum += blocks[b].qs[16 * i + j];
      CHECK(blocks[b].bsums[i] == sum);
    }
    for (int j = 0; j < 256; ++j) {
      REQUIRE(std::fabs(blocks[b].d * blocks[b].qs[j] - x[b * 256 + j]) <= 0.5001 * blocks[b].d);
    }
  }
}

TEST_CASE("K-quant rows must be whole super-blocks and finite") {
  std::vector<float> x(256, 1.0f);
  std::vector<io::Q4KBlock> q4(1);
  CHECK_THROWS_AS(io::quantize_row_q4_k(x.data(), 128, q4.data()), InternalError);
  x[3] = std::nanf("");
  CHECK_THROWS_AS(io::quantize_row_q4_k(x.data(), 256, q4.data()), InternalError);
}
