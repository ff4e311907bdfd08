// SHA-256 (FIPS 180-4), used for content hashes: tokenizer identity, data cache keys, manifests.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace edgedistill::core {

class Sha256 {
 public:
  using Digest = std::array<uint8_t, 32>;

  Sha256();
  void update(const void* data, size_t bytes);
  void update(std::string_view bytes) { update(bytes.data(), bytes.size()); }
  // Finishes the hash; the object must not be updated afterwards.
  Digest finish();

 private:
  void compress(const uint8_t* block);

  std::array<uint32_t, 8> state_;
  std::array<uint8_t, 64> buffer_{};
  size_t buffered_ = 0;
  uint64_t total_bytes_ = 0;
};

// Lower-case hex of a digest (64 characters).
std::string to_hex(const Sha256::Digest& digest);
// Parses 64 hex characters; returns false on anything else.
bool from_hex(std::string_view hex, Sha256::Digest& digest);

std::string sha256_hex(std::string_view bytes);
// Hashes a file's contents in chunks; errors name the file.
std::string sha256_file_hex(const std::filesystem::path& path);

}  // namespace edgedistill::core
