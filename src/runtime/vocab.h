// The tokenizer a GGUF file carries, for the runtime (no SentencePiece library): the "llama"
// (SentencePiece) vocabulary of tokenizer.ggml.tokens / scores / token_type, encoded the way
// libsentencepiece's BPE model does (tests/test_runtime_vocab.cpp compares the two) and decoded the
// way SentencePiece does.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "io/gguf.h"

namespace edgedistill::runtime {

enum class VocabTokenType : int32_t {
  normal = 1,
  unknown = 2,
  control = 3,
  user_defined = 4,
  unused = 5,
  byte = 6,
};

// What tokenizer.ggml.* holds.
struct VocabData {
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<VocabTokenType> types;
  int32_t bos_id = 1, eos_id = 2, unk_id = 0;
  bool add_bos = true;
};

class Vocab {
 public:
  using Type = VocabTokenType;

  // Validates the data (tokens, scores and types of one length; special ids in range; no duplicate
  // tokens): InputError naming `origin` and the problem otherwise.
  Vocab(VocabData data, const std::string& origin);
  // Reads the tokenizer.ggml.* keys (model must be "llama"); FileError naming the key otherwise.
  static Vocab from_gguf(const io::GgufReader& file);

  int32_t size() const { return static_cast<int32_t>(tokens_.size()); }
  int32_t bos_id() const { return bos_id_; }
  int32_t eos_id() const { return eos_id_; }
  int32_t unk_id() const { return unk_id_; }
  bool add_bos() const { return add_bos_; }
  const std::string& token(int32_t id) const { return tokens_.at(id); }
  float score(int32_t id) const { return scores_.at(id); }
  Type type(int32_t id) const { return types_.at(id); }

  // SentencePiece BPE encoding: a space is prefixed, spaces become U+2581, then the adjacent pair
  // whose concatenation is a vocabulary piece with the highest score is merged (leftmost first on
  // ties) until no pair merges; pieces not in the vocabulary fall back to <0xNN> byte tokens (or
  // unk). BOS is prepended when `add_bos` is true. As libsentencepiece 0.1.97 (vocab.cpp has the
  // details): user-defined pieces are taken whole and never merged, merges form only normal,
  // user-defined and unused pieces, an unused piece is split back into its two halves, and
  // without byte tokens each run of unknown characters is one unk. An empty text has no tokens.
  std::vector<int32_t> encode(std::string_view text, bool add_bos) const;
  // The text of ids: control tokens vanish, byte tokens become their bytes, U+2581 a space, unk
  // reads " \u2047 " (as in SentencePiece); the leading space of the first piece that is not a
  // control token is dropped when `strip_leading_space`. An id outside the vocabulary is an
  // InputError.
  std::string decode(const std::vector<int32_t>& ids, bool strip_leading_space = true) const;
  // One token's text as it continues a stream (for printing while generating): decode({id},
  // false), so a byte token is one raw byte and a control token is empty.
  std::string piece(int32_t id) const;

 private:
  std::vector<std::string> tokens_;
  std::vector<float> scores_;
  std::vector<Type> types_;
  std::unordered_map<std::string, int32_t> ids_;
  int32_t bos_id_ = 1, eos_id_ = 2, unk_id_ = 0;
  bool add_bos_ = true;
  int32_t byte_ids_[256];              // <0xNN> token ids, -1 where absent
  bool byte_fallback_ = false;         // any <0xNN> token exists (else unknown text becomes unk)
  size_t max_user_defined_bytes_ = 0;  // longest user-defined piece; 0: none
};

}  // namespace edgedistill::runtime
