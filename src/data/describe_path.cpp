#include "data/describe_path.h"

#include <algorithm>
#include <map>

#include "core/error.h"
#include "core/files.h"
#include "data/prepare.h"
#include "data/token_shard.h"
#include "data/tokenizer.h"

namespace edgedistill::data {
namespace {

using ordered_json = nlohmann::ordered_json;
namespace fs = std::filesystem;

// How many leading tokens a shard summary shows, decoded.
constexpr int64_t kShardPreviewTokens = 32;
// How many pieces a tokenizer summary lists.
constexpr int32_t kTokenizerPreviewPieces = 16;
// Encoded in a tokenizer summary to show how text splits.
constexpr const char* kTokenizerSample = "In the beginning God created the heaven and the earth.";

ordered_json describe_shard(const fs::path& path) {
  const TokenShard shard(path);
  ordered_json out = {
      {"kind", "token shard"},
      {"path", path.string()},
      {"version", shard.version()},
      {"dtype", token_dtype_name(shard.dtype())},
      {"tokens", shard.size()},
      {"vocab_size", shard.vocab_size()},
      {"tokenizer_hash", shard.tokenizer_hash()},
  };
  const fs::path sidecar = token_shard_sidecar_path(path);
  std::error_code ec;
  if (fs::is_regular_file(sidecar, ec)) {
    try {
      const nlohmann::json extra = core::read_json_file(sidecar, "token shard description");
      for (const char* key : {"split", "documents", "bytes", "data", "sources"}) {
        if (extra.contains(key)) out[key] = extra[key];
      }
    } catch (const FileError& e) {
      out["sidecar_error"] = e.what();
    }
  }
  // A prepared data directory keeps the tokenizer in ../tokenizer beside shards/.
  const fs::path tokenizer_dir = path.parent_path().parent_path() / "tokenizer";
  if (fs::is_regular_file(tokenizer_dir / kTokenizerJsonName, ec)) {
    try {
      const auto tokenizer = load_tokenizer(tokenizer_dir);
      if (tokenizer->hash() == shard.tokenizer_hash()) {
        const int64_t count = std::min(shard.size(), kShardPreviewTokens);
        std::vector<int32_t> ids;
        for (int64_t i = 0; i < count; ++i) ids.push_back(shard.at(i));
        out["tokenizer"] = tokenizer_dir.string();
        out["first_tokens"] = ids;
        ordered_json pieces = ordered_json::array();
        for (const int32_t id : ids) pieces.push_back(tokenizer->piece(id));
        out["first_pieces"] = pieces;
        out["first_text"] = tokenizer->decode(ids);
      } else {
        out["tokenizer_note"] = str("the tokenizer in ", tokenizer_dir.string(),
                                    " has another hash (", tokenizer->hash(), ")");
      }
    } catch (const InputError& e) {
      out["tokenizer_note"] = e.what();
    }
  }
  return out;
}

// A summary of a tokenizer: a tokenizer directory, or any tokenizer file open_tokenizer reads
// (a Hugging Face tokenizer.json, a SentencePiece model).
ordered_json describe_tokenizer(const fs::path& path) {
  const auto tokenizer = open_tokenizer(path);
  ordered_json out = {
      {"kind", "tokenizer"},
      {"path", path.string()},
      {"tokenizer", tokenizer->kind()},
      {"description", tokenizer->description()},
      {"vocab_size", tokenizer->vocab_size()},
      {"hash", tokenizer->hash()},
      {"bos_id", tokenizer->bos_id()},
      {"eos_id", tokenizer->eos_id()},
      {"unk_id", tokenizer->unk_id()},
  };
  std::error_code ec;
  if (fs::is_directory(path, ec) && fs::is_regular_file(path / kTokenizerJsonName, ec)) {
    const nlohmann::json description =
        core::read_json_file(path / kTokenizerJsonName, "tokenizer description");
    for (const char* key :
         {"model_type", "character_coverage", "training_lines", "source", "origin"}) {
      if (description.contains(key)) out[key] = description[key];
    }
  }
  std::map<std::string, int64_t> type_counts;
  for (int32_t id = 0; id < tokenizer->vocab_size(); ++id) {
    type_counts[token_type_name(tokenizer->type(id))]++;
  }
  out["token_types"] = type_counts;
  ordered_json pieces = ordered_json::array();
  for (int32_t id = 0; id < tokenizer->vocab_size() && id < kTokenizerPreviewPieces; ++id) {
    pieces.push_back(tokenizer->piece(id));
  }
  out["first_pieces"] = pieces;
  ordered_json sample = ordered_json::array();
  for (const int32_t id : tokenizer->encode(kTokenizerSample)) {
    sample.push_back(tokenizer->piece(id));
  }
  out["sample"] = {{"text", kTokenizerSample}, {"pieces", sample}};
  if (const tok::Vocab* vocab = tokenizer->vocab()) {
    std::string why_not;
    const std::string model = vocab->gguf_model(&why_not);
    out["gguf_vocab"] = model.empty() ? why_not : model;
  }
  if (tokenizer->kind() != "pretrained") {
    try {
      check_llama_vocab(*tokenizer);
      out["gguf_llama_vocab"] = "ok";
    } catch (const InputError& e) {
      out["gguf_llama_vocab"] = e.what();
    }
  }
  return out;
}

ordered_json describe_data(const fs::path& dir) {
  const nlohmann::json info = read_data_json(dir);
  ordered_json out = {
      {"kind", "prepared data"},
      {"path", dir.string()},
  };
  for (const char* key : {"name", "kind", "version", "config_hash", "edgedistill_version",
                          "documents", "sources", "tokenizer", "splits", "images", "seconds"}) {
    if (info.contains(key)) out[std::string(key) == "kind" ? "data_kind" : key] = info[key];
  }
  std::error_code ec;
  if (fs::is_directory(dir / "shards", ec)) {
    ordered_json sizes = ordered_json::object();
    for (const char* split : {"train", "valid", "test"}) {
      const fs::path shard = dir / "shards" / (std::string(split) + ".bin");
      if (fs::is_regular_file(shard, ec)) sizes[split] = fs::file_size(shard, ec);
    }
    out["shard_bytes"] = sizes;
  }
  return out;
}

}  // namespace

ordered_json describe_path(const fs::path& path) {
  std::error_code ec;
  if (fs::is_regular_file(path, ec)) {
    if (path.filename() == kDataJsonName) return describe_data(path.parent_path());
    if (path.filename() == kTokenizerJsonName) return describe_tokenizer(path);
    if (looks_like_token_shard(path)) return describe_shard(path);
    if (path.extension() == ".model") return describe_tokenizer(path);
    // Another .json: a Hugging Face tokenizer.json (it has a "model" section) under another name.
    if (path.extension() == ".json") {
      try {
        const nlohmann::json json = core::read_json_file(path, "JSON file");
        if (json.is_object() && json.contains("model") && json["model"].is_object()) {
          return describe_tokenizer(path);
        }
      } catch (const FileError&) {
      }
    }
    return ordered_json::object();
  }
  if (fs::is_directory(path, ec)) {
    if (fs::is_regular_file(path / kDataJsonName, ec)) return describe_data(path);
    if (fs::is_regular_file(path / kTokenizerJsonName, ec)) return describe_tokenizer(path);
  }
  return ordered_json::object();
}

}  // namespace edgedistill::data
