#include "data/pretrained_tokenizer.h"

#include "core/error.h"
#include "core/files.h"
#include "io/gguf.h"

namespace edgedistill::data {
namespace {

constexpr const char* kHfTokenizerName = "hf_tokenizer.json";
constexpr const char* kHfConfigName = "hf_tokenizer_config.json";
constexpr const char* kSentencePieceName = "tokenizer.model";
constexpr const char* kGgufVocabName = "vocab.gguf";

std::string description_field(const nlohmann::json& description, const char* key,
                              const fs::path& file) {
  const auto it = description.find(key);
  if (it == description.end() || !it->is_string()) {
    throw FileError(str("tokenizer description '", file.string(), "' lacks a valid '", key,
                        "' field; re-run `edgedistill data`"));
  }
  return it->get<std::string>();
}

}  // namespace

PretrainedTokenizer::PretrainedTokenizer(tok::Vocab vocab, Format format, fs::path origin)
    : vocab_(std::move(vocab)), format_(format), origin_(std::move(origin)) {
  hash_ = vocab_.fingerprint();
}

std::unique_ptr<PretrainedTokenizer> PretrainedTokenizer::from_tokenizer_json(
    const fs::path& file, const fs::path& config_file) {
  std::string bytes = core::read_file(file, "tokenizer.json");
  std::string config =
      config_file.empty() ? "" : core::read_file(config_file, "tokenizer_config.json");
  auto vocab = tok::Vocab::from_hugging_face(bytes, config, file.string());
  std::unique_ptr<PretrainedTokenizer> tokenizer(
      new PretrainedTokenizer(std::move(vocab), Format::tokenizer_json, file));
  tokenizer->model_bytes_ = std::move(bytes);
  tokenizer->config_bytes_ = std::move(config);
  return tokenizer;
}

std::unique_ptr<PretrainedTokenizer> PretrainedTokenizer::from_sentencepiece_model(
    const fs::path& file) {
  std::string bytes = core::read_file(file, "SentencePiece model");
  auto vocab = tok::Vocab::from_sentencepiece(bytes, str("'", file.string(), "'"));
  std::unique_ptr<PretrainedTokenizer> tokenizer(
      new PretrainedTokenizer(std::move(vocab), Format::sentencepiece_model, file));
  tokenizer->model_bytes_ = std::move(bytes);
  return tokenizer;
}

std::unique_ptr<PretrainedTokenizer> PretrainedTokenizer::from_gguf(const fs::path& file) {
  const io::GgufReader reader(file);
  return std::unique_ptr<PretrainedTokenizer>(
      new PretrainedTokenizer(tok::Vocab::from_gguf(reader), Format::gguf, file));
}

std::unique_ptr<PretrainedTokenizer> PretrainedTokenizer::load_saved(
    const fs::path& dir, const nlohmann::json& description, const fs::path& description_file) {
  const std::string source = description_field(description, "source", description_file);
  const fs::path model_file = dir / description_field(description, "model_file", description_file);
  std::unique_ptr<PretrainedTokenizer> tokenizer;
  if (source == "tokenizer.json") {
    const fs::path config =
        description.contains("config_file")
            ? dir / description_field(description, "config_file", description_file)
            : fs::path();
    tokenizer = from_tokenizer_json(model_file, config);
  } else if (source == "tokenizer.model") {
    tokenizer = from_sentencepiece_model(model_file);
  } else if (source == "gguf") {
    tokenizer = from_gguf(model_file);
  } else {
    throw FileError(str("tokenizer description '", description_file.string(),
                        "' names the unknown source '", source,
                        "' (expected tokenizer.json, tokenizer.model or gguf); upgrade edgedistill "
                        "or re-run `edgedistill data`"));
  }
  if (description.contains("origin") && description["origin"].is_string()) {
    tokenizer->origin_ = description["origin"].get<std::string>();
  }
  return tokenizer;
}

const char* PretrainedTokenizer::format_name() const {
  switch (format_) {
    case Format::tokenizer_json:
      return "tokenizer.json";
    case Format::sentencepiece_model:
      return "tokenizer.model";
    case Format::gguf:
      return "gguf";
  }
  return "?";
}

std::string PretrainedTokenizer::description() const {
  return str("pretrained tokenizer (", vocab_.algorithm(), ", ", vocab_.size(), " tokens, from ",
             origin_.string(), ")");
}

nlohmann::ordered_json PretrainedTokenizer::save_model_files(const fs::path& dir) const {
  nlohmann::ordered_json extra = {{"source", format_name()}};
  switch (format_) {
    case Format::tokenizer_json:
      core::write_file_atomic(dir / kHfTokenizerName, model_bytes_);
      extra["model_file"] = kHfTokenizerName;
      if (!config_bytes_.empty()) {
        core::write_file_atomic(dir / kHfConfigName, config_bytes_);
        extra["config_file"] = kHfConfigName;
      }
      break;
    case Format::sentencepiece_model:
      core::write_file_atomic(dir / kSentencePieceName, model_bytes_);
      extra["model_file"] = kSentencePieceName;
      break;
    case Format::gguf: {
      // Only the vocabulary: a tensor-less GGUF with the tokenizer.ggml.* keys.
      io::GgufWriter writer;
      writer.set("general.architecture", io::GgufValue::string("llama"));
      vocab_.write_gguf(writer);
      writer.write(dir / kGgufVocabName);
      extra["model_file"] = kGgufVocabName;
      break;
    }
  }
  extra["algorithm"] = vocab_.algorithm();
  extra["origin"] = origin_.string();
  return extra;
}

}  // namespace edgedistill::data
