// A tokenizer a user brings: a Hugging Face tokenizer.json (with tokenizer_config.json when it is
// beside it), a SentencePiece tokenizer.model, or the vocabulary of a GGUF file. It keeps the
// model's own ids and special tokens; tok::Vocab encodes it the way its reference does.
//
// Saved into a tokenizer directory as a copy of the source ("hf_tokenizer.json" and
// "hf_tokenizer_config.json", "tokenizer.model", or a vocabulary-only "vocab.gguf"); its hash is
// tok::Vocab::fingerprint(), so the same vocabulary has the same hash whichever file it came from.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "data/tokenizer.h"

namespace edgedistill::data {

class PretrainedTokenizer final : public Tokenizer {
 public:
  enum class Format { tokenizer_json, sentencepiece_model, gguf };

  // A tokenizer.json; `config_file` (may be empty) is its tokenizer_config.json.
  static std::unique_ptr<PretrainedTokenizer> from_tokenizer_json(const fs::path& file,
                                                                  const fs::path& config_file);
  static std::unique_ptr<PretrainedTokenizer> from_sentencepiece_model(const fs::path& file);
  static std::unique_ptr<PretrainedTokenizer> from_gguf(const fs::path& file);
  // A directory saved by save_model_files, described by `description` (its tokenizer.json).
  static std::unique_ptr<PretrainedTokenizer> load_saved(const fs::path& dir,
                                                         const nlohmann::json& description,
                                                         const fs::path& description_file);

  std::vector<int32_t> encode(std::string_view text) const override { return vocab_.encode(text); }
  std::string decode(const std::vector<int32_t>& ids) const override { return vocab_.decode(ids); }
  int32_t vocab_size() const override { return vocab_.size(); }
  std::string piece(int32_t id) const override { return vocab_.token(id).text; }
  float score(int32_t id) const override { return vocab_.token(id).score; }
  TokenType type(int32_t id) const override { return vocab_.token(id).type; }
  std::string kind() const override { return "pretrained"; }
  std::string description() const override;
  const std::string& hash() const override { return hash_; }
  nlohmann::ordered_json save_model_files(const fs::path& dir) const override;
  int32_t unk_id() const override { return vocab_.unk_id(); }
  int32_t bos_id() const override { return vocab_.bos_id(); }
  int32_t eos_id() const override { return vocab_.eos_id(); }
  bool frames_with_bos() const override { return vocab_.add_bos() && vocab_.bos_id() >= 0; }
  bool round_trips() const override { return vocab_.round_trips(); }
  const tok::Vocab* vocab() const override { return &vocab_; }

  Format format() const { return format_; }
  // "tokenizer.json", "tokenizer.model" or "gguf".
  const char* format_name() const;
  // The file the tokenizer was read from.
  const fs::path& origin() const { return origin_; }

 private:
  PretrainedTokenizer(tok::Vocab vocab, Format format, fs::path origin);

  tok::Vocab vocab_;
  Format format_;
  fs::path origin_;
  std::string hash_;
  std::string model_bytes_;   // tokenizer.json or tokenizer.model as read (empty for GGUF)
  std::string config_bytes_;  // tokenizer_config.json as read, or empty
};

}  // namespace edgedistill::data
