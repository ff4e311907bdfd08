// GGUF tensor types and their block layouts (../shared/specs/gguf.md, "Tensor types").
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
  q8_0 = 8,
};

inline constexpr int kQuantBlock = 32;  // elements per Q8_0 / Q4_0 / Q4_1 block

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
#pragma pack(pop)
static_assert(sizeof(Q8_0Block) == 34, "Q8_0 block is f16 + 32 int8");
static_assert(sizeof(Q4_0Block) == 18, "Q4_0 block is f16 + 16 bytes of nibbles");
static_assert(sizeof(Q4_1Block) == 20, "Q4_1 block is 2 x f16 + 16 bytes of nibbles");

struct GgmlTypeTraits {
  GgmlType type;
  std::string_view name;  // "f32", "f16", "q4_0", "q4_1", "q8_0" (the CLI spelling)
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
