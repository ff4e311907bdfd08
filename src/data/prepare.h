// Preparing data (`edgedistill data`) and the data cache.
//
// A prepared text dataset is a directory:
//   data.json                  format, version, the config and its hash, per-split counts,
//                              tokenizer kind/hash/vocab size, edgedistill version
//   corpus/{train,valid,test}.txt   documents separated by one blank line
//   corpus/split.json          document ids per split
//   tokenizer/                 tokenizer.json (+ tokenizer.model for SentencePiece)
//   shards/{train,valid,test}.bin   token shards (+ .json sidecars): per document <s> tokens </s>
// An image dataset's directory holds only data.json (the IDX files are read in place).
//
// The directory is built beside its final place and renamed into it, so a killed run leaves
// nothing half-written where readers look.
#pragma once

#include <filesystem>

#include "data/data_config.h"
#include "data/describe_path.h"
#include "data/prepared_data.h"

namespace edgedistill::data {

namespace fs = std::filesystem;

inline constexpr const char* kDataFormat = "edgedistill-data";
inline constexpr const char* kDataJsonName = "data.json";

// Prepares the data a config describes into `out_dir`, replacing what is there. Shows progress
// for corpus extraction, tokenizer training and encoding, and logs a summary.
void prepare_data(const DataConfig& config, const fs::path& out_dir);

// $EDGEDISTILL_CACHE_DIR, else $XDG_CACHE_HOME/edgedistill, else $HOME/.cache/edgedistill.
fs::path default_cache_root();

// cache_root/data/<name>-<first 16 hex digits of data_config_hash>.
fs::path prepared_data_dir(const DataConfig& config, const fs::path& cache_root);

// True when `dir` holds complete prepared data for a config with hash `config_hash`.
bool is_prepared(const fs::path& dir, const std::string& config_hash);

// Returns prepared_data_dir(config, cache_root), preparing it first unless it already holds this
// config's data. Safe against concurrent callers: each builds in its own staging directory, and
// the first complete directory to arrive is kept.
fs::path ensure_prepared(const DataConfig& config, const fs::path& cache_root);

}  // namespace edgedistill::data
