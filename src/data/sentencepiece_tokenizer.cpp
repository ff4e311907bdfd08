#include "data/sentencepiece_tokenizer.h"

#include "core/error.h"
#include "core/files.h"
#include "core/log.h"
#include "core/progress.h"
#include "core/sha256.h"
#include "data/corpus.h"
#include "data/data_config.h"

namespace edgedistill::data {

namespace {

const SentencePieceBackend* g_backend = nullptr;

const SentencePieceBackend& required_backend(const char* action) {
  const SentencePieceBackend* backend = sentencepiece_backend();
  if (backend == nullptr) {
    throw InternalError(str(action,
                            " with SentencePiece needs libsentencepiece, which this program "
                            "does not load (it uses LibTorch); data preparation belongs to the "
                            "edgedistill-data program"));
  }
  return *backend;
}

}  // namespace

const SentencePieceBackend* sentencepiece_backend() {
  return g_backend;
}
void set_sentencepiece_backend(const SentencePieceBackend* backend) {
  g_backend = backend;
}

std::unique_ptr<SentencePieceTokenizer> SentencePieceTokenizer::train(
    const TokenizerConfig& config, const std::vector<std::string>& documents) {
  std::string model_bytes = required_backend("training").train(config, documents);
  const int64_t total_lines = count_nonempty_lines(documents);
  nlohmann::ordered_json info = {
      {"model_type", config.model_type},
      {"character_coverage", config.character_coverage},
      {"training_lines", total_lines},
      {"max_sentences", config.max_sentences},
      {"seed", config.seed},
  };
  auto tokenizer = from_model_bytes(std::move(model_bytes), "the trained model", std::move(info));
  if (tokenizer->vocab_size() != config.vocab_size) {
    throw InputError(str("SentencePiece made ", tokenizer->vocab_size(), " pieces where ",
                         config.vocab_size,
                         " were asked for; the corpus is too small for tokenizer.vocab_size"));
  }
  return tokenizer;
}

std::unique_ptr<SentencePieceTokenizer> SentencePieceTokenizer::from_model_bytes(
    std::string model_bytes, const std::string& origin, nlohmann::ordered_json info) {
  std::unique_ptr<SentencePieceTokenizer> tokenizer(new SentencePieceTokenizer());
  tokenizer->model_ = tok::parse_sentencepiece_model(model_bytes, origin);
  const tok::SentencePieceModel& model = tokenizer->model_;
  if (model.unk_id != kUnkId || model.bos_id != kBosId || model.eos_id != kEosId) {
    throw FileError(str("SentencePiece model ", origin, " has unk/bos/eos ids ", model.unk_id, "/",
                        model.bos_id, "/", model.eos_id,
                        "; edgedistill needs 0/1/2 (the llama layout); re-run `edgedistill data` "
                        "to train one"));
  }
  // Without byte fallback some text would encode as <unk>; the byte pieces exist only with it.
  if (!model.byte_fallback) {
    throw FileError(str("SentencePiece model ", origin,
                        " was trained without byte_fallback, which edgedistill needs so no text "
                        "becomes <unk>; re-run `edgedistill data` to train one"));
  }
  std::vector<bool> seen(256, false);
  for (const auto& piece : model.pieces) {
    if (piece.type == TokenType::byte) {
      seen[static_cast<size_t>(std::stoi(piece.text.substr(3, 2), nullptr, 16))] = true;
    }
  }
  for (int byte = 0; byte < 256; ++byte) {
    if (!seen[static_cast<size_t>(byte)]) {
      throw FileError(str("SentencePiece model ", origin, " has no byte piece ",
                          byte_piece(static_cast<uint8_t>(byte)), "; re-run `edgedistill data`"));
    }
  }
  tokenizer->vocab_ =
      std::make_unique<tok::Vocab>(tok::Vocab::from_sentencepiece(model_bytes, origin));
  tokenizer->vocab_size_ = static_cast<int32_t>(model.pieces.size());
  tokenizer->hash_ = core::sha256_hex(model_bytes);
  tokenizer->model_bytes_ = std::move(model_bytes);
  tokenizer->info_ = std::move(info);
  return tokenizer;
}

std::unique_ptr<SentencePieceTokenizer> SentencePieceTokenizer::load(const fs::path& model_file,
                                                                     nlohmann::ordered_json info) {
  std::string bytes = core::read_file(model_file, "SentencePiece model");
  return from_model_bytes(std::move(bytes), str("'", model_file.string(), "'"), std::move(info));
}

SentencePieceTokenizer::SentencePieceTokenizer() : info_(nlohmann::ordered_json::object()) {}

SentencePieceTokenizer::~SentencePieceTokenizer() = default;

std::vector<int32_t> SentencePieceTokenizer::encode(std::string_view text) const {
  return vocab_->encode(text);
}

std::string SentencePieceTokenizer::decode(const std::vector<int32_t>& ids) const {
  for (const int32_t id : ids) check_id(id);
  return tok::decode_sentencepiece(model_, ids);
}

std::string SentencePieceTokenizer::piece(int32_t id) const {
  check_id(id);
  return model_.pieces[static_cast<size_t>(id)].text;
}

float SentencePieceTokenizer::score(int32_t id) const {
  check_id(id);
  return model_.pieces[static_cast<size_t>(id)].score;
}

TokenType SentencePieceTokenizer::type(int32_t id) const {
  check_id(id);
  return model_.pieces[static_cast<size_t>(id)].type;
}

nlohmann::ordered_json SentencePieceTokenizer::save_model_files(const fs::path& dir) const {
  core::write_file_atomic(dir / kModelFileName, model_bytes_);
  nlohmann::ordered_json extra = {{"model_file", kModelFileName}};
  for (const auto& item : info_.items()) extra[item.key()] = item.value();
  return extra;
}

void SentencePieceTokenizer::check_id(int32_t id) const {
  if (id < 0 || id >= vocab_size_) {
    throw InputError(str("token id ", id, " is outside the SentencePiece vocabulary (0..",
                         vocab_size_ - 1, "); was the model trained with another tokenizer?"));
  }
}

}  // namespace edgedistill::data
