// The validating parse of a GGUF image in memory, behind GgufReader (io/gguf.h). Separate from
// the memory map so tests can run it on exactly-sized heap buffers, where AddressSanitizer reports
// any read past the end (a memory map rounds up to whole pages and hides such reads).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "io/gguf.h"

namespace edgedistill::io {

struct GgufLayout {
  uint32_t version = 0;
  uint32_t alignment = kGgufDefaultAlignment;
  uint64_t data_offset = 0;  // start of the data section in `bytes`
  std::vector<std::pair<std::string, GgufValue>> metadata;
  std::vector<GgufTensor> tensors;  // data points into `bytes`
};

// Validates and parses `size` bytes at `bytes` (may be null when size is 0); FileError naming
// `path` and the field on any violation. Never reads outside [bytes, bytes + size).
GgufLayout parse_gguf(const std::filesystem::path& path, const uint8_t* bytes, uint64_t size);

}  // namespace edgedistill::io
