// Summaries for `edgedistill inspect`.
#pragma once

#include <filesystem>

#include <nlohmann/json.hpp>

namespace edgedistill::data {

// A summary of a token shard (.bin), a tokenizer directory (or its tokenizer.json, or a Hugging
// Face tokenizer.json, or a SentencePiece .model file) or a prepared
// data directory (or its data.json): counts, hashes, vocabulary size, and for a shard whose
// tokenizer sits beside it (../tokenizer) the first tokens decoded. An empty object when the path
// is none of these, so the caller can try other kinds; a damaged file of one of these kinds
// throws its usual FileError.
nlohmann::ordered_json describe_path(const std::filesystem::path& path);

}  // namespace edgedistill::data
