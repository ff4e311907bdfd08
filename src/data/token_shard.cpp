#include "data/token_shard.h"

#include <cstring>
#include <fstream>

#include "core/error.h"
#include "core/sha256.h"

namespace edgedistill::data {
namespace {

constexpr const char* kSidecarFormat = "edgedistill-token-shard";
// Tokens are converted and written in blocks of this many (64K tokens: at most 256 KB).
constexpr size_t kWriteBlockTokens = size_t{1} << 16;

template <class Stored>
void write_tokens_as(core::AtomicFile& file, const std::vector<int32_t>& tokens) {
  std::vector<Stored> block;
  block.reserve(std::min(tokens.size(), kWriteBlockTokens));
  for (size_t start = 0; start < tokens.size(); start += kWriteBlockTokens) {
    const size_t end = std::min(tokens.size(), start + kWriteBlockTokens);
    block.clear();
    for (size_t i = start; i < end; ++i) block.push_back(static_cast<Stored>(tokens[i]));
    file.write(block.data(), block.size() * sizeof(Stored));
  }
}

template <class Stored>
int32_t load_token(const uint8_t* tokens, int64_t i) {
  Stored value;
  std::memcpy(&value, tokens + static_cast<size_t>(i) * sizeof(Stored), sizeof(Stored));
  return static_cast<int32_t>(value);
}

// The first position whose token is >= vocab_size, or -1.
template <class Stored>
int64_t first_out_of_range(const uint8_t* tokens, int64_t count, uint32_t vocab_size) {
  for (int64_t i = 0; i < count; ++i) {
    Stored value;
    std::memcpy(&value, tokens + static_cast<size_t>(i) * sizeof(Stored), sizeof(Stored));
    if (value >= vocab_size) return i;
  }
  return -1;
}

}  // namespace

TokenDtype token_dtype_for(int32_t vocab_size) {
  ED_CHECK(vocab_size > 0, "vocab_size=", vocab_size);
  return vocab_size <= 65536 ? TokenDtype::uint16 : TokenDtype::uint32;
}

size_t token_dtype_bytes(TokenDtype dtype) {
  return dtype == TokenDtype::uint16 ? 2 : 4;
}

const char* token_dtype_name(TokenDtype dtype) {
  return dtype == TokenDtype::uint16 ? "uint16" : "uint32";
}

fs::path token_shard_sidecar_path(const fs::path& path) {
  return fs::path(path.string() + ".json");
}

void write_token_shard(const fs::path& path, const std::vector<int32_t>& tokens, int32_t vocab_size,
                       const std::string& tokenizer_hash, const nlohmann::json& sidecar_extra) {
  const TokenDtype dtype = token_dtype_for(vocab_size);
  core::Sha256::Digest digest{};
  ED_CHECK(core::from_hex(tokenizer_hash, digest), "tokenizer hash '", tokenizer_hash, "'");
  for (size_t i = 0; i < tokens.size(); ++i) {
    ED_CHECK(tokens[i] >= 0 && tokens[i] < vocab_size, "token ", tokens[i], " at ", i,
             " outside vocabulary ", vocab_size);
  }

  TokenShardHeader header{};
  std::memcpy(header.magic, kTokenShardMagic, sizeof(header.magic));
  header.version = kTokenShardVersion;
  header.dtype = static_cast<uint32_t>(dtype);
  header.token_count = tokens.size();
  header.vocab_size = static_cast<uint32_t>(vocab_size);
  header.reserved = 0;
  std::memcpy(header.tokenizer_sha256, digest.data(), digest.size());

  core::AtomicFile file(path);
  file.write(&header, sizeof(header));
  if (dtype == TokenDtype::uint16) {
    write_tokens_as<uint16_t>(file, tokens);
  } else {
    write_tokens_as<uint32_t>(file, tokens);
  }
  file.commit();

  nlohmann::ordered_json sidecar = {
      {"format", kSidecarFormat},         {"version", kTokenShardVersion},
      {"dtype", token_dtype_name(dtype)}, {"count", tokens.size()},
      {"vocab_size", vocab_size},         {"tokenizer_hash", tokenizer_hash},
  };
  for (const auto& item : sidecar_extra.items()) sidecar[item.key()] = item.value();
  core::write_file_atomic(token_shard_sidecar_path(path), sidecar.dump(2) + "\n");
}

bool looks_like_token_shard(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[sizeof(kTokenShardMagic)] = {};
  if (!in.read(magic, sizeof(magic))) return false;
  return std::memcmp(magic, kTokenShardMagic, sizeof(magic)) == 0;
}

TokenShard::TokenShard(const fs::path& path, const std::string& expected_tokenizer_hash)
    : file_(path, "token shard") {
  const std::string name = str("token shard '", path.string(), "'");
  const size_t file_bytes = file_.size();
  if (file_bytes < sizeof(kTokenShardMagic) ||
      std::memcmp(file_.data(), kTokenShardMagic, sizeof(kTokenShardMagic)) != 0) {
    throw FileError(
        str("'", path.string(),
            "' is not an edgedistill token shard (it does not start with \"EDTOKENS\"); "
            "token shards are made by `edgedistill data`"));
  }
  if (file_bytes < sizeof(TokenShardHeader)) {
    throw FileError(str(name, " is truncated: its header needs ", sizeof(TokenShardHeader),
                        " bytes, the file has ", file_bytes, "; re-run `edgedistill data`"));
  }
  TokenShardHeader header;
  std::memcpy(&header, file_.data(), sizeof(header));
  version_ = header.version;
  core::check_format_version(name, header.version, kTokenShardVersion, "re-run `edgedistill data`");
  if (header.dtype != static_cast<uint32_t>(TokenDtype::uint16) &&
      header.dtype != static_cast<uint32_t>(TokenDtype::uint32)) {
    throw FileError(str(name, " has the unknown token dtype code ", header.dtype,
                        " (expected 1 for uint16 or 2 for uint32): the file is damaged; re-run "
                        "`edgedistill data`"));
  }
  dtype_ = static_cast<TokenDtype>(header.dtype);
  if (header.vocab_size == 0 || header.vocab_size > 0x7FFFFFFFu ||
      (dtype_ == TokenDtype::uint16 && header.vocab_size > 65536)) {
    throw FileError(str(name, " records the impossible vocabulary size ", header.vocab_size,
                        " for ", token_dtype_name(dtype_),
                        " tokens: the file is damaged; re-run `edgedistill data`"));
  }
  vocab_size_ = static_cast<int32_t>(header.vocab_size);

  // Compare counts rather than multiply, so a damaged count cannot overflow.
  const size_t token_bytes = token_dtype_bytes(dtype_);
  const size_t payload = file_bytes - sizeof(TokenShardHeader);
  const uint64_t tokens_present = payload / token_bytes;
  if (header.token_count > tokens_present || payload % token_bytes != 0 ||
      header.token_count < tokens_present) {
    const long double expected = static_cast<long double>(sizeof(TokenShardHeader)) +
                                 static_cast<long double>(header.token_count) * token_bytes;
    const char* problem = header.token_count > tokens_present ? "is truncated" : "has extra bytes";
    throw FileError(str(name, " ", problem, ": its header promises ", header.token_count, " ",
                        token_dtype_name(dtype_), " tokens (", static_cast<uint64_t>(expected),
                        " bytes in all), the file has ", file_bytes,
                        " bytes; re-run `edgedistill data`"));
  }
  count_ = static_cast<int64_t>(header.token_count);

  core::Sha256::Digest digest;
  std::memcpy(digest.data(), header.tokenizer_sha256, digest.size());
  tokenizer_hash_ = core::to_hex(digest);
  if (!expected_tokenizer_hash.empty() && expected_tokenizer_hash != tokenizer_hash_) {
    throw FileError(str(name, " was made with another tokenizer (hash ", tokenizer_hash_,
                        ", expected ", expected_tokenizer_hash,
                        "); re-run `edgedistill data` or use the tokenizer the shard was made "
                        "with"));
  }

  const int64_t bad = dtype_ == TokenDtype::uint16
                          ? first_out_of_range<uint16_t>(tokens(), count_, header.vocab_size)
                          : first_out_of_range<uint32_t>(tokens(), count_, header.vocab_size);
  if (bad >= 0) {
    throw FileError(str(name, " holds the token ", at(bad), " at position ", bad,
                        ", outside its vocabulary of ", vocab_size_,
                        " pieces: the file is damaged; re-run `edgedistill data`"));
  }
}

int32_t TokenShard::at(int64_t i) const {
  ED_CHECK(i >= 0 && i < count_, "token index ", i, " of ", count_);
  return dtype_ == TokenDtype::uint16 ? load_token<uint16_t>(tokens(), i)
                                      : load_token<uint32_t>(tokens(), i);
}

void TokenShard::read(int64_t begin, int64_t count, int64_t* out) const {
  ED_CHECK(begin >= 0 && count >= 0 && begin <= count_ && count <= count_ - begin, "tokens [",
           begin, ", ", begin + count, ") of ", count_);
  if (dtype_ == TokenDtype::uint16) {
    for (int64_t i = 0; i < count; ++i) out[i] = load_token<uint16_t>(tokens(), begin + i);
  } else {
    for (int64_t i = 0; i < count; ++i) out[i] = load_token<uint32_t>(tokens(), begin + i);
  }
}

}  // namespace edgedistill::data
