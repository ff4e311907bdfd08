// Tokenizers of prepared data: the interface, saving and loading a tokenizer directory, training
// one from a config, opening any tokenizer a user points at, and the checks that a trained
// vocabulary exports as a GGUF "llama" tokenizer.
//
// Three kinds: "byte" (every byte a token), "sentencepiece" (trained here on the corpus) and
// "pretrained" (a tokenizer.json, tokenizer.model or GGUF vocabulary a user brings). The ones we
// make put <unk> at 0, <s> at 1 and </s> at 2 (the llama defaults) and can spell every byte
// ("<0xNN>" pieces), so no text is lost; a pretrained tokenizer keeps its own ids.
//
// Encoding and decoding go through tok::Vocab (src/tokenizer), the same code the runtime uses.
//
// A tokenizer directory holds tokenizer.json
//   {"format": "edgedistill-tokenizer", "version": 1, "kind": ..., "vocab_size": ..., "hash": ...}
// and the model file(s) it names ("model_file", and for tokenizer.json sources "config_file").
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "tokenizer/token_type.h"
#include "tokenizer/utf8.h"
#include "tokenizer/vocab.h"

namespace edgedistill::data {

namespace fs = std::filesystem;

struct TokenizerConfig;

// GGUF token types (tokenizer.ggml.token_type), shared with the tokenizer layer.
using TokenType = tok::TokenType;
using tok::token_type_name;

class Tokenizer {
 public:
  static constexpr int32_t kUnkId = 0;
  static constexpr int32_t kBosId = 1;
  static constexpr int32_t kEosId = 2;

  virtual ~Tokenizer() = default;

  // Token ids of `text`, without BOS or EOS.
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
  // "byte", "sentencepiece" or "pretrained".
  virtual std::string kind() const = 0;
  // One line for people (kind, size, where it came from).
  virtual std::string description() const;
  // SHA-256 (hex) identifying the vocabulary and its encoding rules: shards record it, so a shard
  // is never read with another tokenizer.
  virtual const std::string& hash() const = 0;

  // Writes the tokenizer's own files (if any) into `dir` and returns the extra fields for
  // tokenizer.json (e.g. {"model_file": "tokenizer.model"}).
  virtual nlohmann::ordered_json save_model_files(const fs::path& dir) const = 0;

  // Special ids; -1 when the tokenizer has none.
  virtual int32_t unk_id() const { return kUnkId; }
  virtual int32_t bos_id() const { return kBosId; }
  virtual int32_t eos_id() const { return kEosId; }
  // Whether documents start with BOS in token shards (they always end with EOS when there is one).
  virtual bool frames_with_bos() const { return true; }
  // Whether decode(encode(text)) == text for every well-formed UTF-8 text (no normalization).
  virtual bool round_trips() const { return true; }
  // The vocabulary with its encoding rules (GGUF export writes it); nullptr for the byte tokenizer.
  virtual const tok::Vocab* vocab() const { return nullptr; }
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

// The tokenizer a path names (`tokenizer.from`, `--tokenizer`, `tokenize --model`):
//   prepared data (its tokenizer/), a tokenizer directory or its tokenizer.json description,
//   a checkpoint or run directory (the tokenizer of the data it was trained on),
//   a Hugging Face model folder (tokenizer.json, else tokenizer.model, with tokenizer_config.json),
//   a tokenizer.json, a SentencePiece .model file, or a GGUF file (its tokenizer.ggml.* keys).
// An InputError naming the path and what was looked for otherwise.
std::unique_ptr<Tokenizer> open_tokenizer(const fs::path& path);

// Checks, for the tokenizers we make (byte, sentencepiece), the rules a GGUF "llama" vocabulary
// must satisfy to load in llama.cpp: unique non-empty
// valid UTF-8 pieces, <unk>/<s>/</s> at 0/1/2 typed unknown/control/control, all 256 byte pieces
// "<0xNN>" (uppercase hex) typed byte, and no plain ASCII space in a piece (SentencePiece spells a
// space U+2581). Throws InputError naming the rule and the offending id and piece.
void check_llama_vocab(const Tokenizer& tokenizer);

// Well-formed UTF-8 (tokenizer/utf8.h).
using tok::is_valid_utf8;

// "<0x0A>" for byte 10: the spelling of byte pieces in SentencePiece and GGUF.
inline std::string byte_piece(uint8_t byte) {
  return tok::byte_token(byte);
}

}  // namespace edgedistill::data
