#include "io/safetensors.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <limits>
#include <set>
#include <tuple>
#include <utility>

#include <nlohmann/json.hpp>

#include "core/error.h"

// Format facts used below (huggingface/safetensors README, "Format"):
// - 8 bytes: N, an unsigned little-endian 64-bit integer, the size of the header;
// - N bytes: a UTF-8 JSON object, which MUST begin with '{' and MAY be padded with spaces;
// - the rest: the byte buffer. data_offsets are [BEGIN, END) relative to its start;
// - duplicate keys are disallowed; empty tensors and 0-rank tensors are allowed.
// The reference reader also caps the header at 100 MB and requires the tensors, sorted by offset,
// to cover the buffer exactly (no overlap, no hole); we check the same.

namespace edgedistill::io {
namespace {

using nlohmann::json;

// Bytes of the little-endian header length that opens every file.
constexpr size_t kHeaderLengthBytes = 8;
// The reference writer pads the header so the buffer starts at a multiple of this.
constexpr size_t kDataAlignment = 8;
// How much of a JSON value or a name an error message quotes.
constexpr size_t kMaxQuotedChars = 60;
// How many tensor names at() lists when the requested one is absent.
constexpr size_t kNamesListedWhenMissing = 5;

constexpr std::string_view kMetadataKey = "__metadata__";
constexpr std::string_view kHintForeign = "the file is truncated or is not a safetensors file";
constexpr std::string_view kHintReexport = "re-export the checkpoint";

struct DtypeInfo {
  Dtype dtype;
  std::string_view name;
  size_t size;
};

constexpr std::array<DtypeInfo, 13> kDtypes = {{
    {Dtype::F64, "F64", 8},
    {Dtype::F32, "F32", 4},
    {Dtype::F16, "F16", 2},
    {Dtype::BF16, "BF16", 2},
    {Dtype::I64, "I64", 8},
    {Dtype::I32, "I32", 4},
    {Dtype::I16, "I16", 2},
    {Dtype::I8, "I8", 1},
    {Dtype::U64, "U64", 8},
    {Dtype::U32, "U32", 4},
    {Dtype::U16, "U16", 2},
    {Dtype::U8, "U8", 1},
    {Dtype::BOOL, "BOOL", 1},
}};

const DtypeInfo& dtype_info(Dtype dtype) {
  for (const DtypeInfo& info : kDtypes) {
    if (info.dtype == dtype) return info;
  }
  ED_CHECK(false, "unknown Dtype value ", static_cast<int>(dtype));
  return kDtypes[0];  // unreachable
}

std::string known_dtype_names() {
  std::string names;
  for (const DtypeInfo& info : kDtypes) {
    if (!names.empty()) names += ", ";
    names += info.name;
  }
  return names;
}

// Shortens `text` to at most kMaxQuotedChars bytes without splitting a UTF-8 sequence, so a
// hostile file cannot flood the terminal through an error message.
std::string clip(std::string_view text) {
  if (text.size() <= kMaxQuotedChars) return std::string(text);
  size_t cut = kMaxQuotedChars - 3;
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
  return str(text.substr(0, cut), "...");
}

// Named so that ADL cannot pick std::quoted (double quotes) for a std::string argument.
std::string single_quoted(std::string_view name) {
  return str("'", clip(name), "'");
}

// "string \"F32\"", "number -1", ...: what was found where something else was expected.
std::string describe(const json& value) {
  return str(value.type_name(), " ", clip(value.dump()));
}

std::string format_shape(const std::vector<int64_t>& shape) {
  std::string text = "[";
  for (size_t i = 0; i < shape.size(); ++i) text += str(i ? ", " : "", shape[i]);
  return text + "]";
}

// The element count of `shape` (dimensions already known to be >= 0), or nullopt when the product
// of its non-zero dimensions exceeds int64. Ignoring zeros makes the answer independent of the
// order of the dimensions, and bounding the whole product bounds every partial product, so
// TensorView::numel() can multiply left to right without overflow.
std::optional<uint64_t> checked_numel(const std::vector<int64_t>& shape) {
  constexpr uint64_t kLimit = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  uint64_t nonzero_product = 1;
  bool has_zero = false;
  for (int64_t dim : shape) {
    if (dim == 0) {
      has_zero = true;
      continue;
    }
    const uint64_t d = static_cast<uint64_t>(dim);
    if (nonzero_product > kLimit / d) return std::nullopt;
    nonzero_product *= d;
  }
  return has_zero ? 0 : nonzero_product;
}

// numel * element_size, or nullopt when it does not fit in size_t.
std::optional<size_t> checked_nbytes(uint64_t numel, size_t element_size) {
  const uint64_t limit = std::numeric_limits<size_t>::max();
  if (numel > limit / element_size) return std::nullopt;
  return static_cast<size_t>(numel * element_size);
}

bool is_valid_json_string(const std::string& text) {
  try {
    (void)json(text).dump();  // strict UTF-8 check
    return true;
  } catch (const json::type_error&) {
    return false;
  }
}

uint64_t read_u64_le(const uint8_t* bytes) {
  uint64_t value = 0;
  for (size_t i = 0; i < 8; ++i) value |= static_cast<uint64_t>(bytes[i]) << (8 * i);
  return value;
}

void append_u64_le(std::string& out, uint64_t value) {
  for (size_t i = 0; i < 8; ++i) out += static_cast<char>((value >> (8 * i)) & 0xFF);
}

// Everything the reader learns about one tensor before pointing into the map.
struct HeaderEntry {
  std::string name;
  Dtype dtype = Dtype::F32;
  std::vector<int64_t> shape;
  uint64_t begin = 0;
  uint64_t end = 0;
};

// Parses and validates the header of one file; every error names the file.
class HeaderParser {
 public:
  explicit HeaderParser(const fs::path& path) : path_(path) {}

  template <class... Args>
  [[noreturn]] void fail(Args&&... args) const {
    throw FileError(str("safetensors file '", path_.string(), "': ", std::forward<Args>(args)...));
  }

  // JSON text -> object. The DOM keeps only the last of duplicate keys, so duplicates are caught
  // while parsing, through the parser callback: one key set per open object.
  json parse(const char* text, size_t size) const {
    std::vector<std::set<std::string>> open_objects;
    std::string current_tensor;  // the top-level key being parsed
    const auto on_event = [&](int depth, json::parse_event_t event, json& parsed) {
      if (event == json::parse_event_t::object_start) {
        open_objects.emplace_back();
      } else if (event == json::parse_event_t::object_end) {
        open_objects.pop_back();
      } else if (event == json::parse_event_t::key) {
        const std::string& key = parsed.get_ref<const std::string&>();
        if (depth == 1) current_tensor = key;
        if (!open_objects.back().insert(key).second) {
          if (depth == 1) {
            fail("the header names ", single_quoted(key),
                 " twice; the format forbids duplicate keys and readers disagree on which one "
                 "counts; ",
                 kHintReexport);
          }
          fail("the header entry ", single_quoted(current_tensor), " has the key ",
               single_quoted(key), " twice; the format forbids duplicate keys; ", kHintReexport);
        }
      }
      return true;
    };
    try {
      return json::parse(text, text + size, on_event);
    } catch (const json::parse_error& e) {
      // e.what() is "[json.exception.parse_error.101] parse error at line 1, column 5: ...".
      std::string reason = e.what();
      const size_t bracket = reason.find("] ");
      if (bracket != std::string::npos) reason = reason.substr(bracket + 2);
      fail("the header is not valid JSON (", reason, "); ", kHintForeign);
    }
  }

  std::map<std::string, std::string> metadata(const json& value) const {
    std::map<std::string, std::string> result;
    // serde reads the field as Option<map>, so the reference accepts null as "no metadata".
    if (value.is_null()) return result;
    if (!value.is_object()) {
      fail("\"", kMetadataKey, "\" must be an object mapping strings to strings, found ",
           describe(value), "; ", kHintReexport);
    }
    for (const auto& [key, text] : value.items()) {
      if (!text.is_string()) {
        fail("\"", kMetadataKey, "\" value for ", single_quoted(key), " must be a string, found ",
             describe(text), "; ", kHintReexport);
      }
      result.emplace(key, text.get<std::string>());
    }
    return result;
  }

  HeaderEntry entry(const std::string& name, const json& value, uint64_t buffer_bytes) const {
    const std::string tensor = str("tensor ", single_quoted(name));
    if (!value.is_object()) {
      fail(tensor, ": expected an object with \"dtype\", \"shape\" and \"data_offsets\", found ",
           describe(value), "; ", kHintReexport);
    }
    HeaderEntry entry;
    entry.name = name;
    entry.dtype = dtype(tensor, field(tensor, value, "dtype"));
    entry.shape = shape(tensor, field(tensor, value, "shape"));
    const std::optional<uint64_t> numel = checked_numel(entry.shape);
    if (!numel) {
      fail(tensor, ": shape ", format_shape(entry.shape),
           " has more elements than fit in a signed 64-bit count; ", kHintReexport);
    }
    const size_t element_size = dtype_size(entry.dtype);
    const std::optional<size_t> nbytes = checked_nbytes(*numel, element_size);
    if (!nbytes) {
      fail(tensor, ": shape ", format_shape(entry.shape), " of ", dtype_name(entry.dtype),
           " needs more bytes than this machine can address; ", kHintReexport);
    }

    const json& offsets = field(tensor, value, "data_offsets");
    if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
        !offsets[1].is_number_unsigned()) {
      fail(tensor, ": \"data_offsets\" must be two non-negative integers [begin, end], found ",
           describe(offsets), "; ", kHintReexport);
    }
    entry.begin = offsets[0].get<uint64_t>();
    entry.end = offsets[1].get<uint64_t>();
    if (entry.begin > entry.end) {
      fail(tensor, ": \"data_offsets\" [", entry.begin, ", ", entry.end,
           "] end before they begin; expected begin <= end; ", kHintReexport);
    }
    if (entry.end - entry.begin != *nbytes) {
      fail(tensor, ": shape ", format_shape(entry.shape), " of ", dtype_name(entry.dtype),
           " needs ", *nbytes, " bytes (", *numel, " x ", element_size, ") but \"data_offsets\" [",
           entry.begin, ", ", entry.end, "] hold ", entry.end - entry.begin, "; ", kHintReexport);
    }
    if (entry.end > buffer_bytes) {
      fail(tensor, ": \"data_offsets\" [", entry.begin, ", ", entry.end,
           "] reach past the end of the data buffer, which holds ", buffer_bytes,
           " bytes; the file is truncated; copy or export it again");
    }
    return entry;
  }

  // Sorted by offset, the tensors must tile [0, buffer_bytes) exactly: an overlap would alias two
  // tensors, a hole would hide unaccounted bytes (the reference reader rejects both).
  void check_tiling(std::vector<HeaderEntry>& entries, uint64_t buffer_bytes) const {
    std::sort(entries.begin(), entries.end(), [](const HeaderEntry& a, const HeaderEntry& b) {
      return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
    });
    uint64_t covered = 0;  // the buffer [0, covered) belongs to the tensors seen so far
    const HeaderEntry* previous = nullptr;
    for (const HeaderEntry& entry : entries) {
      if (entry.begin < covered) {
        fail("tensors ", single_quoted(previous->name), " (bytes [", previous->begin, ", ",
             previous->end, ")) and ", single_quoted(entry.name), " (bytes [", entry.begin, ", ",
             entry.end, ")) overlap; each tensor must own its bytes; ", kHintReexport);
      }
      if (entry.begin > covered) {
        fail("bytes [", covered, ", ", entry.begin, ") of the data buffer belong to no tensor (",
             previous ? str("between ", single_quoted(previous->name), " and ") : str("before "),
             single_quoted(entry.name),
             "); the format requires the tensors to cover the buffer without "
             "holes; ",
             kHintReexport);
      }
      covered = entry.end;
      previous = &entry;
    }
    if (covered != buffer_bytes) {
      fail("the last ", buffer_bytes - covered, " bytes of the ", buffer_bytes,
           "-byte data buffer belong to no tensor",
           previous ? str(" (after ", single_quoted(previous->name), ")") : std::string(),
           "; the format requires the tensors to cover the buffer exactly; ", kHintReexport);
    }
  }

 private:
  const json& field(const std::string& tensor, const json& object, const char* key) const {
    const auto found = object.find(key);
    if (found == object.end()) {
      fail(tensor, ": the field \"", key, "\" is missing; ", kHintReexport);
    }
    return *found;
  }

  Dtype dtype(const std::string& tensor, const json& value) const {
    if (!value.is_string()) {
      fail(tensor, ": \"dtype\" must be a string such as \"F32\", found ", describe(value), "; ",
           kHintReexport);
    }
    const std::string& name = value.get_ref<const std::string&>();
    const std::optional<Dtype> parsed = parse_dtype(name);
    if (!parsed) {
      fail(tensor, ": dtype ", single_quoted(name),
           " is not one edgedistill reads (expected one of ", known_dtype_names(),
           "); convert the checkpoint to one of these");
    }
    return *parsed;
  }

  std::vector<int64_t> shape(const std::string& tensor, const json& value) const {
    if (!value.is_array()) {
      fail(tensor, ": \"shape\" must be an array of non-negative integers, found ", describe(value),
           "; ", kHintReexport);
    }
    constexpr uint64_t kMaxDim = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
    std::vector<int64_t> dims;
    dims.reserve(value.size());
    for (const json& dim : value) {
      // nlohmann stores non-negative integers as number_unsigned, negative ones as
      // number_integer, and anything with a fraction or exponent as number_float.
      if (!dim.is_number_unsigned() || dim.get<uint64_t>() > kMaxDim) {
        fail(tensor, ": \"shape\" must be an array of non-negative integers, found ", describe(dim),
             " in ", describe(value), "; ", kHintReexport);
      }
      dims.push_back(static_cast<int64_t>(dim.get<uint64_t>()));
    }
    return dims;
  }

  const fs::path& path_;
};

}  // namespace

size_t dtype_size(Dtype dtype) {
  return dtype_info(dtype).size;
}

std::string_view dtype_name(Dtype dtype) {
  return dtype_info(dtype).name;
}

std::optional<Dtype> parse_dtype(std::string_view name) {
  for (const DtypeInfo& info : kDtypes) {
    if (info.name == name) return info.dtype;
  }
  return std::nullopt;
}

int64_t TensorView::numel() const {
  int64_t count = 1;
  for (int64_t dim : shape) count *= dim;
  return count;
}

// ---------------------------------------------------------------------------------------------
// Writer

void SafetensorsWriter::add(std::string name, Dtype dtype, std::vector<int64_t> shape,
                            const void* data, size_t nbytes) {
  ED_CHECK(!name.empty(), "tensor name is empty");
  ED_CHECK(name != kMetadataKey, "tensor name '", name, "' is reserved for metadata");
  ED_CHECK(is_valid_json_string(name), "tensor name is not valid UTF-8: '", clip(name), "'");
  ED_CHECK(names_.count(name) == 0, "tensor '", name, "' added twice");
  for (int64_t dim : shape) {
    ED_CHECK(dim >= 0, "tensor '", name, "' has shape ", format_shape(shape));
  }
  const std::optional<uint64_t> numel = checked_numel(shape);
  ED_CHECK(numel.has_value(), "tensor '", name, "' shape ", format_shape(shape), " overflows");
  const std::optional<size_t> expected = checked_nbytes(*numel, dtype_size(dtype));
  ED_CHECK(expected.has_value() && *expected == nbytes, "tensor '", name, "' shape ",
           format_shape(shape), " of ", dtype_name(dtype), " given ", nbytes, " bytes");
  ED_CHECK(data != nullptr || nbytes == 0, "tensor '", name, "' has null data");

  const uint8_t* bytes = static_cast<const uint8_t*>(data);
  names_.insert(name);
  entries_.push_back(
      Entry{std::move(name), dtype, std::move(shape),
            nbytes ? std::vector<uint8_t>(bytes, bytes + nbytes) : std::vector<uint8_t>()});
}

void SafetensorsWriter::set_metadata(std::string key, std::string value) {
  ED_CHECK(is_valid_json_string(key), "metadata key is not valid UTF-8: '", clip(key), "'");
  ED_CHECK(is_valid_json_string(value), "metadata value for '", key, "' is not valid UTF-8");
  metadata_[std::move(key)] = std::move(value);
}

void SafetensorsWriter::write(const fs::path& path) const {
  // Compact JSON like the reference writer (serde_json): metadata first (its keys sorted, as
  // std::map keeps them), then the tensors in the order added, their bytes laid out back to back.
  std::string header = "{";
  if (!metadata_.empty()) header += str("\"", kMetadataKey, "\":", json(metadata_).dump());
  uint64_t offset = 0;
  for (const Entry& entry : entries_) {
    if (header.size() > 1) header += ',';
    std::string dims;
    for (size_t i = 0; i < entry.shape.size(); ++i) dims += str(i ? "," : "", entry.shape[i]);
    const uint64_t end = offset + entry.bytes.size();
    header += str(json(entry.name).dump(), ":{\"dtype\":\"", dtype_name(entry.dtype),
                  "\",\"shape\":[", dims, "],\"data_offsets\":[", offset, ",", end, "]}");
    offset = end;
  }
  header += '}';
  // Spaces (allowed by the format) so that 8 + header size is a multiple of kDataAlignment.
  const size_t padding = (kDataAlignment - header.size() % kDataAlignment) % kDataAlignment;
  header.append(padding, ' ');

  std::string prefix;
  append_u64_le(prefix, header.size());
  core::AtomicFile file(path);
  file.write(prefix);
  file.write(header);
  for (const Entry& entry : entries_) file.write(entry.bytes.data(), entry.bytes.size());
  file.commit();
}

// ---------------------------------------------------------------------------------------------
// Reader

SafetensorsFile::SafetensorsFile(const fs::path& path) : file_(path, "safetensors file") {
  const HeaderParser parser(file_.path());
  const uint8_t* bytes = file_.data();
  const size_t size = file_.size();
  if (size < kHeaderLengthBytes) {
    parser.fail("it is ", size, " bytes long, shorter than the ", kHeaderLengthBytes,
                "-byte header length that starts every safetensors file; ", kHintForeign);
  }
  const uint64_t header_bytes = read_u64_le(bytes);
  const uint64_t after_length = size - kHeaderLengthBytes;
  if (header_bytes > after_length) {
    parser.fail("the header length field says ", header_bytes, " bytes but only ", after_length,
                " bytes follow it; ", kHintForeign);
  }
  if (header_bytes > kSafetensorsMaxHeaderBytes) {
    parser.fail("the header is ", header_bytes, " bytes, more than the format's limit of ",
                kSafetensorsMaxHeaderBytes, "; the file is corrupt or not a safetensors file");
  }
  const char* header_text = reinterpret_cast<const char*>(bytes + kHeaderLengthBytes);
  if (header_bytes == 0 || header_text[0] != '{') {
    parser.fail("the header does not start with '{' as the format requires; ", kHintForeign);
  }

  // nlohmann's lexer takes a NUL byte for the end of input, which would let bytes after it pass
  // unparsed; JSON text never holds a raw NUL (strings must escape control characters).
  const void* nul = std::memchr(header_text, '\0', static_cast<size_t>(header_bytes));
  if (nul != nullptr) {
    parser.fail("the header holds a NUL byte at offset ",
                static_cast<const char*>(nul) - header_text, ", which JSON text cannot contain; ",
                kHintForeign);
  }

  const json header = parser.parse(header_text, static_cast<size_t>(header_bytes));
  if (!header.is_object()) {
    parser.fail("the header must be a JSON object, found ", describe(header), "; ", kHintForeign);
  }
  const uint64_t buffer_bytes = after_length - header_bytes;
  std::vector<HeaderEntry> entries;
  entries.reserve(header.size());
  for (const auto& [name, value] : header.items()) {
    if (name == kMetadataKey) {
      metadata_ = parser.metadata(value);
    } else {
      entries.push_back(parser.entry(name, value, buffer_bytes));
    }
  }
  parser.check_tiling(entries, buffer_bytes);

  const uint8_t* buffer = bytes + kHeaderLengthBytes + header_bytes;
  tensors_.reserve(entries.size());
  for (HeaderEntry& entry : entries) {
    TensorView view;
    view.name = std::move(entry.name);
    view.dtype = entry.dtype;
    view.shape = std::move(entry.shape);
    view.data = buffer + entry.begin;
    view.nbytes = static_cast<size_t>(entry.end - entry.begin);
    // Names are unique: the parser rejected duplicate keys.
    index_.emplace(view.name, tensors_.size());
    tensors_.push_back(std::move(view));
  }
}

const TensorView* SafetensorsFile::find(std::string_view name) const {
  const auto found = index_.find(name);
  return found == index_.end() ? nullptr : &tensors_[found->second];
}

const TensorView& SafetensorsFile::at(std::string_view name) const {
  if (const TensorView* view = find(name)) return *view;
  // Suggest the names sharing the longest prefix with the one asked for (a typo or a renamed layer
  // usually keeps the prefix), then file order.
  std::vector<std::pair<size_t, size_t>> ranked;  // (common prefix length, position)
  for (size_t i = 0; i < tensors_.size(); ++i) {
    const std::string& candidate = tensors_[i].name;
    const auto mismatch =
        std::mismatch(name.begin(), name.end(), candidate.begin(), candidate.end());
    ranked.emplace_back(static_cast<size_t>(mismatch.first - name.begin()), i);
  }
  std::stable_sort(ranked.begin(), ranked.end(),
                   [](const auto& a, const auto& b) { return a.first > b.first; });
  std::string listed;
  for (size_t i = 0; i < std::min(ranked.size(), kNamesListedWhenMissing); ++i) {
    listed += str(i ? ", " : "", single_quoted(tensors_[ranked[i].second].name));
  }
  throw FileError(
      str("safetensors file '", path().string(), "' has no tensor ", single_quoted(name),
          tensors_.empty()
              ? std::string("; it holds no tensors")
              : str("; it holds ", tensors_.size(), " tensors, the closest names being ", listed),
          "; check the tensor name and that the checkpoint is for this model"));
}

}  // namespace edgedistill::io
