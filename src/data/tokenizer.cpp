#include "data/tokenizer.h"

#include <cstdio>
#include <fstream>
#include <unordered_map>

#include "core/error.h"
#include "core/files.h"
#include "data/byte_tokenizer.h"
#include "data/data_config.h"
#include "data/pretrained_tokenizer.h"
#include "data/sentencepiece_tokenizer.h"
#include "io/gguf.h"

namespace edgedistill::data {

std::unique_ptr<Tokenizer> train_tokenizer(const TokenizerConfig& config,
                                           const std::vector<std::string>& training_documents) {
  if (config.kind == "byte") return std::make_unique<ByteTokenizer>();
  ED_CHECK(config.kind == "sentencepiece", "kind=", config.kind);
  return SentencePieceTokenizer::train(config, training_documents);
}

std::string Tokenizer::description() const {
  return str(kind(), " tokenizer of ", vocab_size(), " tokens");
}

namespace {

// Whether a tokenizer.json is edgedistill's own description (rather than Hugging Face's file).
bool is_our_description(const fs::path& file) {
  try {
    const nlohmann::json json = core::read_json_file(file, "tokenizer.json");
    return json.is_object() && json.value("format", std::string()) == kTokenizerFormat;
  } catch (const FileError&) {
    return false;
  }
}

std::unique_ptr<Tokenizer> open_tokenizer_file(const fs::path& file) {
  if (file.filename() == kTokenizerJsonName && is_our_description(file)) {
    return load_tokenizer(file.parent_path());
  }
  if (file.extension() == ".json") {
    const fs::path config = file.parent_path() / "tokenizer_config.json";
    std::error_code ec;
    return PretrainedTokenizer::from_tokenizer_json(
        file, fs::is_regular_file(config, ec) ? config : fs::path());
  }
  if (io::is_gguf_file(file)) return PretrainedTokenizer::from_gguf(file);
  // Anything else must be a SentencePiece model; its parser says clearly when it is not one.
  return PretrainedTokenizer::from_sentencepiece_model(file);
}

// The data directory a checkpoint's model.json names (without loading the model, which needs
// LibTorch).
fs::path checkpoint_data_dir(const fs::path& model_json) {
  const nlohmann::json meta = core::read_json_file(model_json, "model description");
  const std::string dir = meta.is_object() ? meta.value("data_dir", std::string()) : std::string();
  if (dir.empty()) {
    throw InputError(str(model_json.string(),
                         " names no data directory, so its tokenizer is unknown; give the "
                         "tokenizer itself (a tokenizer directory, tokenizer.json, tokenizer.model "
                         "or GGUF file)"));
  }
  return dir;
}

}  // namespace

std::unique_ptr<Tokenizer> open_tokenizer(const fs::path& path) {
  std::error_code ec;
  if (fs::is_regular_file(path, ec)) return open_tokenizer_file(path);
  if (!fs::is_directory(path, ec)) {
    throw InputError(str("tokenizer '", path.string(),
                         "' does not exist; give prepared data, a tokenizer directory, a model "
                         "folder or checkpoint, a tokenizer.json, tokenizer.model or GGUF file"));
  }
  auto has = [&](const char* name) { return fs::is_regular_file(path / name, ec); };
  if (has("data.json") && fs::is_directory(path / "tokenizer", ec)) {
    return load_tokenizer(path / "tokenizer");
  }
  if (has(kTokenizerJsonName) && is_our_description(path / kTokenizerJsonName)) {
    return load_tokenizer(path);
  }
  // A checkpoint keeps its tokenizer beside it (imported models) or names its data directory.
  if (has("model.json")) {
    if (fs::is_regular_file(path / "tokenizer" / kTokenizerJsonName, ec)) {
      return load_tokenizer(path / "tokenizer");
    }
    return open_tokenizer(checkpoint_data_dir(path / "model.json"));
  }
  if (fs::is_regular_file(path / "final" / "model.json", ec)) return open_tokenizer(path / "final");
  // A Hugging Face model folder.
  if (has(kTokenizerJsonName)) return open_tokenizer_file(path / kTokenizerJsonName);
  if (has("tokenizer.model"))
    return PretrainedTokenizer::from_sentencepiece_model(path / "tokenizer.model");
  throw InputError(str("'", path.string(),
                       "' holds no tokenizer: expected prepared data (data.json + tokenizer/), a "
                       "tokenizer directory, a checkpoint (model.json), a run (final/), or a model "
                       "folder with tokenizer.json or tokenizer.model"));
}

void save_tokenizer(const Tokenizer& tokenizer, const fs::path& dir) {
  core::create_directories(dir, "tokenizer directory");
  nlohmann::ordered_json description = {
      {"format", kTokenizerFormat}, {"version", kTokenizerFormatVersion},
      {"kind", tokenizer.kind()},   {"vocab_size", tokenizer.vocab_size()},
      {"hash", tokenizer.hash()},
  };
  const nlohmann::ordered_json extra = tokenizer.save_model_files(dir);
  for (const auto& item : extra.items()) description[item.key()] = item.value();
  // Dumped as ordered JSON so the file reads in the order above.
  core::write_file_atomic(dir / kTokenizerJsonName, description.dump(2) + "\n");
}

namespace {

// Reads a required field of tokenizer.json with a message naming the file.
template <class T>
T tokenizer_field(const nlohmann::json& description, const char* key, const fs::path& file) {
  const auto it = description.find(key);
  try {
    if (it != description.end()) return it->get<T>();
  } catch (const nlohmann::json::exception&) {
  }
  throw FileError(str("tokenizer description '", file.string(), "' lacks a valid '", key,
                      "' field; re-run `edgedistill data`"));
}

}  // namespace

std::unique_ptr<Tokenizer> load_tokenizer(const fs::path& dir) {
  const fs::path file = dir / kTokenizerJsonName;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    throw FileError(str("tokenizer directory '", dir.string(),
                        "' does not exist; run `edgedistill data` to prepare the data"));
  }
  const nlohmann::json description = core::read_json_file(file, "tokenizer description");
  if (!description.is_object() ||
      description.value("format", std::string()) != std::string(kTokenizerFormat)) {
    throw FileError(str("'", file.string(),
                        "' is not an edgedistill tokenizer description "
                        "(format \"",
                        kTokenizerFormat, "\" expected)"));
  }
  const int version = tokenizer_field<int>(description, "version", file);
  if (version > kTokenizerFormatVersion) {
    throw FileError(str("tokenizer '", file.string(), "' has format version ", version,
                        "; this edgedistill reads version ", kTokenizerFormatVersion,
                        "; upgrade edgedistill"));
  }
  if (version < kTokenizerFormatVersion) {
    throw FileError(str("tokenizer '", file.string(), "' has the old format version ", version,
                        "; re-run `edgedistill data`"));
  }
  const auto kind = tokenizer_field<std::string>(description, "kind", file);
  const auto expected_hash = tokenizer_field<std::string>(description, "hash", file);
  const auto expected_vocab = tokenizer_field<int32_t>(description, "vocab_size", file);

  std::unique_ptr<Tokenizer> tokenizer;
  if (kind == "byte") {
    tokenizer = std::make_unique<ByteTokenizer>();
  } else if (kind == "sentencepiece") {
    const auto model_name = tokenizer_field<std::string>(description, "model_file", file);
    nlohmann::ordered_json info = nlohmann::ordered_json::object();
    for (const char* key :
         {"model_type", "character_coverage", "training_lines", "max_sentences", "seed"}) {
      if (description.contains(key)) info[key] = description[key];
    }
    tokenizer = SentencePieceTokenizer::load(dir / model_name, std::move(info));
  } else if (kind == "pretrained") {
    tokenizer = PretrainedTokenizer::load_saved(dir, description, file);
  } else {
    throw FileError(str("tokenizer '", file.string(), "' has the unknown kind '", kind,
                        "' (expected byte, sentencepiece or pretrained); upgrade edgedistill or "
                        "re-run `edgedistill data`"));
  }
  if (tokenizer->hash() != expected_hash) {
    throw FileError(str("tokenizer '", dir.string(), "': the model's hash ", tokenizer->hash(),
                        " differs from ", expected_hash,
                        " recorded in tokenizer.json (the model file was changed or damaged); "
                        "re-run `edgedistill data`"));
  }
  if (tokenizer->vocab_size() != expected_vocab) {
    throw FileError(str("tokenizer '", dir.string(), "' has ", tokenizer->vocab_size(),
                        " pieces but tokenizer.json records ", expected_vocab,
                        "; re-run `edgedistill data`"));
  }
  return tokenizer;
}

namespace {

constexpr const char* kAllBytesRule = "all 256 byte pieces are present";

[[noreturn]] void vocab_fail(const std::string& rule, int32_t id, const std::string& piece) {
  throw InputError(str("the vocabulary breaks the GGUF llama tokenizer rule '", rule, "' at id ",
                       id, " (piece \"", piece,
                       "\"); llama.cpp would refuse or misread it; re-train the tokenizer with "
                       "`edgedistill data`"));
}

}  // namespace

void check_llama_vocab(const Tokenizer& tokenizer) {
  const int32_t size = tokenizer.vocab_size();
  if (size < 3 + 256) {
    throw InputError(str("the vocabulary has ", size,
                         " pieces; a GGUF llama vocabulary needs at least 259 (<unk>, <s>, </s> "
                         "and 256 byte pieces)"));
  }
  struct Special {
    int32_t id;
    TokenType type;
    const char* name;
  };
  for (const Special& special : {Special{Tokenizer::kUnkId, TokenType::unknown, "unk"},
                                 Special{Tokenizer::kBosId, TokenType::control, "bos"},
                                 Special{Tokenizer::kEosId, TokenType::control, "eos"}}) {
    if (tokenizer.type(special.id) != special.type) {
      vocab_fail(
          str(special.name, " is id ", special.id, " with type ", token_type_name(special.type),
              ", found type ", token_type_name(tokenizer.type(special.id))),
          special.id, tokenizer.piece(special.id));
    }
  }
  std::unordered_map<std::string, int32_t> first_id;
  first_id.reserve(static_cast<size_t>(size));
  std::vector<bool> byte_seen(256, false);
  for (int32_t id = 0; id < size; ++id) {
    const std::string piece = tokenizer.piece(id);
    if (piece.empty()) vocab_fail("pieces are non-empty", id, piece);
    if (!is_valid_utf8(piece)) vocab_fail("pieces are valid UTF-8", id, piece);
    if (piece.find(' ') != std::string::npos) {
      vocab_fail("no piece holds an ASCII space (spaces are spelled U+2581)", id, piece);
    }
    const auto [it, inserted] = first_id.emplace(piece, id);
    if (!inserted) vocab_fail(str("pieces are unique (also id ", it->second, ")"), id, piece);
    if (tokenizer.type(id) == TokenType::byte) {
      // "<0xNN>" with uppercase hex digits, the only spelling llama.cpp maps back to a byte.
      unsigned value = 0;
      char tail = 0;
      if (piece.size() != 6 || std::sscanf(piece.c_str(), "<0x%2X%c", &value, &tail) != 2 ||
          tail != '>' || piece != byte_piece(static_cast<uint8_t>(value))) {
        vocab_fail("byte pieces are spelled <0xNN> with uppercase hex", id, piece);
      }
      byte_seen[value] = true;
    }
  }
  for (int byte = 0; byte < 256; ++byte) {
    if (byte_seen[byte]) continue;
    const std::string wanted = byte_piece(static_cast<uint8_t>(byte));
    const auto it = first_id.find(wanted);
    if (it == first_id.end()) {
      throw InputError(str("the vocabulary breaks the GGUF llama tokenizer rule '", kAllBytesRule,
                           "': ", wanted,
                           " is missing; re-train the tokenizer with `edgedistill data`"));
    }
    vocab_fail(str("byte piece ", wanted, " has type byte"), it->second, wanted);
  }
}

}  // namespace edgedistill::data
