// Tokens found in the text before any normalization or splitting: Hugging Face's added tokens
// (tokenizer.json "added_tokens") and llama.cpp's special tokens (GGUF control and user-defined
// tokens). The text is cut around each match, leftmost first and, among matches that start at
// the same byte, longest first (Hugging Face's LeftmostLongest matcher).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace edgedistill::tok {

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false;      // a control token: matched only when special tokens are parsed
  bool single_word = false;  // matched only where no word character touches it on either side
  bool lstrip = false;       // takes the whitespace before it
  bool rstrip = false;       // takes the whitespace after it
  bool normalized = false;   // matched in the normalized text (else in the raw text)
};

// A piece of the text: a span of it, or a matched token.
struct TextFragment {
  size_t begin = 0;
  size_t length = 0;
  int32_t token = -1;  // the matched token's id; -1: plain text
};

class AddedTokenMatcher {
 public:
  AddedTokenMatcher() = default;
  // Keeps the tokens with the given `normalized` flag; empty contents are ignored.
  AddedTokenMatcher(const std::vector<AddedToken>& tokens, bool normalized);

  bool empty() const { return tokens_.empty(); }
  const std::vector<AddedToken>& tokens() const { return tokens_; }
  // Cuts `text` into fragments (appended to `out`; offsets relative to `text`). Special tokens
  // are skipped unless `parse_special`.
  void split(std::string_view text, bool parse_special, std::vector<TextFragment>& out) const;

 private:
  struct Node {
    int32_t first_child = -1, next_sibling = -1;
    uint8_t byte = 0;
    int32_t token = -1;  // index into tokens_ of the token ending here
  };
  // Index into tokens_ of the longest token that starts at `at` (-1: none).
  int32_t longest_match(std::string_view text, size_t at, size_t& length) const;

  std::vector<AddedToken> tokens_;
  std::vector<Node> trie_;  // node 0 is the root
  bool first_bytes_[256] = {};
};

}  // namespace edgedistill::tok
