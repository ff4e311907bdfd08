// Byte-pair encoding by merge rank, as Hugging Face tokenizers' BPE model and llama.cpp's "gpt2"
// vocabularies define it: a word starts as one symbol per character (per byte for byte-level
// vocabularies), and the adjacent pair with the lowest merge rank is merged, the leftmost first
// among equal ranks, until no adjacent pair has a merge.
//
// Byte-level vocabularies (GPT-2, Llama 3, Qwen2, SmolLM) spell each byte as a printable
// character (GPT-2's encoder.py bytes_to_unicode): bytes '!'..'~', 0xA1..0xAC and 0xAE..0xFF as
// the code point of the same value, the 68 others as U+0100.. in byte order. This model works on
// the raw bytes instead (the spelling is a bijection), so words are never re-spelled while
// encoding; byte_level_spelling / byte_level_bytes convert at the file boundary.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace edgedistill::tok {

// The code point that spells `byte` in a byte-level vocabulary.
uint32_t byte_level_char(uint8_t byte);
// The byte-level spelling of raw bytes (UTF-8).
std::string byte_level_spelling(std::string_view bytes);
// The raw bytes a byte-level spelling stands for; false when `spelled` holds a character outside
// the byte-level alphabet (or is not UTF-8).
bool byte_level_bytes(std::string_view spelled, std::string& bytes);

struct BpeOptions {
  // Symbols are bytes (byte-level vocabularies) rather than UTF-8 characters.
  bool byte_level = false;
  // A word that is itself in the vocabulary is that token, without merging (Llama 3's
  // "ignore_merges").
  bool ignore_merges = false;
  // A character that is no token becomes its UTF-8 bytes as "<0xNN>" tokens, when all of them
  // exist (tokenizer.json "byte_fallback").
  bool byte_fallback = false;
  // The token of a character that is no token (and has no byte tokens); -1: none, the character
  // is dropped (as Hugging Face's BPE does without an unk_token).
  int32_t unk_id = -1;
  // Consecutive unknown characters become one unk token ("fuse_unk").
  bool fuse_unk = false;
};

class BpeModel {
 public:
  // `vocab`: the model's tokens as raw text (bytes for byte-level models) with their ids;
  // `merges`: pairs of token ids in rank order (rank = index). A merge whose concatenation is not
  // in `vocab`, or a duplicate token, is an InputError naming `origin`.
  BpeModel(const std::vector<std::pair<std::string, int32_t>>& vocab,
           const std::vector<std::pair<int32_t, int32_t>>& merges, const BpeOptions& options,
           const std::string& origin);
  ~BpeModel();
  BpeModel(const BpeModel&) = delete;
  BpeModel& operator=(const BpeModel&) = delete;

  // Appends the ids of one word (raw bytes; well-formed UTF-8 unless byte-level) to `out`.
  // Results are cached per thread, so repeated words cost one hash look-up.
  void encode_word(std::string_view word, std::vector<int32_t>& out) const;

  // The id of a raw token text, or -1.
  int32_t find(std::string_view text) const;
  const BpeOptions& options() const { return options_; }
  // The merges as (left, right) ids, in rank order.
  const std::vector<std::pair<int32_t, int32_t>>& merges() const { return merge_list_; }

 private:
  void merge_word(std::string_view word, std::vector<int32_t>& out) const;
  void initial_symbols(std::string_view word, std::vector<int32_t>& ids,
                       std::vector<uint32_t>& lengths) const;

  struct Merge {
    int32_t rank;
    int32_t result;
  };
  static uint64_t pair_key(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) |
           static_cast<uint32_t>(right);
  }

  BpeOptions options_;
  std::vector<std::string> texts_;  // owned token texts the map's keys view
  std::unordered_map<std::string_view, int32_t> ids_;
  std::unordered_map<uint64_t, Merge> merges_;
  std::vector<std::pair<int32_t, int32_t>> merge_list_;
  int32_t byte_ids_[256];  // single-byte tokens (byte-level) or "<0xNN>" tokens (byte fallback)
  uint64_t cache_id_;      // names this model in the per-thread word caches
};

}  // namespace edgedistill::tok
