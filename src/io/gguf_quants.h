// The reference (round-to-nearest) quantizers and the dequantizers of the GGUF block types, as
// ../shared/specs/gguf.md states them (llama.cpp's own reference formulas):
//   Q8_0: d = max|x| / 127, q = round(x / d)
//   Q4_0: m = the element with the largest |x| (sign kept), d = m / -8, q = min(15, trunc(x / d + 8.5))
//   Q4_1: d = (max - min) / 15, m = min, q = min(15, trunc((x - min) / d + 0.5))
// d and m are rounded to f16 when stored; the codes are computed from the unrounded d, as the
// reference does. These are the baseline (RTN) and the specification the runtime's kernels and
// the GPTQ/AWQ packers are tested against.
#pragma once

#include <cstdint>
#include <vector>

#include "io/gguf_types.h"

namespace edgedistill::io {

// x [n] -> n / 32 blocks; n must be a multiple of 32 (checked).
void quantize_row_q8_0(const float* x, int64_t n, Q8_0Block* out);
void quantize_row_q4_0(const float* x, int64_t n, Q4_0Block* out);
void quantize_row_q4_1(const float* x, int64_t n, Q4_1Block* out);

// n elements back to float.
void dequantize_row_q8_0(const Q8_0Block* in, int64_t n, float* y);
void dequantize_row_q4_0(const Q4_0Block* in, int64_t n, float* y);
void dequantize_row_q4_1(const Q4_1Block* in, int64_t n, float* y);

// Any type (F32, F16 included): `rows` rows of `cols` floats -> the type's bytes, rows back to
// back (ggml_row_bytes(type, cols) each), and back.
std::vector<uint8_t> quantize_rows(GgmlType type, const float* x, int64_t rows, int64_t cols);
void dequantize_rows(GgmlType type, const uint8_t* data, int64_t rows, int64_t cols, float* y);

}  // namespace edgedistill::io
