// Scalar conversions between float (IEEE 754 binary32) and the two 16-bit float formats stored in
// checkpoints and GGUF files:
// - f16: IEEE 754 binary16 (1 sign, 5 exponent bits with bias 15, 10 mantissa bits);
// - bf16: bfloat16, the top half of a binary32 (1 sign, 8 exponent bits, 7 mantissa bits).
// Narrowing rounds to nearest, ties to even, as IEEE 754 and the F16C / Arm FCVT instructions do;
// these plain integer versions are the reference that any vectorised conversion is tested against.
#pragma once

#include <cstdint>
#include <cstring>

namespace edgedistill::io {

namespace half_detail {

inline uint32_t float_bits(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  return bits;
}

inline float bits_float(uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}

// binary32 bit patterns of |x| (sign bit cleared) at the f16 range boundaries.
constexpr uint32_t kF32ExponentMask = 0x7F800000;    // infinity; above it NaN
constexpr uint32_t kF16OverflowFrom = 0x477FF000;    // 65520: halfway from 65504 (max f16) to 2^16
constexpr uint32_t kF16SmallestNormal = 0x38800000;  // 2^-14
constexpr uint32_t kF16UnderflowTo = 0x33000000;     // 2^-25: half the smallest subnormal 2^-24

// Bits of binary32's 23-bit mantissa below f16's 10.
constexpr int kMantissaShift = 13;
// (15 - 127) << 23 modulo 2^32: moves a binary32 exponent to the f16 bias.
constexpr uint32_t kRebiasF32ToF16 = 0xC8000000;

}  // namespace half_detail

// Rounds to the nearest f16, ties to even. |x| >= 65520 gives infinity; NaN gives a quiet NaN with
// the sign and the top of the payload kept (as F16C does).
inline uint16_t float_to_f16(float value) {
  using namespace half_detail;
  const uint32_t bits = float_bits(value);
  const uint32_t sign = (bits >> 16) & 0x8000;
  const uint32_t magnitude = bits & 0x7FFFFFFF;

  if (magnitude > kF32ExponentMask) {  // NaN: set the quiet bit so a payload can't become inf
    return static_cast<uint16_t>(sign | 0x7E00 | ((magnitude >> kMantissaShift) & 0x03FF));
  }
  if (magnitude >= kF16OverflowFrom) {  // rounds past 65504 (or was inf)
    return static_cast<uint16_t>(sign | 0x7C00);
  }
  if (magnitude >= kF16SmallestNormal) {
    // Rebias the exponent and round the mantissa in one addition: adding 0xFFF plus the lowest
    // kept bit rounds half to even, and a mantissa carry correctly bumps the exponent.
    const uint32_t lowest_kept_bit = (magnitude >> kMantissaShift) & 1;
    return static_cast<uint16_t>(
        sign | ((magnitude + kRebiasF32ToF16 + 0x0FFF + lowest_kept_bit) >> kMantissaShift));
  }
  if (magnitude <= kF16UnderflowTo) {  // at most half of 2^-24: ties to even give 0
    return static_cast<uint16_t>(sign);
  }

  // Subnormal result: the value in units of 2^-24, rounded half to even. With the implicit bit
  // the significand is m * 2^(e - 150), so in units of 2^-24 it is m >> (126 - e); e is in
  // [102, 112] here, so the shift is in [14, 24].
  const uint32_t exponent = magnitude >> 23;
  const uint32_t significand = (magnitude & 0x007FFFFF) | 0x00800000;
  const uint32_t shift = 126 - exponent;
  uint32_t units = significand >> shift;
  const uint32_t remainder = significand & ((1u << shift) - 1);
  const uint32_t half = 1u << (shift - 1);
  if (remainder > half || (remainder == half && (units & 1))) ++units;  // may reach 0x400: 2^-14
  return static_cast<uint16_t>(sign | units);
}

// Exact: every f16 value is a float. NaN payloads are kept bit for bit.
inline float f16_to_float(uint16_t half) {
  using namespace half_detail;
  const uint32_t sign = static_cast<uint32_t>(half & 0x8000) << 16;
  const uint32_t exponent = (half >> 10) & 0x1F;
  uint32_t mantissa = half & 0x03FF;
  if (exponent == 0x1F) return bits_float(sign | kF32ExponentMask | (mantissa << kMantissaShift));
  if (exponent != 0) {
    return bits_float(sign | ((exponent + 112) << 23) | (mantissa << kMantissaShift));
  }
  if (mantissa == 0) return bits_float(sign);  // +-0
  // Subnormal mantissa * 2^-24: shift the leading one into the implicit bit's place; the f32
  // exponent starts at that of 2^-14 (127 - 14) and drops by one per shift.
  uint32_t f32_exponent = 127 - 14;
  while ((mantissa & 0x0400) == 0) {
    mantissa <<= 1;
    --f32_exponent;
  }
  return bits_float(sign | (f32_exponent << 23) | ((mantissa & 0x03FF) << kMantissaShift));
}

// Rounds to the nearest bf16, ties to even; values beyond the largest bf16 round to infinity as
// IEEE rounding says. NaN gives a quiet NaN with the sign and the top of the payload kept.
inline uint16_t float_to_bf16(float value) {
  using namespace half_detail;
  const uint32_t bits = float_bits(value);
  if ((bits & 0x7FFFFFFF) > kF32ExponentMask) {
    return static_cast<uint16_t>((bits >> 16) | 0x0040);  // 0x0040: bf16's quiet bit
  }
  const uint32_t lowest_kept_bit = (bits >> 16) & 1;
  return static_cast<uint16_t>((bits + 0x7FFF + lowest_kept_bit) >> 16);
}

// Exact: a bf16 is the top half of a float.
inline float bf16_to_float(uint16_t bf16) {
  return half_detail::bits_float(static_cast<uint32_t>(bf16) << 16);
}

}  // namespace edgedistill::io
