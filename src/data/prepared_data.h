// A prepared text dataset, opened for reading: its config, tokenizer and token shards, all checked
// against data.json.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "data/data_config.h"
#include "data/token_shard.h"
#include "data/tokenizer.h"

namespace edgedistill::data {

namespace fs = std::filesystem;

class PreparedData {
 public:
  // Checks data.json (format, version, a text dataset, the config hash) and loads the tokenizer,
  // whose hash must match the one recorded. Errors name the file and say what to re-run.
  explicit PreparedData(const fs::path& dir);

  const DataConfig& config() const { return config_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  // The shard of "train", "valid" or "test", checked against the tokenizer's hash.
  TokenShard shard(const std::string& split) const;
  // The path of a split's shard.
  fs::path shard_path(const std::string& split) const;
  // The parsed data.json.
  const nlohmann::json& info() const { return info_; }
  const fs::path& dir() const { return dir_; }

 private:
  fs::path dir_;
  nlohmann::json info_;
  DataConfig config_;
  std::unique_ptr<Tokenizer> tokenizer_;
};

// Reads and checks the header fields of a data.json (format and version); returns it parsed.
nlohmann::json read_data_json(const fs::path& dir);

}  // namespace edgedistill::data
