#include "io/gguf_types.h"

#include <limits>

#include "core/error.h"

namespace edgedistill::io {
namespace {

// The format table (block layouts in gguf_types.h, docs/quantization.md): ggml_type id, elements
// and bytes per block; file_type is general.file_type's number for a file mostly of this type.
const std::vector<GgmlTypeTraits>& traits_table() {
  static const std::vector<GgmlTypeTraits> table = {
      {GgmlType::f32, "f32", 1, 4, false, 0},
      {GgmlType::f16, "f16", 1, 2, false, 1},
      {GgmlType::q4_0, "q4_0", kQuantBlock, sizeof(Q4_0Block), true, 2},
      {GgmlType::q4_1, "q4_1", kQuantBlock, sizeof(Q4_1Block), true, 3},
      {GgmlType::q5_0, "q5_0", kQuantBlock, sizeof(Q5_0Block), true, 8},
      {GgmlType::q5_1, "q5_1", kQuantBlock, sizeof(Q5_1Block), true, 9},
      {GgmlType::q8_0, "q8_0", kQuantBlock, sizeof(Q8_0Block), true, 7},
      // A file of K-quants is labelled as llama.cpp labels its mixes: MOSTLY_Q4_K_M = 15,
      // MOSTLY_Q5_K_M = 17, MOSTLY_Q6_K = 18; Q8_K is never a file's type (0 as placeholder).
      {GgmlType::q4_k, "q4_k", kSuperBlock, sizeof(Q4KBlock), true, 15},
      {GgmlType::q5_k, "q5_k", kSuperBlock, sizeof(Q5KBlock), true, 17},
      {GgmlType::q6_k, "q6_k", kSuperBlock, sizeof(Q6KBlock), true, 18},
      {GgmlType::q8_k, "q8_k", kSuperBlock, sizeof(Q8KBlock), true, 0},
  };
  return table;
}

}  // namespace

std::optional<GgmlTypeTraits> find_ggml_type(uint32_t id) {
  for (const GgmlTypeTraits& traits : traits_table()) {
    if (static_cast<uint32_t>(traits.type) == id) return traits;
  }
  return std::nullopt;
}

const GgmlTypeTraits& ggml_type_traits(GgmlType type) {
  for (const GgmlTypeTraits& traits : traits_table()) {
    if (traits.type == type) return traits;
  }
  ED_CHECK(false, "unknown GgmlType value ", static_cast<uint32_t>(type));
  return traits_table()[0];  // unreachable
}

std::optional<GgmlType> parse_ggml_type(std::string_view name) {
  for (const GgmlTypeTraits& traits : traits_table()) {
    if (traits.name == name) return traits.type;
  }
  return std::nullopt;
}

uint64_t ggml_row_bytes(GgmlType type, uint64_t elems) {
  const GgmlTypeTraits& traits = ggml_type_traits(type);
  const uint64_t block_elems = static_cast<uint64_t>(traits.block_elems);
  const uint64_t block_bytes = static_cast<uint64_t>(traits.block_bytes);
  ED_CHECK(elems % block_elems == 0, "a ", traits.name, " row of ", elems,
           " elements is not a whole number of ", block_elems, "-element blocks");
  const uint64_t blocks = elems / block_elems;
  ED_CHECK(blocks <= std::numeric_limits<uint64_t>::max() / block_bytes, "a ", traits.name,
           " row of ", elems, " elements overflows a 64-bit byte count");
  return blocks * block_bytes;
}

std::optional<uint64_t> ggml_nbytes(GgmlType type, const std::vector<uint64_t>& dims) {
  if (dims.empty()) return std::nullopt;
  const GgmlTypeTraits& traits = ggml_type_traits(type);
  const uint64_t block_elems = static_cast<uint64_t>(traits.block_elems);
  if (dims[0] % block_elems != 0) return std::nullopt;
  constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
  uint64_t bytes = dims[0] / block_elems;
  const auto multiply = [&](uint64_t factor) {
    if (factor != 0 && bytes > kMax / factor) return false;
    bytes *= factor;
    return true;
  };
  if (!multiply(static_cast<uint64_t>(traits.block_bytes))) return std::nullopt;
  for (size_t i = 1; i < dims.size(); ++i) {
    if (!multiply(dims[i])) return std::nullopt;
  }
  return bytes;
}

const std::vector<GgmlTypeTraits>& known_ggml_types() {
  return traits_table();
}

}  // namespace edgedistill::io
