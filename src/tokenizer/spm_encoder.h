// SentencePiece encoding and decoding without libsentencepiece, token for token equal to
// SentencePiece 0.1.97 (tests/test_tokenizer_spm.cpp compares it with Python's sentencepiece over
// models trained with many settings).
//
// SpmEncoder is the segmentation of already normalized text (shared with the GGUF "llama"
// vocabulary, which carries no normalizer); SentencePieceCodec is the whole of
// SentencePieceProcessor::EncodeAsIds / DecodeIds for a parsed model file.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/piece_trie.h"
#include "tokenizer/sentencepiece_model.h"
#include "tokenizer/spm_normalizer.h"

namespace edgedistill::tok {

class SpmEncoder {
 public:
  // SentencePiece's model types (TrainerSpec.model_type): BPE merges, the unigram language model,
  // one piece per character, one piece per space-delimited word.
  enum class Algorithm { bpe, unigram, character, word };

  // `pieces` in id order. Throws InputError naming `origin` when there are no pieces, a piece is
  // empty or appears twice, a score is NaN, a byte piece is not spelled <0xNN>, or `unk_id` is
  // outside the vocabulary.
  SpmEncoder(std::vector<SentencePieceModel::Piece> pieces, Algorithm algorithm, int32_t unk_id,
             const std::string& origin);

  // Segments `normalized` (text as the normalizer leaves it: spaces already U+2581, the dummy
  // prefix applied) and appends the ids to `out`:
  //   1. user-defined pieces are taken whole (longest match) and never merged (BPE, character);
  //   2. BPE: adjacent symbols merge into the piece with the highest score (the leftmost pair on
  //      ties) until none merges; unigram: the Viterbi path of highest total score; character:
  //      one piece per character; word: one piece per U+2581-initial word;
  //   3. a piece that was merged into an unused piece is split back into its halves (BPE);
  //   4. text that is no piece becomes one <0xNN> byte piece per byte when the vocabulary has byte
  //      pieces (<unk> for a byte without one), else <unk>, one per run of such text.
  // Text spelling a control piece is no piece here. (libsentencepiece's BPE refuses a text in
  // which a single character spells a control piece, "all normalized characters are not
  // consumed", and Python's binding then returns no ids; its unigram model treats the character as
  // unknown, as we do for all algorithms.)
  void encode_normalized(std::string_view normalized, std::vector<int32_t>& out) const;

  int32_t size() const { return static_cast<int32_t>(pieces_.size()); }
  int32_t unk_id() const { return unk_id_; }
  Algorithm algorithm() const { return algorithm_; }
  const SentencePieceModel::Piece& piece(int32_t id) const { return pieces_.at(id); }
  // The id of the piece spelled `text` (any type), or -1.
  int32_t find(std::string_view text) const { return trie_.find(text); }
  // The user-defined pieces, which the normalizer must copy verbatim.
  std::vector<std::string_view> user_defined_pieces() const;
  bool has_byte_pieces() const { return has_byte_pieces_; }

 private:
  class Emitter;

  void encode_bpe(std::string_view normalized, bool merge, Emitter& emitter) const;
  void encode_unigram(std::string_view normalized, Emitter& emitter) const;
  void encode_words(std::string_view normalized, Emitter& emitter) const;
  // Bytes of the longest user-defined piece at text[0] (0: none).
  size_t user_defined_prefix(std::string_view text) const;
  // Whether adjacent symbols may merge into this piece (SentencePiece keeps normal, user-defined
  // and unused pieces in the map BPE merges into; control, unknown and byte pieces apart).
  bool is_mergeable(int32_t id) const;

  // What the hot loops read of each piece, packed (a Piece's std::string makes it 40 bytes).
  struct PieceInfo {
    float score;
    TokenType type;
  };

  std::vector<SentencePieceModel::Piece> pieces_;
  std::vector<PieceInfo> info_;  // per id
  Algorithm algorithm_;
  int32_t unk_id_;
  PieceTrie trie_;               // every piece -> its id
  PieceTrie user_defined_trie_;  // the user-defined pieces only
  int32_t byte_ids_[256];        // the <0xNN> piece of each byte, -1 where absent
  bool has_byte_pieces_ = false;
  bool has_unused_pieces_ = false;
  // BPE may merge each run of symbols that starts at a U+2581 following another character on its
  // own: true when no piece that merging can form has such a U+2581 inside, so no merge crosses
  // the runs' borders and, merges never reaching across, the global highest-score-first order
  // restricted to one run is that run's own order (leftmost ties stay leftmost). Shorter runs
  // make the merge queue shallow. False when pieces are unused: then the text-wide order of
  // queued merges decides how an unused piece is split back (bpe_model.cc, rev_merge).
  bool splits_at_space_marker_ = false;
  // Unigram: the highest and lowest score of the normal pieces, from FLT_MIN (the smallest
  // positive float, not -FLT_MAX) and FLT_MAX, as unigram_model.cc starts them.
  float max_normal_score_;
  float min_normal_score_;
};

// A SentencePiece model file's processor: normalizer, encoder and decoder.
class SentencePieceCodec {
 public:
  // Checks the model as SentencePiece's loader does (exactly one unknown piece; byte pieces
  // exactly when byte_fallback, and then all 256; unique, non-empty pieces; a readable charsmap):
  // FileError naming `origin` otherwise.
  SentencePieceCodec(SentencePieceModel model, const std::string& origin);
  // Reads and parses a .model file.
  static SentencePieceCodec from_file(const std::string& path);
  // A vocabulary that did not come from a model file (a GGUF "llama" vocabulary put into a
  // SentencePieceModel): none of the loader's checks, only SpmEncoder's (InputError naming
  // `origin`): model.unk_id is the unknown piece whatever its type, and byte fallback covers the
  // bytes that have a <0xNN> piece (<unk> for the rest), as runtime::Vocab has always read them.
  static SentencePieceCodec for_vocabulary(SentencePieceModel model, const std::string& origin);

  // SentencePieceProcessor::EncodeAsIds (no BOS/EOS): normalize, then segment.
  std::vector<int32_t> encode(std::string_view text) const;
  void encode(std::string_view text, std::vector<int32_t>& out) const;  // appends
  // The normalized text that encode() segments.
  std::string normalize(std::string_view text) const { return normalizer_.normalize(text); }
  // SentencePieceProcessor::DecodeIds (decode_sentencepiece); InputError for an id out of range.
  std::string decode(const std::vector<int32_t>& ids) const;

  const SentencePieceModel& model() const { return model_; }
  const SpmEncoder& encoder() const { return encoder_; }

 private:
  struct VocabularyTag {};
  SentencePieceCodec(SentencePieceModel model, const std::string& origin, VocabularyTag);
  void finish_setup(const std::string& origin);

  SentencePieceModel model_;
  SpmEncoder encoder_;
  SpmNormalizer normalizer_;
  std::unique_ptr<SpmNormalizer> denormalizer_;  // null when the model has none
};

}  // namespace edgedistill::tok
