// Matching follows Hugging Face tokenizers' AddedVocabulary::find_matches: non-overlapping
// leftmost-longest matches over all tokens; a match that is then discarded (a special token when
// special tokens are not parsed, a single_word token inside a word) stays plain text and the
// search goes on after it.
#include "tokenizer/added_tokens.h"

#include "tokenizer/unicode.h"
#include "tokenizer/utf8.h"

namespace edgedistill::tok {
namespace {

// The code point that ends at byte `end` of well-formed UTF-8 `text` (end > 0).
uint32_t code_point_before(std::string_view text, size_t end) {
  size_t begin = end - 1;
  while (begin > 0 && (static_cast<uint8_t>(text[begin]) & 0xC0) == 0x80) --begin;
  uint32_t code = 0;
  return utf8_decode(text, begin, code) > 0 ? code : kReplacementCharacter;
}

// A word character for single_word tokens (the \w of Hugging Face's check): letters, marks,
// numbers and the underscore.
bool is_word_character(uint32_t code) {
  return code == '_' || (codepoint_flags(code) & (kLetter | kMark | kNumber)) != 0;
}

bool is_whitespace_code(uint32_t code) {
  return (codepoint_flags(code) & kWhitespace) != 0;
}

}  // namespace

AddedTokenMatcher::AddedTokenMatcher(const std::vector<AddedToken>& tokens, bool normalized) {
  trie_.push_back(Node{});
  for (const AddedToken& token : tokens) {
    if (token.content.empty() || token.normalized != normalized) continue;
    const auto index = static_cast<int32_t>(tokens_.size());
    tokens_.push_back(token);
    int32_t node = 0;
    for (const char c : token.content) {
      const auto byte = static_cast<uint8_t>(c);
      int32_t child = trie_[static_cast<size_t>(node)].first_child;
      while (child >= 0 && trie_[static_cast<size_t>(child)].byte != byte) {
        child = trie_[static_cast<size_t>(child)].next_sibling;
      }
      if (child < 0) {
        Node added;
        added.byte = byte;
        added.next_sibling = trie_[static_cast<size_t>(node)].first_child;
        child = static_cast<int32_t>(trie_.size());
        trie_.push_back(added);
        trie_[static_cast<size_t>(node)].first_child = child;
      }
      node = child;
    }
    // The same content twice: the first token keeps it.
    if (trie_[static_cast<size_t>(node)].token < 0) trie_[static_cast<size_t>(node)].token = index;
    first_bytes_[static_cast<uint8_t>(token.content[0])] = true;
  }
}

int32_t AddedTokenMatcher::longest_match(std::string_view text, size_t at, size_t& length) const {
  int32_t node = 0, found = -1;
  for (size_t i = at; i < text.size(); ++i) {
    const auto byte = static_cast<uint8_t>(text[i]);
    int32_t child = trie_[static_cast<size_t>(node)].first_child;
    while (child >= 0 && trie_[static_cast<size_t>(child)].byte != byte) {
      child = trie_[static_cast<size_t>(child)].next_sibling;
    }
    if (child < 0) break;
    node = child;
    if (trie_[static_cast<size_t>(node)].token >= 0) {
      found = trie_[static_cast<size_t>(node)].token;
      length = i + 1 - at;
    }
  }
  return found;
}

void AddedTokenMatcher::split(std::string_view text, bool parse_special,
                              std::vector<TextFragment>& out) const {
  size_t plain_start = 0;
  for (size_t i = 0; i < text.size();) {
    if (!first_bytes_[static_cast<uint8_t>(text[i])]) {
      ++i;
      continue;
    }
    size_t length = 0;
    const int32_t index = longest_match(text, i, length);
    if (index < 0) {
      ++i;
      continue;
    }
    const AddedToken& token = tokens_[static_cast<size_t>(index)];
    size_t start = i, stop = i + length;
    i = stop;
    if (token.special && !parse_special) continue;
    if (token.single_word && ((start > 0 && is_word_character(code_point_before(text, start))) ||
                              (stop < text.size() && [&] {
                                uint32_t code = 0;
                                return utf8_decode(text, stop, code) > 0 && is_word_character(code);
                              }()))) {
      continue;
    }
    if (token.lstrip) {
      while (start > plain_start && is_whitespace_code(code_point_before(text, start))) {
        const uint32_t code = code_point_before(text, start);
        start -= code < 0x80 ? 1 : code < 0x800 ? 2 : code < 0x10000 ? 3 : 4;
      }
    }
    if (token.rstrip) {
      uint32_t code = 0;
      size_t n = 0;
      while (stop < text.size() && (n = utf8_decode(text, stop, code)) > 0 &&
             is_whitespace_code(code)) {
        stop += n;
      }
      i = stop;
    }
    if (plain_start < start) out.push_back({plain_start, start - plain_start, -1});
    out.push_back({start, stop - start, token.id});
    plain_start = stop;
  }
  if (plain_start < text.size()) out.push_back({plain_start, text.size() - plain_start, -1});
}

}  // namespace edgedistill::tok
