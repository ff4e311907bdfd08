// File access with user-facing errors: every failure names the file and says what to do.
//
// Writes go to a temporary name in the same directory and are renamed into place on commit, so a
// killed process leaves the previous good file (or none), never a torn one (DESIGN.md).
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace edgedistill::core {

namespace fs = std::filesystem;

// Reads a whole file. `what` names the file's role for the error ("model config", "token shard").
std::string read_file(const fs::path& path, std::string_view what);

// Parses a JSON file; a syntax error names the file, line and column.
nlohmann::json read_json_file(const fs::path& path, std::string_view what);

// Streams bytes to `path` through a temporary file: nothing appears at `path` until commit().
// Destroying an uncommitted AtomicFile removes the temporary. A full disk or any other write
// failure throws FileError naming the file.
class AtomicFile {
 public:
  explicit AtomicFile(fs::path path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t bytes);
  void write(std::string_view bytes) { write(bytes.data(), bytes.size()); }
  // Flushes to disk and renames the temporary to the final path.
  void commit();
  uint64_t bytes_written() const { return bytes_written_; }
  const fs::path& path() const { return path_; }

 private:
  [[noreturn]] void fail(std::string_view action, int error_number);

  fs::path path_;
  fs::path temp_path_;
  int fd_ = -1;
  uint64_t bytes_written_ = 0;
  bool committed_ = false;
};

// Writes a whole file atomically.
void write_file_atomic(const fs::path& path, std::string_view bytes);

// Writes pretty-printed JSON (2-space indent, trailing newline) atomically.
void write_json_atomic(const fs::path& path, const nlohmann::json& value);

// Creates a directory and its parents; a failure names the directory.
void create_directories(const fs::path& path, std::string_view what);

// Refuses a binary format version this build does not read: a newer one (upgrade edgedistill) or
// an older one (`rebuild`, e.g. "re-run `edgedistill data`"). `name` names the file in messages.
void check_format_version(const std::string& name, uint32_t found, uint32_t supported,
                          const std::string& rebuild);

// Replaces directory `target` by the fully written directory `staging` (same parent), so readers
// see either the old or the new directory, never a half-written one.
void replace_directory(const fs::path& staging, const fs::path& target);

// Builds a directory through `write(staging)` in a fresh sibling of `target`, then moves it into
// place with replace_directory (creating target's parent). If `write` throws, the staging directory
// is removed and the exception passes on: `target` is never half-written.
void write_directory_atomic(const fs::path& target,
                            const std::function<void(const fs::path& staging)>& write);

// A read-only memory map of a whole file. An empty file maps to size 0 and a null data pointer.
class MappedFile {
 public:
  MappedFile() = default;
  MappedFile(const fs::path& path, std::string_view what);
  ~MappedFile();
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const fs::path& path() const { return path_; }

 private:
  void release();

  fs::path path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace edgedistill::core
