// exp(x) for float32 in branch-free code that compilers vectorise (a call to std::exp in a loop
// stops vectorisation without -ffast-math). Used by fused kernels (SiLU, softmax).
//
// Method: Cody-Waite range reduction x = n ln2 + r with |r| <= ln2/2, then the degree-7 Taylor
// polynomial of exp(r), then scaling by 2^n through the exponent bits. The Taylor remainder is
// r^8/8! < 5.2e-9 relative on |r| <= 0.3466, so the result is within a few float32 roundings of
// exp(x): tests/test_core.cpp checks a relative error below kFastExpRelativeError over
// [-87, 88]. Inputs below -87.3 return about 1e-38 instead of denormals or 0, inputs above 88.3
// return about 2.2e38 instead of inf; NaN stays NaN.
//
// GCC vectorises a loop calling this only when the file is compiled with -fno-trapping-math (it
// will not if-convert the float selects otherwise); see src/model/CMakeLists.txt.
#pragma once

#include <cstdint>
#include <cstring>

namespace edgedistill::core {

// A few float32 roundings (float epsilon 1.19e-7) plus the polynomial's 5.2e-9.
inline constexpr float kFastExpRelativeError = 4e-7f;

// `static`: every file gets its own copy, compiled with that file's instruction set. An `inline`
// function would be merged across files by the linker, and a copy compiled for AVX2 could end up
// called from code meant for CPUs without it.
static inline float fast_exp(float x) {
  constexpr float kLog2e = 1.44269504088896341f;
  // ln2 split into a high part with few mantissa bits (exact products n * kLn2High) and the rest.
  constexpr float kLn2High = 0.693359375f;
  constexpr float kLn2Low = -2.12194440e-4f;
  // Adding 1.5 * 2^23 rounds a float of magnitude < 2^22 to an integer held in the low mantissa
  // bits: round(x log2e) without a conversion instruction, so the loop stays vectorisable.
  constexpr float kRoundingShift = 12582912.0f;
  // The clamps keep a NaN input (the comparisons are false), and a NaN then flows through every
  // step below to the result.
  float clamped = x < -87.3f ? -87.3f : x;      // x NaN: false, x kept
  clamped = clamped > 88.3f ? 88.3f : clamped;  // keeps 2^n normal and finite
  const float shifted = clamped * kLog2e + kRoundingShift;
  const float nf = shifted - kRoundingShift;  // n = round(x / ln2), in [-126, 127]
  int32_t n_bits;
  std::memcpy(&n_bits, &shifted, sizeof(n_bits));
  const int32_t n = n_bits - 0x4B400000;                     // the bits of kRoundingShift
  const float r = (clamped - nf * kLn2High) - nf * kLn2Low;  // |r| <= ln2 / 2
  // exp(r) = 1 + r + r^2/2! + ... + r^7/7!, in Horner form.
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  // 2^n as a float: the biased exponent n + 127 in bits 23..30.
  const int32_t scale_bits = (n + 127) << 23;
  float scale;
  std::memcpy(&scale, &scale_bits, sizeof(scale));
  return p * scale;
}

}  // namespace edgedistill::core
