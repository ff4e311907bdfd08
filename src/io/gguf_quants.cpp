#include "io/gguf_quants.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <map>
#include <type_traits>

#include "core/error.h"
#include "io/gguf_kquants.h"
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

template <class Block>
Block pack_nibbles(const BlockGrid& grid, const int* codes) {
  Block block;
  block.d = grid.d;
  if constexpr (std::is_same_v<Block, Q4_1Block>) block.m = grid.m;
  for (int j = 0; j < kHalfBlock; ++j) {
    block.qs[j] = static_cast<uint8_t>(codes[j] | (codes[j + kHalfBlock] << 4));
  }
  return block;
}

// Q5_0 / Q5_1: the low 4 bits as Q4's nibbles, bit 4 of code j in bit j of qh.
template <class Block>
Block pack_five_bits(const BlockGrid& grid, const int* codes) {
  Block block;
  block.d = grid.d;
  if constexpr (std::is_same_v<Block, Q5_1Block>) block.m = grid.m;
  uint32_t high = 0;
  for (int j = 0; j < kHalfBlock; ++j) {
    block.qs[j] = static_cast<uint8_t>((codes[j] & 0x0F) | ((codes[j + kHalfBlock] & 0x0F) << 4));
    high |= static_cast<uint32_t>((codes[j] >> 4) & 1) << j;
    high |= static_cast<uint32_t>((codes[j + kHalfBlock] >> 4) & 1) << (j + kHalfBlock);
  }
  std::memcpy(block.qh, &high, sizeof high);
  return block;
}

// Code j of a Q5 block (0..31).
template <class Block>
int five_bit_code(const Block& block, int j) {
  uint32_t high;
  std::memcpy(&high, block.qh, sizeof high);
  const int low = j < kHalfBlock ? block.qs[j] & 0x0F : block.qs[j - kHalfBlock] >> 4;
  return low | static_cast<int>(((high >> j) & 1) << 4);
}

template <class Block>
Block quantize_block(GgmlType type, const char* what, const float* x) {
  check_finite_block(what, x);
  const BlockGrid grid = block_grid(type, x);
  int codes[kQuantBlock];
  for (int j = 0; j < kQuantBlock; ++j) codes[j] = grid_code(type, grid, x[j]);
  Block block;
  pack_block(type, grid, codes, reinterpret_cast<uint8_t*>(&block));
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

template <class Block, class Quantize>
void quantize_k_row(const float* x, int64_t cols, uint8_t* out, Quantize quantize) {
  std::vector<Block> row(static_cast<size_t>(cols / kSuperBlock));
  quantize(x, cols, row.data());
  store_blocks(row, out);
}

// One row of `cols` floats -> the type's bytes at `out` (ggml_row_bytes(type, cols) of them).
// `importance` ([cols] or null) weights the K-quants' scale search.
void quantize_one_row(GgmlType type, const float* x, int64_t cols, uint8_t* out,
                      const float* importance) {
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
    case GgmlType::q5_0: {
      std::vector<Q5_0Block> row(static_cast<size_t>(blocks));
      quantize_row_q5_0(x, cols, row.data());
      store_blocks(row, out);
      return;
    }
    case GgmlType::q5_1: {
      std::vector<Q5_1Block> row(static_cast<size_t>(blocks));
      quantize_row_q5_1(x, cols, row.data());
      store_blocks(row, out);
      return;
    }
    case GgmlType::q4_k:
      quantize_k_row<Q4KBlock>(x, cols, out, [importance](const float* v, int64_t n, Q4KBlock* b) {
        quantize_row_q4_k(v, n, b, importance);
      });
      return;
    case GgmlType::q5_k:
      quantize_k_row<Q5KBlock>(x, cols, out, [importance](const float* v, int64_t n, Q5KBlock* b) {
        quantize_row_q5_k(v, n, b, importance);
      });
      return;
    case GgmlType::q6_k:
      quantize_k_row<Q6KBlock>(x, cols, out, [importance](const float* v, int64_t n, Q6KBlock* b) {
        quantize_row_q6_k(v, n, b, importance);
      });
      return;
    case GgmlType::q8_k:
      quantize_k_row<Q8KBlock>(x, cols, out, quantize_row_q8_k);
      return;
  }
  ED_CHECK(false, "unknown GgmlType value ", static_cast<uint32_t>(type));
}

// The row dequantizers, one per type: raw row bytes -> `cols` floats.
void f32_row(const uint8_t* data, int64_t cols, float* y) {
  if (cols > 0) std::memcpy(y, data, static_cast<size_t>(cols) * sizeof(float));
}
void f16_row(const uint8_t* data, int64_t cols, float* y) {
  for (int64_t i = 0; i < cols; ++i) {
    uint16_t half;
    std::memcpy(&half, data + 2 * i, sizeof half);
    y[i] = f16_to_float(half);
  }
}
template <class Block, void (*Dequantize)(const Block*, int64_t, float*), int kElems = kQuantBlock>
void block_row(const uint8_t* data, int64_t cols, float* y) {
  Dequantize(load_blocks<Block>(data, cols / kElems).data(), cols, y);
}

}  // namespace

// The block's grid by the reference formulas (header comment).
BlockGrid block_grid(GgmlType type, const float* x) {
  BlockGrid grid;
  float d = 0.0f;
  if (type == GgmlType::q8_0) {
    float amax = 0.0f;
    for (int j = 0; j < kQuantBlock; ++j) amax = std::max(amax, std::fabs(x[j]));
    d = amax / 127.0f;
  } else if (type == GgmlType::q4_0 || type == GgmlType::q5_0) {
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
    d = max / (type == GgmlType::q5_0 ? -16.0f : -8.0f);
  } else {
    ED_CHECK(type == GgmlType::q4_1 || type == GgmlType::q5_1,
             "block_grid: ", ggml_type_traits(type).name, " is not a block-quantized type");
    float min = FLT_MAX;
    float max = -FLT_MAX;
    for (int j = 0; j < kQuantBlock; ++j) {
      min = std::min(min, x[j]);
      max = std::max(max, x[j]);
    }
    d = (max - min) / (type == GgmlType::q5_1 ? 31.0f : 15.0f);
    grid.min = min;
    grid.m = float_to_f16(min);
  }
  // As llama.cpp's reference: codes multiply by the reciprocal of the unrounded scale (codes of
  // x / d and x * (1 / d) differ only when x / d lies within an ulp of a half-integer).
  grid.inverse = d != 0.0f ? 1.0f / d : 0.0f;
  grid.d = float_to_f16(d);
  return grid;
}

// Clamped before the integer conversion, so weights off the grid (GPTQ's updated ones) get the
// nearest end code instead of undefined behaviour; on the block's own values the clamps never
// act and these are the reference expressions.
int grid_code(GgmlType type, const BlockGrid& grid, float x) {
  switch (type) {
    case GgmlType::q8_0:
      return static_cast<int>(std::roundf(std::clamp(x * grid.inverse, -128.0f, 127.0f)));
    case GgmlType::q4_0:
      // x * id + 8.5 is in [0.5, 16.5] on the block's values: truncation rounds half up after
      // the + 0.5 and the bound clips the one code past the grid.
      return static_cast<int>(std::clamp(x * grid.inverse + 8.5f, 0.0f, 15.0f));
    case GgmlType::q4_1:
      return static_cast<int>(std::clamp((x - grid.min) * grid.inverse + 0.5f, 0.0f, 15.0f));
    case GgmlType::q5_0:
      return static_cast<int>(std::clamp(x * grid.inverse + 16.5f, 0.0f, 31.0f));
    case GgmlType::q5_1:
      return static_cast<int>(std::clamp((x - grid.min) * grid.inverse + 0.5f, 0.0f, 31.0f));
    default:
      break;
  }
  ED_CHECK(false, "grid_code: ", ggml_type_traits(type).name, " is not a block-quantized type");
  return 0;
}

float grid_value(GgmlType type, const BlockGrid& grid, int code) {
  switch (type) {
    case GgmlType::q8_0:
      return static_cast<float>(code) * f16_to_float(grid.d);
    case GgmlType::q4_0:
      return static_cast<float>(code - 8) * f16_to_float(grid.d);
    case GgmlType::q4_1:
    case GgmlType::q5_1:
      return static_cast<float>(code) * f16_to_float(grid.d) + f16_to_float(grid.m);
    case GgmlType::q5_0:
      return static_cast<float>(code - 16) * f16_to_float(grid.d);
    default:
      break;
  }
  ED_CHECK(false, "grid_value: ", ggml_type_traits(type).name, " is not a block-quantized type");
  return 0.0f;
}

void pack_block(GgmlType type, const BlockGrid& grid, const int* codes, uint8_t* out) {
  switch (type) {
    case GgmlType::q8_0: {
      Q8_0Block block;
      block.d = grid.d;
      for (int j = 0; j < kQuantBlock; ++j) block.qs[j] = static_cast<int8_t>(codes[j]);
      std::memcpy(out, &block, sizeof block);
      return;
    }
    case GgmlType::q4_0: {
      const auto block = pack_nibbles<Q4_0Block>(grid, codes);
      std::memcpy(out, &block, sizeof block);
      return;
    }
    case GgmlType::q4_1: {
      const auto block = pack_nibbles<Q4_1Block>(grid, codes);
      std::memcpy(out, &block, sizeof block);
      return;
    }
    case GgmlType::q5_0: {
      const auto block = pack_five_bits<Q5_0Block>(grid, codes);
      std::memcpy(out, &block, sizeof block);
      return;
    }
    case GgmlType::q5_1: {
      const auto block = pack_five_bits<Q5_1Block>(grid, codes);
      std::memcpy(out, &block, sizeof block);
      return;
    }
    default:
      break;
  }
  ED_CHECK(false, "pack_block: ", ggml_type_traits(type).name, " is not a block-quantized type");
}

void quantize_row_q8_0(const float* x, int64_t n, Q8_0Block* out) {
  check_row_length("quantize_row_q8_0", n);
  for (int64_t b = 0; b < n / kQuantBlock; ++b)
    out[b] = quantize_block<Q8_0Block>(GgmlType::q8_0, "quantize_row_q8_0", x + b * kQuantBlock);
}

void quantize_row_q4_0(const float* x, int64_t n, Q4_0Block* out) {
  check_row_length("quantize_row_q4_0", n);
  for (int64_t b = 0; b < n / kQuantBlock; ++b)
    out[b] = quantize_block<Q4_0Block>(GgmlType::q4_0, "quantize_row_q4_0", x + b * kQuantBlock);
}

void quantize_row_q4_1(const float* x, int64_t n, Q4_1Block* out) {
  check_row_length("quantize_row_q4_1", n);
  for (int64_t b = 0; b < n / kQuantBlock; ++b)
    out[b] = quantize_block<Q4_1Block>(GgmlType::q4_1, "quantize_row_q4_1", x + b * kQuantBlock);
}

void quantize_row_q5_0(const float* x, int64_t n, Q5_0Block* out) {
  check_row_length("quantize_row_q5_0", n);
  for (int64_t b = 0; b < n / kQuantBlock; ++b)
    out[b] = quantize_block<Q5_0Block>(GgmlType::q5_0, "quantize_row_q5_0", x + b * kQuantBlock);
}

void quantize_row_q5_1(const float* x, int64_t n, Q5_1Block* out) {
  check_row_length("quantize_row_q5_1", n);
  for (int64_t b = 0; b < n / kQuantBlock; ++b)
    out[b] = quantize_block<Q5_1Block>(GgmlType::q5_1, "quantize_row_q5_1", x + b * kQuantBlock);
}

void dequantize_row_q5_0(const Q5_0Block* in, int64_t n, float* y) {
  check_row_length("dequantize_row_q5_0", n);
  for (int64_t b = 0; b < n / kQuantBlock; ++b) {
    const float d = f16_to_float(in[b].d);
    for (int j = 0; j < kQuantBlock; ++j) {
      y[b * kQuantBlock + j] = static_cast<float>(five_bit_code(in[b], j) - 16) * d;
    }
  }
}

void dequantize_row_q5_1(const Q5_1Block* in, int64_t n, float* y) {
  check_row_length("dequantize_row_q5_1", n);
  for (int64_t b = 0; b < n / kQuantBlock; ++b) {
    const float d = f16_to_float(in[b].d);
    const float m = f16_to_float(in[b].m);
    for (int j = 0; j < kQuantBlock; ++j) {
      y[b * kQuantBlock + j] = static_cast<float>(five_bit_code(in[b], j)) * d + m;
    }
  }
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

std::vector<uint8_t> quantize_rows(GgmlType type, const float* x, int64_t rows, int64_t cols,
                                   const float* importance) {
  ED_CHECK(rows >= 0 && cols >= 0, "quantize_rows: rows=", rows, " cols=", cols);
  const uint64_t row_bytes = ggml_row_bytes(type, static_cast<uint64_t>(cols));
  std::vector<uint8_t> out(static_cast<size_t>(rows) * row_bytes);
  for (int64_t r = 0; r < rows; ++r) {
    quantize_one_row(type, x + r * cols, cols, out.data() + static_cast<uint64_t>(r) * row_bytes,
                     importance);
  }
  return out;
}

RowDequantizer row_dequantizer(GgmlType type) {
  // One entry per block type the reader knows.
  static const std::map<GgmlType, RowDequantizer> table = {
      {GgmlType::f32, f32_row},
      {GgmlType::f16, f16_row},
      {GgmlType::q8_0, block_row<Q8_0Block, dequantize_row_q8_0>},
      {GgmlType::q4_0, block_row<Q4_0Block, dequantize_row_q4_0>},
      {GgmlType::q4_1, block_row<Q4_1Block, dequantize_row_q4_1>},
      {GgmlType::q5_0, block_row<Q5_0Block, dequantize_row_q5_0>},
      {GgmlType::q5_1, block_row<Q5_1Block, dequantize_row_q5_1>},
      {GgmlType::q4_k, block_row<Q4KBlock, dequantize_row_q4_k, kSuperBlock>},
      {GgmlType::q5_k, block_row<Q5KBlock, dequantize_row_q5_k, kSuperBlock>},
      {GgmlType::q6_k, block_row<Q6KBlock, dequantize_row_q6_k, kSuperBlock>},
      {GgmlType::q8_k, block_row<Q8KBlock, dequantize_row_q8_k, kSuperBlock>},
  };
  const auto it = table.find(type);
  ED_CHECK(it != table.end(), "no dequantizer for GgmlType ", static_cast<uint32_t>(type));
  return it->second;
}

void dequantize_rows(GgmlType type, const uint8_t* data, int64_t rows, int64_t cols, float* y) {
  ED_CHECK(rows >= 0 && cols >= 0, "dequantize_rows: rows=", rows, " cols=", cols);
  const uint64_t row_bytes = ggml_row_bytes(type, static_cast<uint64_t>(cols));
  const RowDequantizer dequantize_row = row_dequantizer(type);
  for (int64_t r = 0; r < rows; ++r) {
    dequantize_row(data + static_cast<uint64_t>(r) * row_bytes, cols, y + r * cols);
  }
}

}  // namespace edgedistill::io
