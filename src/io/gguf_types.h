// GGUF tensor types and their block layouts (ggml's ggml_type ids and block structs, as
// docs/quantization.md states them).
//
// Each quantized block is a packed struct whose size is asserted against the format; a row of
// `n` elements of a block type is n / block_elems consecutive blocks. The traits table is the one
// place that knows a type's name, block size and byte size.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

namespace edgedistill::io {

// ggml_type ids as stored in tensor-info records (not general.file_type's numbers).
enum class GgmlType : uint32_t {
  f32 = 0,
  f16 = 1,
  q4_0 = 2,
  q4_1 = 3,
  q5_0 = 6,
  q5_1 = 7,
  q8_0 = 8,
  q4_k = 12,
  q5_k = 13,
  q6_k = 14,
  q8_k = 15,
};

inline constexpr int kQuantBlock = 32;   // elements per Q8_0 / Q4_0 / Q4_1 block
inline constexpr int kSuperBlock = 256;  // elements per K-quant super-block (ggml's QK_K)

#pragma pack(push, 1)
// value_j = qs[j] * d
struct Q8_0Block {
  uint16_t d;  // f16 scale
  int8_t qs[kQuantBlock];
};
// value_j = (q_j - 8) * d; byte j holds q_j in its low nibble and q_{j+16} in its high nibble.
struct Q4_0Block {
  uint16_t d;  // f16 scale
  uint8_t qs[kQuantBlock / 2];
};
// value_j = q_j * d + m; nibble order as Q4_0.
struct Q4_1Block {
  uint16_t d;  // f16 scale
  uint16_t m;  // f16 minimum
  uint8_t qs[kQuantBlock / 2];
};
// value_j = (q_j - 16) * d with q_j in [0, 31]: the low 4 bits as Q4_0's nibbles, the fifth bit
// of q_j in bit j of qh (a little-endian uint32).
struct Q5_0Block {
  uint16_t d;  // f16 scale
  uint8_t qh[4];
  uint8_t qs[kQuantBlock / 2];
};
// value_j = q_j * d + m; bits as Q5_0.
struct Q5_1Block {
  uint16_t d;  // f16 scale
  uint16_t m;  // f16 minimum
  uint8_t qh[4];
  uint8_t qs[kQuantBlock / 2];
};
// K-quants: a super-block of 256 values in sub-blocks, each with its own scale (and minimum),
// the sub-block scales themselves quantized against the super-block's f16 scale(s).
//
// Q4_K: 8 sub-blocks of 32. Sub-block j's 6-bit scale sc_j and minimum m_j are packed in
// `scales` (see unpack_k_scale_min in gguf_kquants.h); value = d * sc_j * q - dmin * m_j, q in
// [0, 15]. qs holds 64-value chunks in 32 bytes each: chunk c's byte l has q of element 64c + l in
// its low nibble and of element 64c + 32 + l in its high nibble.
struct Q4KBlock {
  uint16_t d;     // f16 scale of the sub-block scales
  uint16_t dmin;  // f16 scale of the sub-block minimums
  uint8_t scales[12];
  uint8_t qs[kSuperBlock / 2];
};
// Q5_K: as Q4_K with q in [0, 31]; the fifth bit of element 64c + l is bit 2c of qh[l], of
// element 64c + 32 + l bit 2c + 1.
struct Q5KBlock {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[12];
  uint8_t qh[kSuperBlock / 8];
  uint8_t qs[kSuperBlock / 2];
};
// Q6_K: 16 sub-blocks of 16 with int8 scales; value = d * scales[j] * (q - 32), q in [0, 63].
// Each half of 128 elements (h = 0, 1) uses ql[64h ..] and qh[32h ..]: for l < 32, ql[64h + l]
// holds the low 4 bits of elements 128h + l (low nibble) and 128h + 64 + l (high nibble),
// ql[64h + 32 + l] those of 128h + 32 + l and 128h + 96 + l, and qh[32h + l] the high 2 bits of
// 128h + l, + 32, + 64, + 96 in its bit pairs 0-1, 2-3, 4-5, 6-7.
struct Q6KBlock {
  uint8_t ql[kSuperBlock / 2];
  uint8_t qh[kSuperBlock / 4];
  int8_t scales[kSuperBlock / 16];
  uint16_t d;
};
// Q8_K: the activations' type of the K-quant dot products; value = d * qs[j] (d is f32), and
// bsums[i] = the sum of qs[16i .. 16i + 15].
struct Q8KBlock {
  float d;
  int8_t qs[kSuperBlock];
  int16_t bsums[kSuperBlock / 16];
};
#pragma pack(pop)
static_assert(sizeof(Q4KBlock) == 144, "Q4_K block is 2 x f16 + 12 scale bytes + 128 bytes");
static_assert(sizeof(Q5KBlock) == 176, "Q5_K block is Q4_K's + 32 bytes of high bits");
static_assert(sizeof(Q6KBlock) == 210, "Q6_K block is 128 + 64 + 16 bytes + f16");
static_assert(sizeof(Q8KBlock) == 292, "Q8_K block is f32 + 256 int8 + 16 int16");
static_assert(sizeof(Q8_0Block) == 34, "Q8_0 block is f16 + 32 int8");
static_assert(sizeof(Q5_0Block) == 22, "Q5_0 block is f16 + 4 bytes of fifth bits + 16 of nibbles");
static_assert(sizeof(Q5_1Block) == 24, "Q5_1 block is 2 x f16 + 4 + 16 bytes");
static_assert(sizeof(Q4_0Block) == 18, "Q4_0 block is f16 + 16 bytes of nibbles");
static_assert(sizeof(Q4_1Block) == 20, "Q4_1 block is 2 x f16 + 16 bytes of nibbles");

struct GgmlTypeTraits {
  GgmlType type;
  std::string_view name;  // "f32", "f16", "q4_0", "q4_1", "q8_0", "q4_k", ... (the CLI spelling)
  int block_elems;        // elements per block
  int block_bytes;        // bytes per block
  bool quantized;
  uint32_t file_type;  // general.file_type for a file "mostly" of this type (MOSTLY_F32 = 0, ...)
};

// The traits of a known type; nullopt for an id this build does not read (the reader reports it).
std::optional<GgmlTypeTraits> find_ggml_type(uint32_t id);
const GgmlTypeTraits& ggml_type_traits(GgmlType type);
// "q4_0" -> GgmlType::q4_0; nullopt for anything else.
std::optional<GgmlType> parse_ggml_type(std::string_view name);
// Bytes of a row of `elems` elements; elems must be a multiple of the block size (checked).
uint64_t ggml_row_bytes(GgmlType type, uint64_t elems);
// Bytes of a tensor with ggml-order dims (spec: (dims[0] / block_elems) * block_bytes * dims[1] *
// ...): nullopt when dims[0] is not a multiple of the block size or the count overflows uint64.
std::optional<uint64_t> ggml_nbytes(GgmlType type, const std::vector<uint64_t>& dims);
// Every type this build reads, in ggml_type id order (for messages that list the choices).
const std::vector<GgmlTypeTraits>& known_ggml_types();

}  // namespace edgedistill::io
