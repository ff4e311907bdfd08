// SentencePiece's normalization of raw text (SentencePiece 0.1.97 normalizer.cc), without
// libsentencepiece: character rules from the model's precompiled charsmap, U+FFFD for malformed
// UTF-8, whitespace cleanup, the dummy prefix (or suffix) and the U+2581 space marker.
//
// The precompiled charsmap (NormalizerSpec.precompiled_charsmap) is
//   [uint32 little-endian: trie size in bytes][trie: darts-clone double array][replacement strings]
// The double array is an array of 32-bit units. A unit's bits: 0-7 its label (the byte that leads
// to it), 8 "a key ends here", 9 "shift the offset by 8", 10-30 the offset, 31 "leaf". Searching
// byte c from unit index p: the child is p ^ offset(unit[p]) ^ c, valid when its label is c; when
// the child has bit 8 set, the unit at child ^ offset(child) is a leaf whose low 31 bits are the
// byte offset of a NUL-terminated replacement string in the strings part. A rule maps the longest
// key that prefixes the text to its replacement (an empty replacement deletes the key).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/piece_trie.h"
#include "tokenizer/sentencepiece_model.h"

namespace edgedistill::tok {

// The character rules of a precompiled charsmap, validated once so that look-ups need no checks.
class PrecompiledCharsmap {
 public:
  PrecompiledCharsmap() = default;
  // Parses `blob` (not empty). A blob that is cut short, whose trie has a child or a replacement
  // outside its bounds, or whose strings are not NUL-terminated is a FileError naming `origin`.
  PrecompiledCharsmap(std::string_view blob, const std::string& origin);

  bool empty() const { return units_.empty(); }
  // Whether some rule's key starts with `byte`.
  bool has_key_starting_with(uint8_t byte) const;

  // The longest rule whose key prefixes `text`: returns the key's length in bytes (0: none) and
  // sets `replacement`. As SentencePiece, only the first kMaxMatches keys along the text count.
  size_t longest_match(std::string_view text, std::string_view& replacement) const;

  // SentencePiece collects at most this many prefix matches (normalizer.h, kMaxTrieResultsSize).
  static constexpr int kMaxMatches = 32;

 private:
  std::vector<uint32_t> units_;
  std::string strings_;  // the replacement strings, each followed by NUL
};

class SpmNormalizer {
 public:
  // `spec` is the model's NormalizerSpec (or its denormalizer_spec, with
  // treat_whitespace_as_suffix false, as SentencePiece builds its denormalizer). A corrupt charsmap
  // is a FileError naming `origin`.
  SpmNormalizer(const SentencePieceNormalizerSpec& spec, bool treat_whitespace_as_suffix,
                const std::string& origin);

  // Pieces that are copied verbatim wherever they start, before any rule applies (SentencePiece's
  // prefix matcher over the model's user-defined pieces; the longest one wins).
  void set_user_defined_pieces(const std::vector<std::string_view>& pieces);

  // The normalized text, in SentencePiece 0.1.97's order (normalizer.cc, Normalize):
  //   1. The text is consumed one "prefix" at a time: a user-defined piece, else the longest rule
  //      of the charsmap (its replacement), else one well-formed UTF-8 character, else one byte,
  //      which becomes U+FFFD.
  //   2. remove_extra_whitespaces: prefixes that normalize to exactly " " are dropped at the start;
  //      leading spaces of a replacement are dropped after a replacement that ended with a space;
  //      spaces (U+2581 when escaping) are dropped from the end.
  //   3. add_dummy_prefix: one space before the text (after it with treat_whitespace_as_suffix),
  //      unless the text normalized to nothing.
  //   4. escape_whitespaces: every space, including the dummy one, becomes U+2581.
  // An empty text, or one of spaces only with remove_extra_whitespaces, normalizes to "".
  std::string normalize(std::string_view text) const;
  void normalize(std::string_view text, std::string& out) const;

  bool treat_whitespace_as_suffix() const { return treat_whitespace_as_suffix_; }

 private:
  // One step of (1): sets `replacement` and returns the bytes of `text` consumed (>= 1).
  size_t normalize_prefix(std::string_view text, std::string_view& replacement) const;

  SentencePieceNormalizerSpec spec_;  // without the charsmap, which lives in charsmap_
  bool treat_whitespace_as_suffix_ = false;
  PrecompiledCharsmap charsmap_;
  PieceTrie user_defined_;
  // Per byte: an ASCII byte that no rule and no user-defined piece starts with, so it is its own
  // prefix and normalize() copies it without a look-up.
  bool plain_ascii_[256];
  void find_plain_ascii();
};

}  // namespace edgedistill::tok
