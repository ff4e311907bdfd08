// A SentencePiece tokenizer (BPE or unigram), trained on the train split with byte fallback, so
// every string encodes without <unk> and exports as a GGUF "llama" vocabulary.
//
// The model file is SentencePiece's own serialized ModelProto ("tokenizer.model"), the same file
// llama.cpp's conversion scripts read. The tokenizer's hash is the SHA-256 of that file.
//
// Encoding and decoding are tok::Vocab's (our own SentencePiece implementation, token-exact with
// libsentencepiece 0.1.97 and shared with the runtime) and work in every program. Training needs
// libsentencepiece (sentencepiece_backend.h), which programs that load LibTorch cannot have; they
// hand training to the edgedistill-data program.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "data/sentencepiece_backend.h"
#include "data/tokenizer.h"
#include "tokenizer/sentencepiece_model.h"

namespace edgedistill::data {

struct TokenizerConfig;

class SentencePieceTokenizer final : public Tokenizer {
 public:
  static constexpr const char* kModelFileName = "tokenizer.model";

  // Trains on the lines of `documents` (a document's newlines are not part of any piece; they
  // encode through byte fallback as <0x0A>). Shows a progress line. Throws InputError when
  // SentencePiece refuses the settings (e.g. a vocabulary too large for the corpus). Needs the
  // libsentencepiece backend.
  static std::unique_ptr<SentencePieceTokenizer> train(const TokenizerConfig& config,
                                                       const std::vector<std::string>& documents);

  // Loads a serialized model; `origin` names it in errors (a file path or "trained model").
  // `info` is kept for tokenizer.json (model_type, training settings). Throws FileError when the
  // bytes are not a SentencePiece model or the model lacks the special ids unk 0 / bos 1 / eos 2
  // or byte fallback.
  static std::unique_ptr<SentencePieceTokenizer> from_model_bytes(
      std::string model_bytes, const std::string& origin,
      nlohmann::ordered_json info = nlohmann::ordered_json::object());

  // Reads and loads a model file.
  static std::unique_ptr<SentencePieceTokenizer> load(
      const fs::path& model_file, nlohmann::ordered_json info = nlohmann::ordered_json::object());

  ~SentencePieceTokenizer() override;

  std::vector<int32_t> encode(std::string_view text) const override;
  std::string decode(const std::vector<int32_t>& ids) const override;
  int32_t vocab_size() const override { return vocab_size_; }
  std::string piece(int32_t id) const override;
  float score(int32_t id) const override;
  TokenType type(int32_t id) const override;
  std::string kind() const override { return "sentencepiece"; }
  const std::string& hash() const override { return hash_; }
  nlohmann::ordered_json save_model_files(const fs::path& dir) const override;
  const tok::Vocab* vocab() const override { return vocab_.get(); }

  // The serialized model (the bytes of tokenizer.model).
  const std::string& model_bytes() const { return model_bytes_; }
  // The parsed model: normalizer settings, model type, special ids.
  const tok::SentencePieceModel& model() const { return model_; }

 private:
  SentencePieceTokenizer();
  void check_id(int32_t id) const;

  tok::SentencePieceModel model_;
  std::unique_ptr<tok::Vocab> vocab_;
  std::string model_bytes_;
  std::string hash_;
  int32_t vocab_size_ = 0;
  nlohmann::ordered_json info_;
};

}  // namespace edgedistill::data
