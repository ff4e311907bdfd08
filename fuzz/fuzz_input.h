// What the fuzz targets share: the input as a file (the readers map files), and the rule that
// bad input may only end in edgedistill's typed errors, never in a crash or another exception.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>

namespace edgedistill::fuzz {

// Writes the input to a file of this process's own under /dev/shm (or the temp directory) and
// returns its path; the file is rewritten for every input.
inline std::filesystem::path input_file(const uint8_t* data, size_t size, const char* suffix) {
  static const std::filesystem::path path = [&] {
    const std::filesystem::path shm = "/dev/shm";
    const auto dir = std::filesystem::exists(shm) ? shm : std::filesystem::temp_directory_path();
    return dir / ("edgedistill-fuzz-" + std::to_string(::getpid()) + suffix);
  }();
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) std::abort();
  if (size > 0 && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
  return path;
}

}  // namespace edgedistill::fuzz
