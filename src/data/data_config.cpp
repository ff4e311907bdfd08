#include "data/data_config.h"

#include <algorithm>
#include <map>
#include <mutex>
#include <set>

#include "core/sha256.h"
#include "data/tokenizer.h"

namespace edgedistill::data {
namespace {

// <unk>, <s>, </s> and the 256 byte-fallback pieces are in every SentencePiece vocabulary we
// train; the rest holds characters and merges.
constexpr int kReservedPieces = 3 + 256;
// Token shards store ids as uint32 above 65536 pieces; beyond this the embedding alone dwarfs the
// small models edgedistill makes, so a larger value is almost certainly a typo.
constexpr int kMaxVocabSize = 262144;

bool is_part_of_speech(const std::string& part) {
  return part == "noun" || part == "verb" || part == "adj" || part == "adv";
}

// The name becomes a directory name in the cache: keep it to portable characters.
bool is_portable_name(const std::string& name) {
  if (name.empty() || name.front() == '.') return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.';
  });
}

}  // namespace

void SourceConfig::validate(const std::string& at) const {
  if (kind == "kjv" && verses_per_doc < 1) {
    core::config_fail(core::key_path(at, "verses_per_doc"),
                      str("must be at least 1, found ", verses_per_doc));
  }
  if (kind == "wordnet") {
    if (parts.empty()) {
      core::config_fail(core::key_path(at, "parts"),
                        "must list at least one of noun, verb, adj, adv");
    }
    std::set<std::string> seen;
    for (const auto& part : parts) {
      if (!is_part_of_speech(part)) {
        core::config_fail(core::key_path(at, "parts"),
                          str("expects noun, verb, adj or adv, found '", part, "'"));
      }
      if (!seen.insert(part).second) {
        core::config_fail(core::key_path(at, "parts"), str("lists '", part, "' twice"));
      }
    }
  }
  if (kind == "text_file" && path.empty()) {
    core::config_fail(core::key_path(at, "path"),
                      "a text_file source needs the path of a UTF-8 text file");
  }
}

void SplitConfig::validate(const std::string& at) const {
  if (!(valid >= 0 && valid < 1)) {
    core::config_fail(core::key_path(at, "valid"), str("must be in [0, 1), found ", valid));
  }
  if (!(test >= 0 && test < 1)) {
    core::config_fail(core::key_path(at, "test"), str("must be in [0, 1), found ", test));
  }
  if (valid + test >= 1) {
    core::config_fail(
        at, str("valid + test must be below 1 to leave documents for training; found ", valid,
                " + ", test, " = ", valid + test));
  }
}

void TokenizerConfig::validate(const std::string& at) const {
  if (kind != "sentencepiece") return;
  if (vocab_size <= kReservedPieces || vocab_size > kMaxVocabSize) {
    core::config_fail(
        core::key_path(at, "vocab_size"),
        str("must be in ", kReservedPieces + 1, "..", kMaxVocabSize, " (", kReservedPieces,
            " ids are taken by <unk>, <s>, </s> and the 256 byte pieces), found ", vocab_size));
  }
  if (!(character_coverage > 0 && character_coverage <= 1)) {
    core::config_fail(core::key_path(at, "character_coverage"),
                      str("must be in (0, 1], found ", character_coverage));
  }
  if (max_sentences < 1) {
    core::config_fail(core::key_path(at, "max_sentences"),
                      str("must be at least 1, found ", max_sentences));
  }
  if (seed < 0 || seed > 0xFFFFFFFELL) {
    // SentencePiece takes an unsigned 32-bit seed and reserves 0xFFFFFFFF for "random".
    core::config_fail(core::key_path(at, "seed"),
                      str("must be in 0..4294967294 (SentencePiece's seed range), found ", seed));
  }
}

void ImagesConfig::validate(const std::string& at) const {
  if (dir.empty()) core::config_fail(core::key_path(at, "dir"), "needs the IDX directory");
  if (valid_count < 0) {
    core::config_fail(core::key_path(at, "valid_count"),
                      str("must be 0 or more, found ", valid_count));
  }
}

void DataConfig::validate(const std::string& at) const {
  if (!is_portable_name(name)) {
    core::config_fail(
        core::key_path(at, "name"),
        str("must hold only letters, digits and -_. (no leading '.'); found '", name, "'"));
  }
  if (kind == "text") {
    if (sources.empty()) {
      core::config_fail(core::key_path(at, "sources"),
                        "a text dataset needs at least one source (kjv, wordnet or text_file)");
    }
    if (max_documents < 0) {
      core::config_fail(core::key_path(at, "max_documents"),
                        str("must be 0 (all) or a positive count, found ", max_documents));
    }
  }
}

namespace {

// The hash of the tokenizer at `from`, remembered per path for the life of the process (loading a
// large tokenizer.json takes a moment, and the key is asked for often).
std::string tokenizer_hash_of(const fs::path& from) {
  static std::mutex mutex;
  static std::map<std::string, std::string> known;
  const std::string key = fs::absolute(from).lexically_normal().string();
  {
    std::lock_guard<std::mutex> lock(mutex);
    if (const auto it = known.find(key); it != known.end()) return it->second;
  }
  const std::string hash = open_tokenizer(from)->hash();
  std::lock_guard<std::mutex> lock(mutex);
  known[key] = hash;
  return hash;
}

}  // namespace

std::string data_config_hash(const DataConfig& config) {
  auto json = core::to_json(config);
  // Keys added with an empty default stay out of the key while empty, so data prepared before
  // they existed is still found. A tokenizer given by path counts by its contents: the same
  // tokenizer anywhere is the same data, a changed file is other data.
  if (json.contains("tokenizer")) {
    if (config.tokenizer.from.empty()) {
      json["tokenizer"].erase("from");
    } else if (config.kind == "text") {
      json["tokenizer"]["from"] = "sha256:" + tokenizer_hash_of(config.tokenizer.from);
    }
  }
  return core::sha256_hex(str("edgedistill-data format ", kDataFormatVersion, "\n", json.dump()));
}

}  // namespace edgedistill::data
