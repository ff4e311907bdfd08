// safetensors reader and writer, dependency-free (core + nlohmann_json only; no LibTorch).
//
// The public format (huggingface/safetensors): an 8-byte little-endian header length N, then N
// bytes of JSON header, then the raw tensor bytes. The header maps each tensor name to
// {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the start of the byte
// buffer after the header) and may hold "__metadata__": a map of string to string.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "core/files.h"

namespace edgedistill::io {

namespace fs = std::filesystem;

// The largest JSON header accepted, as in the reference implementation: it bounds the memory a
// hostile file can make the parser allocate. Real headers are a few MB at most.
inline constexpr uint64_t kSafetensorsMaxHeaderBytes = 100'000'000;

// The dtypes edgedistill reads and writes, spelled as in safetensors headers.
enum class Dtype { F64, F32, F16, BF16, I64, I32, I16, I8, U64, U32, U16, U8, BOOL };

size_t dtype_size(Dtype dtype);
std::string_view dtype_name(Dtype dtype);  // "F32", ...
std::optional<Dtype> parse_dtype(std::string_view name);

// A tensor inside an open file: points into the memory map; valid while the file is open. The
// format does not align tensor data, so `data` may be misaligned for the dtype: read elements with
// std::memcpy, never through a cast pointer.
struct TensorView {
  std::string name;
  Dtype dtype = Dtype::F32;
  std::vector<int64_t> shape;  // row-major, outermost first (PyTorch order)
  const uint8_t* data = nullptr;
  size_t nbytes = 0;
  int64_t numel() const;  // 1 for a 0-d scalar, 0 when any dimension is 0
};

// Collects tensors and writes one file atomically. Tensors keep the order they were added, and
// the bytes written depend only on what was added, so equal inputs give byte-identical files.
class SafetensorsWriter {
 public:
  // Copies `nbytes` from `data`; nbytes must equal numel(shape) * dtype_size(dtype). The name
  // must be non-empty, unique, valid UTF-8 and not "__metadata__"; every dimension >= 0. These are
  // checked as invariants (ED_CHECK): callers are edgedistill code, not user input.
  void add(std::string name, Dtype dtype, std::vector<int64_t> shape, const void* data,
           size_t nbytes);
  // Key and value must be valid UTF-8 (JSON text); a second call with the same key replaces it.
  void set_metadata(std::string key, std::string value);
  // Header padded with spaces so the data starts at a multiple of 8 bytes, as the reference writer
  // does. Throws FileError when the file cannot be written.
  void write(const fs::path& path) const;

 private:
  struct Entry {
    std::string name;
    Dtype dtype;
    std::vector<int64_t> shape;
    std::vector<uint8_t> bytes;
  };
  std::vector<Entry> entries_;
  std::set<std::string, std::less<>> names_;
  std::map<std::string, std::string> metadata_;
};

// A memory-mapped safetensors file, fully validated on open: header length against the file size,
// JSON syntax, known dtypes, non-negative shapes, byte counts matching shapes, offsets inside the
// buffer, covering it exactly with no overlap or gap, unique names. Any violation throws FileError
// naming the file, the tensor or field, what was expected and what was found.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const fs::path& path);

  // In the order of their bytes in the file (for files SafetensorsWriter wrote: the order added).
  const std::vector<TensorView>& tensors() const { return tensors_; }
  // nullptr when absent.
  const TensorView* find(std::string_view name) const;
  // Throws FileError naming the file and the tensor when absent.
  const TensorView& at(std::string_view name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const fs::path& path() const { return file_.path(); }

 private:
  core::MappedFile file_;
  std::vector<TensorView> tensors_;
  std::map<std::string, size_t, std::less<>> index_;  // name -> position in tensors_
  std::map<std::string, std::string> metadata_;
};

}  // namespace edgedistill::io
