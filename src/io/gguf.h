// GGUF version 3 reader and writer (docs/runtime.md, "What export writes" and "Reading a file"),
// dependency-free (core only).
//
// The reader memory-maps the file and validates everything before anything is used: magic,
// version, counts, every string and array length against the bytes left, value and tensor types,
// dims against block sizes, tensor data offsets exactly sequential and aligned, and the data inside
// the file. Any violation is a FileError naming the file and the field (e.g. "tensor 3
// 'blk.0.attn_q.weight': offset 64 is not aligned to 32"), never a crash or an out-of-bounds read.
//
// The writer produces what llama.cpp's loader accepts: sequential aligned offsets, zero padding,
// key/value types as given (llama.cpp checks them exactly: counts are UINT32, floats FLOAT32).
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/files.h"
#include "io/gguf_types.h"

namespace edgedistill::io {

namespace fs = std::filesystem;

inline constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" read as a little-endian uint32

// Whether `path` is a regular file that starts with the GGUF magic (nothing else is checked).
bool is_gguf_file(const fs::path& path);
inline constexpr uint32_t kGgufVersion = 3;
inline constexpr uint32_t kGgufDefaultAlignment = 32;

enum class GgufValueType : uint32_t {
  uint8 = 0,
  int8 = 1,
  uint16 = 2,
  int16 = 3,
  uint32 = 4,
  int32 = 5,
  float32 = 6,
  boolean = 7,
  string = 8,
  array = 9,
  uint64 = 10,
  int64 = 11,
  float64 = 12,
};
const char* gguf_value_type_name(GgufValueType type);  // "UINT32", as the spec spells them

// One metadata value. Integers and booleans are held in `integer` (signed types sign-extended),
// FLOAT32/FLOAT64 in `number`, STRING in `text`; an ARRAY has `element_type` and `elements`.
struct GgufValue {
  GgufValueType type = GgufValueType::uint32;
  uint64_t integer = 0;
  double number = 0;
  std::string text;
  GgufValueType element_type = GgufValueType::uint32;  // arrays only
  std::vector<GgufValue> elements;                     // arrays only

  static GgufValue u32(uint32_t value);
  static GgufValue i32(int32_t value);
  static GgufValue u64(uint64_t value);
  static GgufValue f32(float value);
  static GgufValue boolean(bool value);
  static GgufValue string(std::string value);
  static GgufValue strings(const std::vector<std::string>& values);
  static GgufValue f32_array(const std::vector<float>& values);
  static GgufValue i32_array(const std::vector<int32_t>& values);

  bool operator==(const GgufValue& other) const;
  bool operator!=(const GgufValue& other) const { return !(*this == other); }
};

// A tensor-info record. dims are in ggml order: dims[0] is the contiguous row length (the REVERSE
// of the PyTorch shape). `data` points into the reader's memory map.
struct GgufTensor {
  std::string name;
  GgmlType type = GgmlType::f32;
  std::vector<uint64_t> dims;
  uint64_t offset = 0;  // relative to the data section
  uint64_t nbytes = 0;
  const uint8_t* data = nullptr;

  uint64_t elements() const;
  uint64_t rows() const { return elements() / dims.at(0); }  // all dims but dims[0]
};

class GgufReader {
 public:
  // Maps and validates the file; FileError on any violation.
  explicit GgufReader(const fs::path& path);

  const fs::path& path() const { return file_.path(); }
  uint64_t file_bytes() const { return file_.size(); }
  uint32_t version() const { return version_; }
  uint32_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }  // start of the data section in the file

  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return metadata_; }
  const GgufValue* find(const std::string& key) const;
  // Typed access: a missing key or a value of another type is a FileError naming the key, the
  // type found and the type expected.
  const GgufValue& require(const std::string& key, GgufValueType type) const;
  uint32_t get_u32(const std::string& key) const;
  float get_f32(const std::string& key) const;
  bool get_bool(const std::string& key) const;
  const std::string& get_string(const std::string& key) const;
  // An ARRAY whose elements have `element_type`.
  const GgufValue& require_array(const std::string& key, GgufValueType element_type) const;

  const std::vector<GgufTensor>& tensors() const { return tensors_; }
  const GgufTensor* find_tensor(const std::string& name) const;
  // A tensor that must exist with these ggml-order dims (FileError naming the tensor, the dims
  // found and expected otherwise).
  const GgufTensor& require_tensor(const std::string& name,
                                   const std::vector<uint64_t>& dims) const;

 private:
  core::MappedFile file_;
  uint32_t version_ = 0;
  uint32_t alignment_ = kGgufDefaultAlignment;
  uint64_t data_offset_ = 0;
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::vector<GgufTensor> tensors_;
};

class GgufWriter {
 public:
  // Adds a key; a duplicate or empty key is an InternalError (our code chooses keys).
  void set(const std::string& key, GgufValue value);
  // Adds a tensor: dims in ggml order, `data` exactly the type's nbytes for the dims (checked;
  // dims[0] must be a multiple of the block size). Names must be unique and at most 63 bytes.
  void add_tensor(const std::string& name, GgmlType type, std::vector<uint64_t> dims,
                  std::vector<uint8_t> data);
  // Writes the file through a temporary name (core::AtomicFile). Alignment: general.alignment
  // when it was set (UINT32, a power of two), else 32.
  void write(const fs::path& path) const;

  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return metadata_; }
  // The value of a key set before, to extend in place (e.g. an array); nullptr when unset.
  GgufValue* find(const std::string& key);

 private:
  struct PendingTensor {
    std::string name;
    GgmlType type;
    std::vector<uint64_t> dims;
    std::vector<uint8_t> data;
  };
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::vector<PendingTensor> tensors_;
};

}  // namespace edgedistill::io
