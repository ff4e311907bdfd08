#include "data/prepared_data.h"

#include <algorithm>

#include "core/error.h"
#include "core/files.h"
#include "data/prepare.h"
#include "data/split.h"

namespace edgedistill::data {

nlohmann::json read_data_json(const fs::path& dir) {
  const fs::path file = dir / kDataJsonName;
  std::error_code ec;
  if (!fs::is_regular_file(file, ec)) {
    throw FileError(str("'", dir.string(), "' holds no prepared data (", kDataJsonName,
                        " is missing); run `edgedistill data` to prepare it"));
  }
  nlohmann::json info = core::read_json_file(file, "data description");
  if (!info.is_object() || info.value("format", std::string()) != kDataFormat) {
    throw FileError(str("'", file.string(), "' is not an edgedistill data description (format \"",
                        kDataFormat, "\" expected)"));
  }
  const auto version = info.find("version");
  if (version == info.end() || !version->is_number_integer()) {
    throw FileError(str("'", file.string(), "' has no format version; re-run `edgedistill data`"));
  }
  if (version->get<int>() > kDataFormatVersion) {
    throw FileError(str("'", file.string(), "' has data format version ", version->get<int>(),
                        "; this edgedistill reads version ", kDataFormatVersion,
                        "; upgrade edgedistill"));
  }
  if (version->get<int>() < kDataFormatVersion) {
    throw FileError(str("'", file.string(), "' has the old data format version ",
                        version->get<int>(), "; re-run `edgedistill data`"));
  }
  return info;
}

PreparedData::PreparedData(const fs::path& dir) : dir_(dir) {
  info_ = read_data_json(dir);
  const fs::path file = dir / kDataJsonName;
  if (info_.value("kind", std::string()) != "text") {
    throw InputError(str("'", dir.string(), "' holds ", info_.value("kind", std::string("unknown")),
                         " data; a text dataset (corpus, tokenizer, token shards) is needed here"));
  }
  if (!info_.contains("config") || !info_["config"].is_object()) {
    throw FileError(str("'", file.string(), "' lacks the config; re-run `edgedistill data`"));
  }
  config_ = core::config_from_saved_json<DataConfig>(info_["config"], file);
  const std::string recorded_hash = info_.value("config_hash", std::string());
  if (recorded_hash != data_config_hash(config_)) {
    throw FileError(str("'", file.string(), "': the config hash ", recorded_hash,
                        " does not match its config (", data_config_hash(config_),
                        "); the file was edited or damaged; re-run `edgedistill data`"));
  }
  tokenizer_ = load_tokenizer(dir / "tokenizer");
  const std::string tokenizer_hash = info_.value("/tokenizer/hash"_json_pointer, std::string());
  if (tokenizer_hash != tokenizer_->hash()) {
    throw FileError(str("'", dir.string(), "': the tokenizer's hash ", tokenizer_->hash(),
                        " differs from ", tokenizer_hash, " recorded in ", kDataJsonName,
                        "; re-run `edgedistill data`"));
  }
}

fs::path PreparedData::shard_path(const std::string& split) const {
  if (std::find(kSplitNames.begin(), kSplitNames.end(), split) == kSplitNames.end()) {
    throw InputError(str("unknown split '", split, "'; expected train, valid or test"));
  }
  return dir_ / "shards" / (split + ".bin");
}

TokenShard PreparedData::shard(const std::string& split) const {
  return TokenShard(shard_path(split), tokenizer_->hash());
}

}  // namespace edgedistill::data
