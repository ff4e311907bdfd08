// The reference (round-to-nearest) quantizers and the dequantizers of the GGUF block types, as
// docs/quantization.md states them (llama.cpp's own reference formulas):
//   Q8_0: d = max|x| / 127, q = round(x / d)
//   Q4_0: m = the element with the largest |x| (sign kept), d = m / -8, q = min(15, trunc(x / d
//   + 8.5)) Q4_1: d = (max - min) / 15, m = min, q = min(15, trunc((x - min) / d + 0.5))
// d and m are rounded to f16 when stored; the codes are computed from the unrounded d, as the
// reference does. These are the baseline (RTN) and the specification the runtime's kernels and
// the GPTQ/AWQ packers are tested against.
#pragma once

#include <cstdint>
#include <vector>

#include "io/gguf_types.h"

namespace edgedistill::io {

// A block's quantization grid, as the reference quantizer derives it from the block's 32 values.
// Codes are measured with `inverse` (1 / the unrounded scale) and from `min` (Q4_1), as the
// reference does; values are decoded from the f16 `d` and `m`, as the dequantizer does. GPTQ
// quantizes weights it has updated on a grid fixed earlier, so the three steps are separate.
struct BlockGrid {
  uint16_t d = 0;        // the scale as stored (f16 bits)
  uint16_t m = 0;        // Q4_1: the minimum as stored (f16 bits); else 0
  float inverse = 0.0f;  // 1 / unrounded scale; 0 when the scale is 0
  float min = 0.0f;      // Q4_1: the unrounded minimum
};

// Q5_0 and Q5_1 as Q4_0 and Q4_1 with 32 codes: Q5_0 d = max / -16, q = min(31, trunc(x / d +
// 16.5)); Q5_1 d = (max - min) / 31, q = min(31, trunc((x - min) / d + 0.5)).
//
// The grid of the 32 values at x (q8_0, q4_0, q4_1, q5_0, q5_1).
BlockGrid block_grid(GgmlType type, const float* x);
// The code the reference gives x on `grid`, clamped to the type's codes (Q8_0 [-128, 127], Q4_0
// and Q4_1 [0, 15], Q5_0 and Q5_1 [0, 31]); x must be finite. On the block's own values this is the
// reference code.
int grid_code(GgmlType type, const BlockGrid& grid, float x);
// The value the dequantizer decodes `code` to, bit for bit.
float grid_value(GgmlType type, const BlockGrid& grid, int code);
// 32 codes and their grid -> one block's bytes (ggml_type_traits(type).block_bytes of them).
void pack_block(GgmlType type, const BlockGrid& grid, const int* codes, uint8_t* out);

// x [n] -> n / 32 blocks; n must be a multiple of 32 (checked).
void quantize_row_q8_0(const float* x, int64_t n, Q8_0Block* out);
void quantize_row_q4_0(const float* x, int64_t n, Q4_0Block* out);
void quantize_row_q4_1(const float* x, int64_t n, Q4_1Block* out);
void quantize_row_q5_0(const float* x, int64_t n, Q5_0Block* out);
void quantize_row_q5_1(const float* x, int64_t n, Q5_1Block* out);

// n elements back to float.
void dequantize_row_q8_0(const Q8_0Block* in, int64_t n, float* y);
void dequantize_row_q4_0(const Q4_0Block* in, int64_t n, float* y);
void dequantize_row_q4_1(const Q4_1Block* in, int64_t n, float* y);
void dequantize_row_q5_0(const Q5_0Block* in, int64_t n, float* y);
void dequantize_row_q5_1(const Q5_1Block* in, int64_t n, float* y);

// How one row of `cols` elements of a type becomes floats. Every type the reader knows has one
// (row_dequantizer's table is the one place to add a block type); dequantize_rows and model
// import go through it.
using RowDequantizer = void (*)(const uint8_t* row, int64_t cols, float* y);
RowDequantizer row_dequantizer(GgmlType type);

// Any type (F32, F16 included): `rows` rows of `cols` floats -> the type's bytes, rows back to
// back (ggml_row_bytes(type, cols) each), and back. `importance` ([cols] column weights, or null)
// weights the K-quants' scale search (io/gguf_kquants.h); the other types round without it.
std::vector<uint8_t> quantize_rows(GgmlType type, const float* x, int64_t rows, int64_t cols,
                                   const float* importance = nullptr);
void dequantize_rows(GgmlType type, const uint8_t* data, int64_t rows, int64_t cols, float* y);

}  // namespace edgedistill::io
