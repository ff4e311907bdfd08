#include "io/gguf_quants.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "io/half.h"

namespace edgedistill::io {
namespace {

// Blocks and f32/f16 rows are stored in host byte order below; GGUF is little-endian.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "GGUF blocks are little-endian");

constexpr int kHalfBlock = kQuantBlock / 2;  // Q4 byte j holds elements j and j + kHalfBlock

void check_row_length(const char* what, int64_t n) {
  ED_CHECK(n >= 0 && n % kQuantBlock == 0, what, ": a row of ", n,
           " elements is not a whole number of ", kQuantBlock, "-element blocks");
}

// The reference formulas cast to int8 and round; a NaN or infinity there is undefined behaviour,
// and the weights reaching export are checked finite upstream, so this is our invariant.
void check_finite_block(const char* what, const float* x) {
  for (int j = 0; j < kQuantBlock; ++j) {
    ED_CHECK(std::isfinite(x[j]), what, ": element ", j, " of a block is ", x[j],
             "; only finite values can be quantized");
  }
}

Q8_0Block quantize_block_q8_0(const float* x) {
  check_finite_block("quantize_row_q8_0", x);
  float amax = 0.0f;
  for (int j = 0; j < kQuantBlock; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / 127.0f;
  // As llama.cpp's reference: multiply by the reciprocal (codes of x / d and x * (1 / d) differ
  // only when x / d lies within an ulp of a half-integer).
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  Q8_0Block block;
  block.d = float_to_f16(d);
  for (int j = 0; j < kQuantBlock; ++j) {
    block.qs[j] = static_cast<int8_t>(std::roundf(x[j] * id));  // |x * id| <= 127 (+ rounding)
  }
  return block;
}

Q4_0Block quantize_block_q4_0(const float* x) {
  check_finite_block("quantize_row_q4_0", x);
  // The element of largest magnitude with its sign; the first one wins a tie. d = max / -8 maps
  // it to code 0 exactly (value -8 * d), so the full range [-8, 7] is used on its side.
  float amax = 0.0f;
  float max = 0.0f;
  for (int j = 0; j < kQuantBlock; ++j) {
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  const float d = max / -8.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  Q4_0Block block;
  block.d = float_to_f16(d);
  for (int j = 0; j < kHalfBlock; ++j) {
    // x * id is in [-8, 8], so x * id + 8.5 is in [0.5, 16.5]: the int8 cast truncates (rounds
    // half up after the + 0.5) and the min clips the one code past the grid.
    const int low = std::min(15, static_cast<int>(static_cast<int8_t>(x[j] * id + 8.5f)));
    const int high =
        std::min(15, static_cast<int>(static_cast<int8_t>(x[j + kHalfBlock] * id + 8.5f)));
    block.qs[j] = static_cast<uint8_t>(low | (high << 4));
  }
  return block;
}

Q4_1Block quantize_block_q4_1(const float* x) {
  check_finite_block("quantize_row_q4_1", x);
  float min = FLT_MAX;
  float max = -FLT_MAX;
  for (int j = 0; j < kQuantBlock; ++j) {
    min = std::min(min, x[j]);
    max = std::max(max, x[j]);
  }
  const float d = (max - min) / 15.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  Q4_1Block block;
  block.d = float_to_f16(d);
  block.m = float_to_f16(min);
  for (int j = 0; j < kHalfBlock; ++j) {
    // (x - min) * id is in [0, 15]: + 0.5 and truncation round half up.
    const int low = std::min(15, static_cast<int>(static_cast<int8_t>((x[j] - min) * id + 0.5f)));
    const int high =
        std::min(15, static_cast<int>(static_cast<int8_t>((x[j + kHalfBlock] - min) * id + 0.5f)));
    block.qs[j] = static_cast<uint8_t>(low | (high << 4));
  }
  return block;
}

// Copies `blocks` blocks between a byte buffer and block structs (the buffer may be unaligned and
// is not a Block object, so no pointer cast).
template <class Block>
std::vector<Block> load_blocks(const uint8_t* bytes, int64_t blocks) {
  std::vector<Block> out(static_cast<size_t>(blocks));
  if (blocks > 0) std::memcpy(out.data(), bytes, out.size() * sizeof(Block));
  return out;
}

template <class Block>
void store_blocks(const std::vector<Block>& blocks, uint8_t* bytes) {
  if (!blocks.empty()) std::memcpy(bytes, blocks.data(), blocks.size() * sizeof(Block));
}

// One row of `cols` floats -> the type's bytes at `out` (ggml_row_bytes(type, cols) of them).
void quantize_one_row(GgmlType type, const float* x, int64_t cols, uint8_t* out) {
  const int64_t blocks = cols / kQuantBlock;
  switch (type) {
    case GgmlType::f32:
      if (cols > 0) std::memcpy(out, x, static_cast<size_t>(cols) * sizeof(float));
      return;
    case GgmlType::f16:
      for (int64_t i = 0; i < cols; ++i) {
        const uint16_t half = float_to_f16(x[i]);
        std::memcpy(out + 2 * i, &half, sizeof half);
      }
      return;
    case GgmlType::q8_0: {
      std::vector<Q8_0Block> row(static_cast<size_t>(blocks));
      quantize_row_q8_0(x, cols, row.data());
      store_blocks(row, out);
      return;
    }
    case GgmlType::q4_0: {
      std::vector<Q4_0Block> row(static_cast<size_t>(blocks));
      quantize_row_q4_0(x, cols, row.data());
      store_blocks(row, out);
      return;
    }
    case GgmlType::q4_1: {
      std::vector<Q4_1Block> row(static_cast<size_t>(blocks));
      quantize_row_q4_1(x, cols, row.data());
      store_blocks(row, out);
      return;
    }
  }
  ED_CHECK(false, "unknown GgmlType value ", static_cast<uint32_t>(type));
}

void dequantize_one_row(GgmlType type, const uint8_t* data, int64_t cols, float* y) {
  const int64_t blocks = cols / kQuantBlock;
  switch (type) {
    case GgmlType::f32:
      if (cols > 0) std::memcpy(y, data, static_cast<size_t>(cols) * sizeof(float));
      return;
    case GgmlType::f16:
      for (int64_t i = 0; i < cols; ++i) {
        uint16_t half;
        std::memcpy(&half, data + 2 * i, sizeof half);
        y[i] = f16_to_float(half);
      }
      return;
    case GgmlType::q8_0:
      dequantize_row_q8_0(load_blocks<Q8_0Block>(data, blocks).data(), cols, y);
      return;
    case GgmlType::q4_0:
      dequantize_row_q4_0(load_blocks<Q4_0Block>(data, blocks).data(), cols, y);
      return;
    case GgmlType::q4_1:
      dequantize_row_q4_1(load_blocks<Q4_1Block>(data, blocks).data(), cols, y);
      return;
  }
  ED_CHECK(false, "unknown GgmlType value ", static_cast<uint32_t>(type));
}

}  // namespace

void quantize_row_q8_0(const float* x, int64_t n, Q8_0Block* out) {
  check_row_length("quantize_row_q8_0", n);
  for (int64_t b = 0; b < n / kQuantBlock; ++b) out[b] = quantize_block_q8_0(x + b * kQuantBlock);
}

void quantize_row_q4_0(const float* x, int64_t n, Q4_0Block* out) {
  check_row_length("quantize_row_q4_0", n);
  for (int64_t b = 0; b < n / kQuantBlock; ++b) out[b] = quantize_block_q4_0(x + b * kQuantBlock);
}

void quantize_row_q4_1(const float* x, int64_t n, Q4_1Block* out) {
  check_row_length("quantize_row_q4_1", n);
  for (int64_t b = 0; b < n / kQuantBlock; ++b) out[b] = quantize_block_q4_1(x + b * kQuantBlock);
}

void dequantize_row_q8_0(const Q8_0Block* in, int64_t n, float* y) {
  check_row_length("dequantize_row_q8_0", n);
  for (int64_t b = 0; b < n / kQuantBlock; ++b) {
    const float d = f16_to_float(in[b].d);
    float* out = y + b * kQuantBlock;
    for (int j = 0; j < kQuantBlock; ++j) out[j] = static_cast<float>(in[b].qs[j]) * d;
  }
}

void dequantize_row_q4_0(const Q4_0Block* in, int64_t n, float* y) {
  check_row_length("dequantize_row_q4_0", n);
  for (int64_t b = 0; b < n / kQuantBlock; ++b) {
    const float d = f16_to_float(in[b].d);
    float* out = y + b * kQuantBlock;
    for (int j = 0; j < kHalfBlock; ++j) {
      out[j] = static_cast<float>((in[b].qs[j] & 0x0F) - 8) * d;
      out[j + kHalfBlock] = static_cast<float>((in[b].qs[j] >> 4) - 8) * d;
    }
  }
}

void dequantize_row_q4_1(const Q4_1Block* in, int64_t n, float* y) {
  check_row_length("dequantize_row_q4_1", n);
  for (int64_t b = 0; b < n / kQuantBlock; ++b) {
    const float d = f16_to_float(in[b].d);
    const float m = f16_to_float(in[b].m);
    float* out = y + b * kQuantBlock;
    for (int j = 0; j < kHalfBlock; ++j) {
      out[j] = static_cast<float>(in[b].qs[j] & 0x0F) * d + m;
      out[j + kHalfBlock] = static_cast<float>(in[b].qs[j] >> 4) * d + m;
    }
  }
}

std::vector<uint8_t> quantize_rows(GgmlType type, const float* x, int64_t rows, int64_t cols) {
  ED_CHECK(rows >= 0 && cols >= 0, "quantize_rows: rows=", rows, " cols=", cols);
  const uint64_t row_bytes = ggml_row_bytes(type, static_cast<uint64_t>(cols));
  std::vector<uint8_t> out(static_cast<size_t>(rows) * row_bytes);
  for (int64_t r = 0; r < rows; ++r) {
    quantize_one_row(type, x + r * cols, cols, out.data() + static_cast<uint64_t>(r) * row_bytes);
  }
  return out;
}

void dequantize_rows(GgmlType type, const uint8_t* data, int64_t rows, int64_t cols, float* y) {
  ED_CHECK(rows >= 0 && cols >= 0, "dequantize_rows: rows=", rows, " cols=", cols);
  const uint64_t row_bytes = ggml_row_bytes(type, static_cast<uint64_t>(cols));
  for (int64_t r = 0; r < rows; ++r) {
    dequantize_one_row(type, data + static_cast<uint64_t>(r) * row_bytes, cols, y + r * cols);
  }
}

}  // namespace edgedistill::io
