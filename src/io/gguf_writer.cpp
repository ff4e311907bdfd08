// The GGUF version 3 writer (docs/runtime.md, "What export writes").
#include <algorithm>
#include <cstring>
#include <limits>

#include "core/error.h"
#include "io/gguf.h"

namespace edgedistill::io {
namespace {

constexpr uint64_t kMaxTensorNameBytes = 63;  // ggml's GGML_MAX_NAME (64) less the NUL
constexpr size_t kMaxDims = 4;                // ggml's GGML_MAX_DIMS
constexpr const char* kAlignmentKey = "general.alignment";

void append_le(std::string& out, uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out += static_cast<char>((value >> (8 * i)) & 0xFF);
}

void append_string(std::string& out, const std::string& text) {
  append_le(out, text.size(), 8);
  out += text;
}

bool is_power_of_two(uint64_t value) {
  return value != 0 && (value & (value - 1)) == 0;
}

// Whether `integer` (signed types sign-extended) is a value of `type`'s width.
bool integer_fits(GgufValueType type, uint64_t integer) {
  const auto as_signed = static_cast<int64_t>(integer);
  switch (type) {
    case GgufValueType::uint8:
      return integer <= std::numeric_limits<uint8_t>::max();
    case GgufValueType::int8:
      return as_signed >= std::numeric_limits<int8_t>::min() &&
             as_signed <= std::numeric_limits<int8_t>::max();
    case GgufValueType::uint16:
      return integer <= std::numeric_limits<uint16_t>::max();
    case GgufValueType::int16:
      return as_signed >= std::numeric_limits<int16_t>::min() &&
             as_signed <= std::numeric_limits<int16_t>::max();
    case GgufValueType::uint32:
      return integer <= std::numeric_limits<uint32_t>::max();
    case GgufValueType::int32:
      return as_signed >= std::numeric_limits<int32_t>::min() &&
             as_signed <= std::numeric_limits<int32_t>::max();
    case GgufValueType::boolean:
      return integer <= 1;
    default:
      return true;
  }
}

// The values our code builds must be ones the format can hold (invariants, not user input).
void check_value(const std::string& key, const GgufValue& value) {
  const auto id = static_cast<uint32_t>(value.type);
  ED_CHECK(id <= static_cast<uint32_t>(GgufValueType::float64), "GGUF key '", key, "': value type ",
           id);
  ED_CHECK(integer_fits(value.type, value.integer), "GGUF key '", key,
           "': ", gguf_value_type_name(value.type), " value ", value.integer, " out of range");
  if (value.type != GgufValueType::array) return;
  const auto element_id = static_cast<uint32_t>(value.element_type);
  ED_CHECK(element_id <= static_cast<uint32_t>(GgufValueType::float64), "GGUF key '", key,
           "': ARRAY element type ", element_id);
  ED_CHECK(value.element_type != GgufValueType::array, "GGUF key '", key,
           "': arrays of arrays are not allowed");
  for (const GgufValue& element : value.elements) {
    ED_CHECK(element.type == value.element_type, "GGUF key '", key, "': an ARRAY of ",
             gguf_value_type_name(value.element_type), " holds a ",
             gguf_value_type_name(element.type));
    check_value(key, element);
  }
}

void append_value(std::string& out, const GgufValue& value) {
  switch (value.type) {
    case GgufValueType::uint8:
    case GgufValueType::int8:
    case GgufValueType::boolean:
      append_le(out, value.integer, 1);
      return;
    case GgufValueType::uint16:
    case GgufValueType::int16:
      append_le(out, value.integer, 2);
      return;
    case GgufValueType::uint32:
    case GgufValueType::int32:
      append_le(out, value.integer, 4);
      return;
    case GgufValueType::uint64:
    case GgufValueType::int64:
      append_le(out, value.integer, 8);
      return;
    case GgufValueType::float32: {
      const auto number = static_cast<float>(value.number);
      uint32_t bits;
      std::memcpy(&bits, &number, sizeof bits);
      append_le(out, bits, 4);
      return;
    }
    case GgufValueType::float64: {
      uint64_t bits;
      std::memcpy(&bits, &value.number, sizeof bits);
      append_le(out, bits, 8);
      return;
    }
    case GgufValueType::string:
      append_string(out, value.text);
      return;
    case GgufValueType::array:
      append_le(out, static_cast<uint32_t>(value.element_type), 4);
      append_le(out, value.elements.size(), 8);
      for (const GgufValue& element : value.elements) append_value(out, element);
      return;
  }
}

uint64_t padding_after(uint64_t bytes, uint64_t alignment) {
  return (alignment - bytes % alignment) % alignment;
}

// In chunks: the alignment may be large, and the padding should not cost that much memory.
void write_zeros(core::AtomicFile& file, uint64_t count) {
  static const char kZeros[4096] = {};
  while (count > 0) {
    const uint64_t chunk = std::min<uint64_t>(count, sizeof kZeros);
    file.write(kZeros, static_cast<size_t>(chunk));
    count -= chunk;
  }
}

}  // namespace

GgufValue* GgufWriter::find(const std::string& key) {
  for (auto& [existing, value] : metadata_) {
    if (existing == key) return &value;
  }
  return nullptr;
}

void GgufWriter::set(const std::string& key, GgufValue value) {
  ED_CHECK(!key.empty(), "GGUF keys must be non-empty");
  for (const auto& [existing, unused] : metadata_) {
    ED_CHECK(existing != key, "GGUF key '", key, "' set twice");
  }
  check_value(key, value);
  if (key == kAlignmentKey) {
    ED_CHECK(value.type == GgufValueType::uint32 && is_power_of_two(value.integer),
             "general.alignment must be a UINT32 power of two, got ",
             gguf_value_type_name(value.type), " ", value.integer);
  }
  metadata_.emplace_back(key, std::move(value));
}

void GgufWriter::add_tensor(const std::string& name, GgmlType type, std::vector<uint64_t> dims,
                            std::vector<uint8_t> data) {
  ED_CHECK(name.size() <= kMaxTensorNameBytes, "GGUF tensor name '", name, "' is ", name.size(),
           " bytes; at most ", kMaxTensorNameBytes);
  for (const PendingTensor& tensor : tensors_) {
    ED_CHECK(tensor.name != name, "GGUF tensor '", name, "' added twice");
  }
  ED_CHECK(!dims.empty() && dims.size() <= kMaxDims, "GGUF tensor '", name, "' has ", dims.size(),
           " dims; expected 1 to ", kMaxDims);
  for (const uint64_t dim : dims) ED_CHECK(dim > 0, "GGUF tensor '", name, "' has a 0 dim");
  const GgmlTypeTraits& traits = ggml_type_traits(type);
  ED_CHECK(dims[0] % static_cast<uint64_t>(traits.block_elems) == 0, "GGUF tensor '", name,
           "': dims[0] ", dims[0], " is not a multiple of the ", traits.name, " block size ",
           traits.block_elems);
  const std::optional<uint64_t> nbytes = ggml_nbytes(type, dims);
  ED_CHECK(nbytes.has_value() && *nbytes == data.size(), "GGUF tensor '", name, "' of ",
           traits.name, ": given ", data.size(), " bytes, its dims need ", nbytes.value_or(0));
  tensors_.push_back(PendingTensor{name, type, std::move(dims), std::move(data)});
}

void GgufWriter::write(const fs::path& path) const {
  uint64_t alignment = kGgufDefaultAlignment;
  for (const auto& [key, value] : metadata_) {
    if (key == kAlignmentKey) alignment = value.integer;  // checked by set()
  }

  // Header, key/values and tensor infos in memory; the tensor data streams after them.
  std::string header;
  append_le(header, kGgufMagic, 4);
  append_le(header, kGgufVersion, 4);
  append_le(header, tensors_.size(), 8);
  append_le(header, metadata_.size(), 8);
  for (const auto& [key, value] : metadata_) {
    append_string(header, key);
    append_le(header, static_cast<uint32_t>(value.type), 4);
    append_value(header, value);
  }
  uint64_t offset = 0;  // offsets exactly sequential: each tensor padded to the alignment
  for (const PendingTensor& tensor : tensors_) {
    append_string(header, tensor.name);
    append_le(header, tensor.dims.size(), 4);
    for (const uint64_t dim : tensor.dims) append_le(header, dim, 8);
    append_le(header, static_cast<uint32_t>(tensor.type), 4);
    append_le(header, offset, 8);
    offset += tensor.data.size() + padding_after(tensor.data.size(), alignment);
  }

  core::AtomicFile file(path);
  file.write(header);
  if (!tensors_.empty()) write_zeros(file, padding_after(header.size(), alignment));
  for (const PendingTensor& tensor : tensors_) {
    file.write(tensor.data.data(), tensor.data.size());
    write_zeros(file, padding_after(tensor.data.size(), alignment));
  }
  file.commit();
}

}  // namespace edgedistill::io
