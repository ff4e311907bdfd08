// The K-quant block types (Q4_K, Q5_K, Q6_K, Q8_K; layouts in io/gguf_types.h): their
// dequantizers, which must decode exactly what llama.cpp decodes, and our quantizers, which
// choose each super-block's scales by a weighted least-squares search (docs/quantization.md,
// "K-quants").
//
// A quantizer may take per-element importances (an importance matrix's column means for the
// row's columns): the search then minimises sum_i w_i (x_i - decoded_i)^2 with w_i the importance,
// instead of plain squared error. Rows must be whole super-blocks of 256 (checked); values must be
// finite (checked).
#pragma once

#include <cstdint>

#include "io/gguf_types.h"

namespace edgedistill::io {

// Q4_K/Q5_K's 6-bit scale and minimum of sub-block j (0..7), from the 12 packed bytes: for j < 4
// the low 6 bits of bytes j and j + 4; for j >= 4 the nibbles of byte j + 4 (low: scale, high:
// minimum) topped by the high 2 bits of bytes j - 4 (scale) and j (minimum).
void unpack_k_scale_min(const uint8_t* packed, int j, int* scale, int* min);
// The inverse: eight 6-bit scales and minimums (each 0..63) -> 12 bytes.
void pack_k_scales_mins(const int* scales, const int* mins, uint8_t* packed);

void dequantize_row_q4_k(const Q4KBlock* in, int64_t n, float* y);
void dequantize_row_q5_k(const Q5KBlock* in, int64_t n, float* y);
void dequantize_row_q6_k(const Q6KBlock* in, int64_t n, float* y);
void dequantize_row_q8_k(const Q8KBlock* in, int64_t n, float* y);

// x [n] -> n / 256 blocks. `importance` [n] (>= 0) or null for equal weights.
void quantize_row_q4_k(const float* x, int64_t n, Q4KBlock* out, const float* importance = nullptr);
void quantize_row_q5_k(const float* x, int64_t n, Q5KBlock* out, const float* importance = nullptr);
void quantize_row_q6_k(const float* x, int64_t n, Q6KBlock* out, const float* importance = nullptr);
// Q8_K: d = max|x| / 127 (f32), codes rounded to nearest, bsums filled.
void quantize_row_q8_k(const float* x, int64_t n, Q8KBlock* out);

// The search for one sub-block of `n` values on the codes [0, nmax] with value = scale * q - min
// (min >= 0, so the grid always reaches down to 0 or below): the scale and minimum that minimise
// the weighted squared error over a sweep of candidate grids, each refitted by weighted least
// squares. Returns {scale, min}; {0, 0} for a block of zeros.
struct AffineFit {
  float scale = 0.0f;
  float min = 0.0f;
};
AffineFit fit_affine_codes(const float* x, const float* weights, int n, int nmax);
// The same for value = scale * q with q in [-nmax - 1, nmax] (Q6_K's symmetric grid with its
// extra negative code); the scale may be negative.
float fit_symmetric_codes(const float* x, const float* weights, int n, int nmax);

// GPTQ's view of a super-block (quantize/gptq.h): the grid our quantizer chooses for 256 values,
// on which values changed afterwards are coded. step and shift are each sub-block's decoded scale
// and minimum, computed with the dequantizer's own float operations, so k_grid_value is bit for
// bit what the file decodes to; `block` holds the quantizer's block, whose header (d, dmin,
// scales) k_grid_pack keeps.
struct KGrid {
  GgmlType type = GgmlType::q4_k;
  float step[16] = {};                   // Q4_K/Q5_K: 8 sub-blocks of 32; Q6_K: 16 of 16
  float shift[16] = {};                  // Q4_K/Q5_K: dmin * m, subtracted; Q6_K: 0
  uint8_t block[sizeof(Q6KBlock)] = {};  // the largest of the three blocks
};
// The grid of the 256 values at x (q4_k, q5_k or q6_k); `importance` [256] or null as for the
// quantizers. On x itself k_grid_code gives the codes the quantizer writes.
KGrid k_grid(GgmlType type, const float* x, const float* importance = nullptr);
// The code of element e (0..255) of the super-block for the value x, and the value a code decodes
// to.
int k_grid_code(const KGrid& grid, int e, float x);
float k_grid_value(const KGrid& grid, int e, int code);
// 256 codes on `grid` -> one block's bytes (ggml_type_traits(grid.type).block_bytes).
void k_grid_pack(const KGrid& grid, const int* codes, uint8_t* out);

}  // namespace edgedistill::io
