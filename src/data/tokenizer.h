// Tokenizers: the interface, saving and loading a tokenizer directory, training one from a config,
// and the checks that a vocabulary exports as a GGUF "llama" tokenizer.
//
// Every tokenizer puts <unk> at 0, <s> at 1 and </s> at 2 (the llama defaults, shared/specs/
// gguf.md "Tokenizer metadata") and can spell every byte ("<0xNN>" pieces), so no text is lost.
//
// A tokenizer directory holds tokenizer.json
//   {"format": "edgedistill-tokenizer", "version": 1, "kind": ..., "vocab_size": ..., "hash": ...}
// and, for SentencePiece, the model file it names ("model_file").
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace edgedistill::data {

namespace fs = std::filesystem;

struct TokenizerConfig;

// GGUF token types (tokenizer.ggml.token_type), numbered as llama.cpp reads them.
enum class TokenType : int32_t {
  normal = 1,
  unknown = 2,
  control = 3,
  user_defined = 4,
  unused = 5,
  byte = 6,
};

// "normal", "unknown", ...
const char* token_type_name(TokenType type);

class Tokenizer {
 public:
  static constexpr int32_t kUnkId = 0;
  static constexpr int32_t kBosId = 1;
  static constexpr int32_t kEosId = 2;

  virtual ~Tokenizer() = default;

  // Token ids of `text`, without <s> or </s>.
  virtual std::vector<int32_t> encode(std::string_view text) const = 0;
  // The text of `ids`; control tokens (<s>, </s>) are skipped. An id outside the vocabulary is an
  // InputError.
  virtual std::string decode(const std::vector<int32_t>& ids) const = 0;
  virtual int32_t vocab_size() const = 0;
  // The vocabulary entry as exported to GGUF (tokenizer.ggml.tokens).
  virtual std::string piece(int32_t id) const = 0;
  // tokenizer.ggml.scores: the log probability (unigram) or merge rank score (BPE).
  virtual float score(int32_t id) const = 0;
  virtual TokenType type(int32_t id) const = 0;
  // "byte" or "sentencepiece".
  virtual std::string kind() const = 0;
  // SHA-256 (hex) identifying the vocabulary and its encoding rules: shards record it, so a shard
  // is never read with another tokenizer.
  virtual const std::string& hash() const = 0;

  // Writes the tokenizer's own files (if any) into `dir` and returns the extra fields for
  // tokenizer.json (e.g. {"model_file": "tokenizer.model"}).
  virtual nlohmann::ordered_json save_model_files(const fs::path& dir) const = 0;

  int32_t unk_id() const { return kUnkId; }
  int32_t bos_id() const { return kBosId; }
  int32_t eos_id() const { return kEosId; }
};

inline constexpr const char* kTokenizerFormat = "edgedistill-tokenizer";
inline constexpr int kTokenizerFormatVersion = 1;
inline constexpr const char* kTokenizerJsonName = "tokenizer.json";

// Trains (SentencePiece, on `training_documents`) or builds (byte) the tokenizer a config asks
// for. Training shows a progress line.
std::unique_ptr<Tokenizer> train_tokenizer(const TokenizerConfig& config,
                                           const std::vector<std::string>& training_documents);

// Writes dir/tokenizer.json and the model file; the directory is created if needed.
void save_tokenizer(const Tokenizer& tokenizer, const fs::path& dir);

// Reads a tokenizer directory written by save_tokenizer. Checks the format, version, kind and that
// the model's hash and vocabulary size match tokenizer.json; errors name the file and say what to
// re-run.
std::unique_ptr<Tokenizer> load_tokenizer(const fs::path& dir);

// The tokenizer directory a `tokenizer.from` path names: prepared data (its tokenizer/) or a
// tokenizer directory itself; an InputError for anything else.
fs::path reused_tokenizer_dir(const fs::path& from);

// Checks the rules a GGUF "llama" vocabulary must satisfy to load in llama.cpp: unique non-empty
// valid UTF-8 pieces, <unk>/<s>/</s> at 0/1/2 typed unknown/control/control, all 256 byte pieces
// "<0xNN>" (uppercase hex) typed byte, and no plain ASCII space in a piece (SentencePiece spells a
// space U+2581). Throws InputError naming the rule and the offending id and piece.
void check_llama_vocab(const Tokenizer& tokenizer);

// True when `text` is well-formed UTF-8 (no overlongs, surrogates or code points past U+10FFFF).
// `error_offset`, when given, receives the offset of the first bad byte.
bool is_valid_utf8(std::string_view text, size_t* error_offset = nullptr);

// "<0x0A>" for byte 10: the spelling of byte pieces in SentencePiece and GGUF.
std::string byte_piece(uint8_t byte);

}  // namespace edgedistill::data
