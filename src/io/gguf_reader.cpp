// GGUF values and the validating reader (docs/runtime.md, "Reading a file").
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <ostream>
#include <string_view>
#include <unordered_map>

#include "core/error.h"
#include "io/gguf.h"
#include "io/gguf_parse.h"

namespace edgedistill::io {

bool is_gguf_file(const fs::path& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return false;
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  return in.read(magic, 4) && std::string_view(magic, 4) == "GGUF";
}
namespace {

constexpr std::string_view kHintTruncated = "the file is truncated or not a GGUF file";
constexpr std::string_view kHintReexport = "re-export it with `edgedistill export`";

// " (Q3_K)" for the ggml types that exist but that we do not read, so the error names what the
// file holds; "" for an id ggml does not define either.
std::string unsupported_type_name(uint32_t id) {
  static const std::pair<uint32_t, const char*> kNames[] = {
      {4, "Q4_2, removed from ggml"}, {5, "Q4_3, removed from ggml"}, {9, "Q8_1"}, {10, "Q2_K"},
      {11, "Q3_K"}, {16, "IQ2_XXS"}, {17, "IQ2_XS"}, {18, "IQ3_XXS"}, {19, "IQ1_S"},
      {20, "IQ4_NL"}, {21, "IQ3_S"}, {22, "IQ2_S"}, {23, "IQ4_XS"}, {24, "I8"}, {25, "I16"},
      {26, "I32"}, {27, "I64"}, {28, "F64"}, {29, "IQ1_M"}, {30, "BF16"}, {34, "TQ1_0"},
      {35, "TQ2_0"}, {39, "MXFP4"}};
  for (const auto& [known, name] : kNames) {
    if (known == id) return std::string(" (") + name + ")";
  }
  return "";
}

constexpr uint32_t kValueTypeCount = 13;      // UINT8 = 0 .. FLOAT64 = 12
constexpr uint64_t kMaxTensorNameBytes = 63;  // ggml's GGML_MAX_NAME (64) less the NUL
constexpr uint32_t kMaxDims = 4;              // ggml's GGML_MAX_DIMS
constexpr const char* kAlignmentKey = "general.alignment";
constexpr uint64_t kMaxElements = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());

// The smallest possible records, to bound a count by the bytes left BEFORE reserving memory for
// it (a hostile count must not make the reader allocate gigabytes).
// A key/value record: key length, a 1-byte key, value type, a UINT8 value.
constexpr uint64_t kMinKvBytes = 8 + 1 + 4 + 1;
// A tensor-info record: an empty name's length, n_dims, one dim, ggml type, offset.
constexpr uint64_t kMinTensorInfoBytes = 8 + 4 + 8 + 4 + 8;

// Names quoted in messages are clipped: a hostile file must not flood the terminal.
constexpr size_t kMaxQuotedChars = 80;

// Named so that ADL cannot pick std::quoted for a std::string argument. Single-quoted, clipped at a
// UTF-8 boundary, control bytes escaped so a message stays one line.
std::string quoted_name(std::string_view text) {
  std::string_view shown = text;
  bool clipped = false;
  if (shown.size() > kMaxQuotedChars) {
    size_t cut = kMaxQuotedChars - 3;
    while (cut > 0 && (static_cast<unsigned char>(shown[cut]) & 0xC0) == 0x80) --cut;
    shown = shown.substr(0, cut);
    clipped = true;
  }
  std::string out = "'";
  for (const char c : shown) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte == 0x7F) {
      constexpr char kHex[] = "0123456789ABCDEF";
      out += "\\x";
      out += kHex[byte >> 4];
      out += kHex[byte & 0x0F];
    } else {
      out += c;
    }
  }
  return out + (clipped ? "...'" : "'");
}

std::string format_dims(const std::vector<uint64_t>& dims) {
  std::string text = "{";
  for (size_t i = 0; i < dims.size(); ++i) text += str(i ? ", " : "", dims[i]);
  return text + "}";
}

// "ARRAY of STRING" for arrays, the type name otherwise.
std::string describe_type(const GgufValue& value) {
  if (value.type != GgufValueType::array) return gguf_value_type_name(value.type);
  return str("ARRAY of ", gguf_value_type_name(value.element_type));
}

std::string known_ggml_type_list() {
  std::string list;
  for (const GgmlTypeTraits& traits : known_ggml_types()) {
    list += str(list.empty() ? "" : ", ", traits.name, " = ", static_cast<uint32_t>(traits.type));
  }
  return list;
}

// Bytes of one value of a fixed-size type; 0 for STRING and ARRAY.
uint64_t fixed_value_bytes(GgufValueType type) {
  switch (type) {
    case GgufValueType::uint8:
    case GgufValueType::int8:
    case GgufValueType::boolean:
      return 1;
    case GgufValueType::uint16:
    case GgufValueType::int16:
      return 2;
    case GgufValueType::uint32:
    case GgufValueType::int32:
    case GgufValueType::float32:
      return 4;
    case GgufValueType::uint64:
    case GgufValueType::int64:
    case GgufValueType::float64:
      return 8;
    case GgufValueType::string:
    case GgufValueType::array:
      return 0;
  }
  return 0;
}

uint64_t pad_to(uint64_t offset, uint64_t alignment) {
  return offset + (alignment - offset % alignment) % alignment;
}

// Where a read happens, for messages: "key 'general.name'", "tensor 2 'output.weight'", and the
// element index inside an array.
struct Where {
  std::string_view record;
  int64_t element = -1;
};

std::ostream& operator<<(std::ostream& out, const Where& where) {
  out << where.record;
  if (where.element >= 0) out << " element " << where.element;
  return out;
}

// A bounds-checked little-endian cursor over the image; every failure names the file.
class Parser {
 public:
  Parser(const fs::path& path, const uint8_t* bytes, uint64_t size)
      : path_(path), bytes_(bytes), size_(size) {}

  template <class... Args>
  [[noreturn]] void fail(Args&&... args) const {
    throw FileError(str("GGUF file '", path_.string(), "': ", std::forward<Args>(args)...));
  }

  uint64_t position() const { return position_; }
  uint64_t left() const { return size_ - position_; }

  uint8_t u8(const Where& where, std::string_view field) { return take(1, where, field)[0]; }
  uint16_t u16(const Where& where, std::string_view field) {
    return static_cast<uint16_t>(little_endian(take(2, where, field), 2));
  }
  uint32_t u32(const Where& where, std::string_view field) {
    return static_cast<uint32_t>(little_endian(take(4, where, field), 4));
  }
  uint64_t u64(const Where& where, std::string_view field) {
    return little_endian(take(8, where, field), 8);
  }

  // uint64 byte length + bytes, the length checked against the bytes left before allocating.
  std::string string(const Where& where, std::string_view field) {
    const uint64_t length = u64(where, field);
    if (length > left()) {
      fail(where, ": ", field, " string length ", length, " at offset ", position_ - 8,
           " is past the end of the file (", left(), " bytes left); ", kHintTruncated);
    }
    const uint8_t* text = take(length, where, field);
    return std::string(reinterpret_cast<const char*>(text), static_cast<size_t>(length));
  }

  // One value of a known type (an ARRAY with its elements).
  GgufValue value(GgufValueType type, const Where& where) {
    GgufValue value;
    value.type = type;
    switch (type) {
      case GgufValueType::uint8:
        value.integer = u8(where, "value");
        break;
      case GgufValueType::int8:
        value.integer = static_cast<uint64_t>(static_cast<int64_t>(
            static_cast<int8_t>(u8(where, "value"))));  // sign-extended, as GgufValue holds it
        break;
      case GgufValueType::uint16:
        value.integer = u16(where, "value");
        break;
      case GgufValueType::int16:
        value.integer =
            static_cast<uint64_t>(static_cast<int64_t>(static_cast<int16_t>(u16(where, "value"))));
        break;
      case GgufValueType::uint32:
        value.integer = u32(where, "value");
        break;
      case GgufValueType::int32:
        value.integer =
            static_cast<uint64_t>(static_cast<int64_t>(static_cast<int32_t>(u32(where, "value"))));
        break;
      case GgufValueType::uint64:
      case GgufValueType::int64:  // already two's complement in 64 bits
        value.integer = u64(where, "value");
        break;
      case GgufValueType::float32: {
        const uint32_t bits = u32(where, "value");
        float number;
        std::memcpy(&number, &bits, sizeof number);
        value.number = number;
        break;
      }
      case GgufValueType::float64: {
        const uint64_t bits = u64(where, "value");
        std::memcpy(&value.number, &bits, sizeof value.number);
        break;
      }
      case GgufValueType::boolean: {
        const uint8_t flag = u8(where, "value");
        if (flag > 1) {
          fail(where, ": BOOL value is ", static_cast<int>(flag), "; expected 0 or 1; ",
               kHintReexport);
        }
        value.integer = flag;
        break;
      }
      case GgufValueType::string:
        value.text = string(where, "value");
        break;
      case GgufValueType::array:
        read_array(value, where);
        break;
    }
    return value;
  }

 private:
  const uint8_t* take(uint64_t count, const Where& where, std::string_view field) {
    if (count > left()) {
      fail(where, ": ", field, " needs ", count, " bytes at offset ", position_, " but only ",
           left(), " are left; ", kHintTruncated);
    }
    const uint8_t* at = bytes_ + position_;
    position_ += count;
    return at;
  }

  static uint64_t little_endian(const uint8_t* at, int count) {
    uint64_t value = 0;
    for (int i = 0; i < count; ++i) value |= static_cast<uint64_t>(at[i]) << (8 * i);
    return value;
  }

  void read_array(GgufValue& array, const Where& where) {
    const uint32_t element_id = u32(where, "ARRAY element type");
    if (element_id >= kValueTypeCount) {
      fail(where, ": ARRAY element type ", element_id, " is not a GGUF value type (0 to ",
           kValueTypeCount - 1, "); ", kHintReexport);
    }
    const auto element_type = static_cast<GgufValueType>(element_id);
    if (element_type == GgufValueType::array) {
      fail(where, ": ARRAY of ARRAY; nested arrays are not allowed (ggml rejects them); ",
           kHintReexport);
    }
    const uint64_t count = u64(where, "ARRAY element count");
    const uint64_t fixed = fixed_value_bytes(element_type);
    const uint64_t min_bytes = fixed != 0 ? fixed : 8;  // a STRING is at least its length
    if (count > left() / min_bytes) {
      fail(where, ": ARRAY of ", count, " ", gguf_value_type_name(element_type),
           " elements needs at least ", min_bytes, " bytes each but only ", left(),
           " bytes are left; ", kHintTruncated);
    }
    array.element_type = element_type;
    array.elements.reserve(static_cast<size_t>(count));
    for (uint64_t i = 0; i < count; ++i) {
      array.elements.push_back(value(element_type, Where{where.record, static_cast<int64_t>(i)}));
    }
  }

  const fs::path& path_;
  const uint8_t* bytes_;
  uint64_t size_;
  uint64_t position_ = 0;
};

void check_version(const Parser& parser, uint32_t version) {
  if (version == kGgufVersion) return;
  if (version == 1 || version == 2) {
    parser.fail("header: version ", version, " is an old GGUF version; this edgedistill reads ",
                "version ", kGgufVersion, " only; ", kHintReexport,
                " (or convert it with a current llama.cpp)");
  }
  if (version != 0 && (version & 0xFFFF) == 0) {
    parser.fail("header: version ", version, " looks byte-swapped (a big-endian GGUF); this ",
                "edgedistill reads little-endian version ", kGgufVersion, " only; ", kHintReexport);
  }
  if (version > kGgufVersion) {
    parser.fail("header: version ", version, " is newer than this edgedistill reads (version ",
                kGgufVersion, " only); upgrade edgedistill or ", kHintReexport);
  }
  parser.fail("header: version 0 is not a GGUF version (this edgedistill reads version ",
              kGgufVersion, " only); ", kHintTruncated);
}

// general.alignment, when present: UINT32 and a power of two.
uint32_t read_alignment(const Parser& parser,
                        const std::vector<std::pair<std::string, GgufValue>>& metadata) {
  for (const auto& [key, value] : metadata) {
    if (key != kAlignmentKey) continue;
    if (value.type != GgufValueType::uint32) {
      parser.fail("key '", kAlignmentKey, "' is ", describe_type(value),
                  "; expected UINT32 (a power of two); ", kHintReexport);
    }
    if (value.integer == 0 || (value.integer & (value.integer - 1)) != 0) {
      parser.fail("key '", kAlignmentKey, "' is ", value.integer,
                  ", not a power of two; expected a power of two such as ", kGgufDefaultAlignment,
                  "; ", kHintReexport);
    }
    return static_cast<uint32_t>(value.integer);
  }
  return kGgufDefaultAlignment;
}

// Reads one tensor-info record and checks everything that does not need the data section's
// position: name, dims, type, byte count, and the offset (aligned, exactly `expected_offset`, the
// data inside the file even if the data section started at byte 0).
GgufTensor read_tensor_info(Parser& parser, uint64_t index, uint32_t alignment,
                            uint64_t expected_offset, const GgufTensor* previous,
                            std::unordered_map<std::string, uint64_t>& names, uint64_t file_bytes) {
  const std::string record = str("tensor ", index);
  GgufTensor tensor;
  tensor.name = parser.string(Where{record}, "name");
  const std::string named = str(record, " ", quoted_name(tensor.name));
  const Where where{named};
  if (tensor.name.size() > kMaxTensorNameBytes) {
    parser.fail(named, ": the name is ", tensor.name.size(), " bytes; ggml allows at most ",
                kMaxTensorNameBytes, "; ", kHintReexport);
  }
  if (const auto [first, inserted] = names.emplace(tensor.name, index); !inserted) {
    parser.fail(named, ": the name is also used by tensor ", first->second,
                "; tensor names must be unique; ", kHintReexport);
  }

  const uint32_t n_dims = parser.u32(where, "n_dims");
  if (n_dims < 1 || n_dims > kMaxDims) {
    parser.fail(named, ": n_dims is ", n_dims, "; expected 1 to ", kMaxDims, "; ", kHintReexport);
  }
  tensor.dims.resize(n_dims);
  for (uint64_t& dim : tensor.dims) dim = parser.u64(where, "dims");
  for (uint32_t d = 0; d < n_dims; ++d) {
    if (tensor.dims[d] == 0) {
      parser.fail(named, ": dims[", d, "] is 0 in ", format_dims(tensor.dims),
                  "; every dimension must be at least 1; ", kHintReexport);
    }
  }

  const uint32_t type_id = parser.u32(where, "ggml type");
  const std::optional<GgmlTypeTraits> traits = find_ggml_type(type_id);
  if (!traits) {
    parser.fail(named, ": ggml type ", type_id, unsupported_type_name(type_id),
                " is not one this edgedistill reads (", known_ggml_type_list(),
                "); requantize the file to one of them (llama-quantize --allow-requantize, e.g. "
                "Q4_K_M or Q8_0) or ", kHintReexport);
  }
  tensor.type = traits->type;
  const auto block_elems = static_cast<uint64_t>(traits->block_elems);
  if (tensor.dims[0] % block_elems != 0) {
    parser.fail(named, ": dims[0] (the row length) is ", tensor.dims[0], ", not a multiple of the ",
                traits->name, " block size ", block_elems, "; ", kHintReexport);
  }
  uint64_t elements = 1;
  for (const uint64_t dim : tensor.dims) {
    if (elements > kMaxElements / dim) {
      parser.fail(named, ": dims ", format_dims(tensor.dims), " hold more than 2^63 - 1 elements; ",
                  kHintReexport);
    }
    elements *= dim;
  }
  const std::optional<uint64_t> nbytes = ggml_nbytes(tensor.type, tensor.dims);
  if (!nbytes) {
    parser.fail(named, ": dims ", format_dims(tensor.dims), " of ", traits->name,
                " need more than 2^64 - 1 bytes; ", kHintReexport);
  }
  tensor.nbytes = *nbytes;

  tensor.offset = parser.u64(where, "offset");
  if (tensor.offset % alignment != 0) {
    parser.fail(named, ": offset ", tensor.offset, " is not aligned to ", alignment,
                " (general.alignment, or 32 by default); expected offset ", expected_offset, "; ",
                kHintReexport);
  }
  if (tensor.offset != expected_offset) {
    if (previous == nullptr) {
      parser.fail(named, ": offset ", tensor.offset, " leaves a gap of ", tensor.offset,
                  " bytes at the start of the data section; expected offset 0 (offsets must be ",
                  "exactly sequential); ", kHintReexport);
    }
    const std::string previous_extent =
        str("tensor ", index - 1, " ", quoted_name(previous->name), " (", previous->nbytes,
            " bytes at offset ", previous->offset, ", padded to ", alignment, ", ends at ",
            expected_offset, ")");
    if (tensor.offset < expected_offset) {
      parser.fail(named, ": offset ", tensor.offset, " overlaps ", previous_extent,
                  "; expected offset ", expected_offset, " (offsets must be exactly sequential); ",
                  kHintReexport);
    }
    parser.fail(named, ": offset ", tensor.offset, " leaves a gap of ",
                tensor.offset - expected_offset, " bytes after ", previous_extent,
                "; expected offset ", expected_offset, " (offsets must be exactly sequential); ",
                kHintReexport);
  }
  // A bound before the data section's start is known; it keeps the running offset from
  // overflowing. The exact check follows once the header has been read.
  if (tensor.offset > file_bytes || tensor.nbytes > file_bytes - tensor.offset) {
    parser.fail(named, ": ", tensor.nbytes, " bytes of data at offset ", tensor.offset,
                " of the data section reach past the end of the file (", file_bytes, " bytes); ",
                kHintTruncated);
  }
  return tensor;
}

}  // namespace

const char* gguf_value_type_name(GgufValueType type) {
  switch (type) {
    case GgufValueType::uint8:
      return "UINT8";
    case GgufValueType::int8:
      return "INT8";
    case GgufValueType::uint16:
      return "UINT16";
    case GgufValueType::int16:
      return "INT16";
    case GgufValueType::uint32:
      return "UINT32";
    case GgufValueType::int32:
      return "INT32";
    case GgufValueType::float32:
      return "FLOAT32";
    case GgufValueType::boolean:
      return "BOOL";
    case GgufValueType::string:
      return "STRING";
    case GgufValueType::array:
      return "ARRAY";
    case GgufValueType::uint64:
      return "UINT64";
    case GgufValueType::int64:
      return "INT64";
    case GgufValueType::float64:
      return "FLOAT64";
  }
  return "unknown";
}

// ---------------------------------------------------------------------------------------------
// Values and tensors

GgufValue GgufValue::u32(uint32_t value) {
  GgufValue result;
  result.type = GgufValueType::uint32;
  result.integer = value;
  return result;
}

GgufValue GgufValue::i32(int32_t value) {
  GgufValue result;
  result.type = GgufValueType::int32;
  result.integer = static_cast<uint64_t>(static_cast<int64_t>(value));
  return result;
}

GgufValue GgufValue::u64(uint64_t value) {
  GgufValue result;
  result.type = GgufValueType::uint64;
  result.integer = value;
  return result;
}

GgufValue GgufValue::f32(float value) {
  GgufValue result;
  result.type = GgufValueType::float32;
  result.number = value;
  return result;
}

GgufValue GgufValue::boolean(bool value) {
  GgufValue result;
  result.type = GgufValueType::boolean;
  result.integer = value ? 1 : 0;
  return result;
}

GgufValue GgufValue::string(std::string value) {
  GgufValue result;
  result.type = GgufValueType::string;
  result.text = std::move(value);
  return result;
}

GgufValue GgufValue::strings(const std::vector<std::string>& values) {
  GgufValue result;
  result.type = GgufValueType::array;
  result.element_type = GgufValueType::string;
  result.elements.reserve(values.size());
  for (const std::string& value : values) result.elements.push_back(string(value));
  return result;
}

GgufValue GgufValue::f32_array(const std::vector<float>& values) {
  GgufValue result;
  result.type = GgufValueType::array;
  result.element_type = GgufValueType::float32;
  result.elements.reserve(values.size());
  for (const float value : values) result.elements.push_back(f32(value));
  return result;
}

GgufValue GgufValue::i32_array(const std::vector<int32_t>& values) {
  GgufValue result;
  result.type = GgufValueType::array;
  result.element_type = GgufValueType::int32;
  result.elements.reserve(values.size());
  for (const int32_t value : values) result.elements.push_back(i32(value));
  return result;
}

bool GgufValue::operator==(const GgufValue& other) const {
  if (type != other.type) return false;
  switch (type) {
    case GgufValueType::float32:
    case GgufValueType::float64:  // NaN equals NaN: a value read back equals the one written
      return number == other.number || (std::isnan(number) && std::isnan(other.number));
    case GgufValueType::string:
      return text == other.text;
    case GgufValueType::array:
      return element_type == other.element_type && elements == other.elements;
    default:
      return integer == other.integer;
  }
}

uint64_t GgufTensor::elements() const {
  uint64_t count = 1;
  for (const uint64_t dim : dims) count *= dim;
  return count;
}

// ---------------------------------------------------------------------------------------------
// Parse

GgufLayout parse_gguf(const fs::path& path, const uint8_t* bytes, uint64_t size) {
  Parser parser(path, bytes, size);
  const Where header{"header"};
  GgufLayout layout;

  if (size < 4) {
    parser.fail("it is ", size, " bytes long, shorter than the 4-byte magic 'GGUF'; ",
                kHintTruncated);
  }
  const uint32_t magic = parser.u32(header, "magic");
  if (magic != kGgufMagic) {
    std::string found;
    for (int i = 0; i < 4; ++i) {
      constexpr char kHex[] = "0123456789ABCDEF";
      const uint8_t byte = bytes[i];
      found += str(i ? " " : "", kHex[byte >> 4], kHex[byte & 0x0F]);
    }
    parser.fail("header: the magic bytes are ", found, "; expected 47 47 55 46 ('GGUF'); ",
                kHintTruncated);
  }
  layout.version = parser.u32(header, "version");
  check_version(parser, layout.version);
  const uint64_t tensor_count = parser.u64(header, "tensor_count");
  const uint64_t kv_count = parser.u64(header, "kv_count");

  // Bound the counts by the bytes left before reserving anything for them.
  const uint64_t left = parser.left();
  if (kv_count > left / kMinKvBytes) {
    parser.fail("header: kv_count ", kv_count, " cannot fit: each key/value record takes at least ",
                kMinKvBytes, " bytes and only ", left, " bytes follow the header; ",
                kHintTruncated);
  }
  if (tensor_count > left / kMinTensorInfoBytes) {
    parser.fail("header: tensor_count ", tensor_count,
                " cannot fit: each tensor-info record takes at least ", kMinTensorInfoBytes,
                " bytes and only ", left, " bytes follow the header; ", kHintTruncated);
  }
  if (kv_count * kMinKvBytes > left - tensor_count * kMinTensorInfoBytes) {
    parser.fail("header: kv_count ", kv_count, " and tensor_count ", tensor_count,
                " cannot fit: their records take at least ",
                kv_count * kMinKvBytes + tensor_count * kMinTensorInfoBytes, " bytes and only ",
                left, " bytes follow the header; ", kHintTruncated);
  }

  std::unordered_map<std::string, uint64_t> key_records;  // key -> record index
  layout.metadata.reserve(static_cast<size_t>(kv_count));
  for (uint64_t i = 0; i < kv_count; ++i) {
    const std::string record = str("key record ", i);
    std::string key = parser.string(Where{record}, "key");
    if (key.empty()) {
      parser.fail(record, ": the key is empty; keys must be non-empty; ", kHintReexport);
    }
    const std::string named = str("key ", quoted_name(key));
    if (const auto [first, inserted] = key_records.emplace(key, i); !inserted) {
      parser.fail(named, " appears twice (records ", first->second, " and ", i,
                  "); keys must be unique; ", kHintReexport);
    }
    const uint32_t type_id = parser.u32(Where{named}, "value type");
    if (type_id >= kValueTypeCount) {
      parser.fail(named, ": value type ", type_id, " is not a GGUF value type (0 to ",
                  kValueTypeCount - 1, "); ", kHintReexport);
    }
    GgufValue value = parser.value(static_cast<GgufValueType>(type_id), Where{named});
    layout.metadata.emplace_back(std::move(key), std::move(value));
  }
  layout.alignment = read_alignment(parser, layout.metadata);

  std::unordered_map<std::string, uint64_t> tensor_names;  // name -> tensor index
  layout.tensors.reserve(static_cast<size_t>(tensor_count));
  uint64_t expected_offset = 0;  // offset[i] = offset[i-1] + pad(nbytes[i-1], alignment)
  for (uint64_t i = 0; i < tensor_count; ++i) {
    const GgufTensor* previous = i == 0 ? nullptr : &layout.tensors.back();
    layout.tensors.push_back(read_tensor_info(parser, i, layout.alignment, expected_offset,
                                              previous, tensor_names, size));
    const GgufTensor& tensor = layout.tensors.back();
    expected_offset = pad_to(tensor.offset + tensor.nbytes, layout.alignment);
  }

  // The data section starts at the next multiple of the alignment (only when there are tensors:
  // a file without tensors may end right after its metadata).
  const uint64_t header_end = parser.position();
  layout.data_offset = tensor_count > 0 ? pad_to(header_end, layout.alignment) : header_end;
  for (uint64_t i = 0; i < layout.tensors.size(); ++i) {
    GgufTensor& tensor = layout.tensors[i];
    const uint64_t begin = layout.data_offset + tensor.offset;  // no overflow: both <= size + 2^32
    if (begin > size || tensor.nbytes > size - begin) {
      parser.fail("tensor ", i, " ", quoted_name(tensor.name), ": ", tensor.nbytes,
                  " bytes of data at byte ", begin, " of the file (data section at ",
                  layout.data_offset, " + offset ", tensor.offset,
                  ") reach past the end of the file at byte ", size, "; ", kHintTruncated);
    }
    tensor.data = bytes + begin;
  }
  return layout;
}

// ---------------------------------------------------------------------------------------------
// Reader

GgufReader::GgufReader(const fs::path& path) : file_(path, "GGUF file") {
  GgufLayout layout = parse_gguf(file_.path(), file_.data(), file_.size());
  version_ = layout.version;
  alignment_ = layout.alignment;
  data_offset_ = layout.data_offset;
  metadata_ = std::move(layout.metadata);
  tensors_ = std::move(layout.tensors);
}

const GgufValue* GgufReader::find(const std::string& key) const {
  for (const auto& [name, value] : metadata_) {
    if (name == key) return &value;
  }
  return nullptr;
}

const GgufValue& GgufReader::require(const std::string& key, GgufValueType type) const {
  const GgufValue* value = find(key);
  if (value == nullptr) {
    throw FileError(str("GGUF file '", path().string(), "': key ", quoted_name(key),
                        " is missing; expected a ", gguf_value_type_name(type), " value; ",
                        kHintReexport));
  }
  if (value->type != type) {
    throw FileError(str("GGUF file '", path().string(), "': key ", quoted_name(key), " is ",
                        describe_type(*value), "; expected ", gguf_value_type_name(type), "; ",
                        kHintReexport));
  }
  return *value;
}

uint32_t GgufReader::get_u32(const std::string& key) const {
  return static_cast<uint32_t>(require(key, GgufValueType::uint32).integer);
}

float GgufReader::get_f32(const std::string& key) const {
  return static_cast<float>(require(key, GgufValueType::float32).number);
}

bool GgufReader::get_bool(const std::string& key) const {
  return require(key, GgufValueType::boolean).integer != 0;
}

const std::string& GgufReader::get_string(const std::string& key) const {
  return require(key, GgufValueType::string).text;
}

const GgufValue& GgufReader::require_array(const std::string& key,
                                           GgufValueType element_type) const {
  const GgufValue* value = find(key);
  if (value == nullptr || value->type != GgufValueType::array ||
      value->element_type != element_type) {
    throw FileError(str("GGUF file '", path().string(), "': key ", quoted_name(key), " is ",
                        value == nullptr ? std::string("missing") : describe_type(*value),
                        "; expected ARRAY of ", gguf_value_type_name(element_type), "; ",
                        kHintReexport));
  }
  return *value;
}

const GgufTensor* GgufReader::find_tensor(const std::string& name) const {
  for (const GgufTensor& tensor : tensors_) {
    if (tensor.name == name) return &tensor;
  }
  return nullptr;
}

const GgufTensor& GgufReader::require_tensor(const std::string& name,
                                             const std::vector<uint64_t>& dims) const {
  const GgufTensor* tensor = find_tensor(name);
  if (tensor == nullptr) {
    throw FileError(str("GGUF file '", path().string(), "' has no tensor ", quoted_name(name),
                        " (it holds ", tensors_.size(), " tensors); expected one with dims ",
                        format_dims(dims), "; ", kHintReexport));
  }
  if (tensor->dims != dims) {
    throw FileError(str("GGUF file '", path().string(), "': tensor ", quoted_name(name),
                        " has dims ", format_dims(tensor->dims), "; expected ", format_dims(dims),
                        " (ggml order: the reverse of the PyTorch shape); ", kHintReexport));
  }
  return *tensor;
}

}  // namespace edgedistill::io
