// Token shards: one split's token stream in a memory-mapped binary file (DESIGN.md "Formats").
//
//   offset 0   TokenShardHeader (64 bytes, little-endian)
//   offset 64  token_count tokens, uint16 or uint32 little-endian (the dtype in the header)
//
// Beside it, `<file>.json` describes the shard for people and tools (format, version, dtype,
// count, vocab size, tokenizer hash, split, documents, sources). The binary header alone is
// authoritative: the reader checks it, never the sidecar.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/files.h"

namespace edgedistill::data {

namespace fs = std::filesystem;

inline constexpr char kTokenShardMagic[8] = {'E', 'D', 'T', 'O', 'K', 'E', 'N', 'S'};
inline constexpr uint32_t kTokenShardVersion = 1;

// How tokens are stored: the narrowest unsigned type that holds every id of the vocabulary.
enum class TokenDtype : uint32_t {
  uint16 = 1,  // vocab_size <= 65536
  uint32 = 2,
};

#pragma pack(push, 1)
struct TokenShardHeader {
  char magic[8];                 // kTokenShardMagic, not NUL-terminated
  uint32_t version;              // kTokenShardVersion
  uint32_t dtype;                // TokenDtype
  uint64_t token_count;          // tokens after the header
  uint32_t vocab_size;           // every token is < vocab_size
  uint32_t reserved;             // 0
  uint8_t tokenizer_sha256[32];  // Tokenizer::hash() as bytes
};
#pragma pack(pop)
static_assert(sizeof(TokenShardHeader) == 64, "the token shard header is 64 bytes on disk");
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "token shards are little-endian; a big-endian host needs byte swapping here");

// The dtype for a vocabulary size.
TokenDtype token_dtype_for(int32_t vocab_size);
// Bytes per token (2 or 4).
size_t token_dtype_bytes(TokenDtype dtype);
// "uint16" or "uint32".
const char* token_dtype_name(TokenDtype dtype);

// Writes a shard and its sidecar atomically (a killed process leaves no torn file). Every token
// must be in [0, vocab_size). `sidecar_extra` is merged into the sidecar (split, documents, ...).
void write_token_shard(const fs::path& path, const std::vector<int32_t>& tokens, int32_t vocab_size,
                       const std::string& tokenizer_hash, const nlohmann::json& sidecar_extra);

// The path of a shard's sidecar: "<path>.json".
fs::path token_shard_sidecar_path(const fs::path& path);

// True when the file starts with the token shard magic (it may still be damaged).
bool looks_like_token_shard(const fs::path& path);

// A read-only view of a shard. Opening validates the header, the file size and every token, and
// (when `expected_tokenizer_hash` is not empty) that the shard was made with that tokenizer.
class TokenShard {
 public:
  explicit TokenShard(const fs::path& path, const std::string& expected_tokenizer_hash = "");
  TokenShard(TokenShard&&) noexcept = default;
  TokenShard& operator=(TokenShard&&) noexcept = default;
  TokenShard(const TokenShard&) = delete;
  TokenShard& operator=(const TokenShard&) = delete;

  int64_t size() const { return count_; }
  int32_t vocab_size() const { return vocab_size_; }
  TokenDtype dtype() const { return dtype_; }
  uint32_t version() const { return version_; }
  const std::string& tokenizer_hash() const { return tokenizer_hash_; }
  const fs::path& path() const { return file_.path(); }

  // Token i, 0 <= i < size().
  int32_t at(int64_t i) const;
  // Copies tokens [begin, begin + count) into out[0..count), widened to int64 (torch's index
  // type).
  void read(int64_t begin, int64_t count, int64_t* out) const;

 private:
  const uint8_t* tokens() const { return file_.data() + sizeof(TokenShardHeader); }

  core::MappedFile file_;
  int64_t count_ = 0;
  int32_t vocab_size_ = 0;
  TokenDtype dtype_ = TokenDtype::uint16;
  uint32_t version_ = 0;
  std::string tokenizer_hash_;
};

}  // namespace edgedistill::data
