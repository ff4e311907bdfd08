// Pre-tokenization: how a byte-level BPE tokenizer cuts normalized text into the words that BPE
// merges within (a merge never crosses a word boundary).
//
// Real tokenizers describe their split as a regular expression (tokenizer.json's Split and
// ByteLevel pre-tokenizers, llama.cpp's tokenizer.ggml.pre variants). Rather than a general regex
// engine, each expression family these models use is a hand-written splitter that follows the
// expression's leftmost-first, greedy, backtracking semantics exactly (the tests compare them with
// Python's `regex` module on the expressions themselves). An expression that is none of these is
// refused by name, never approximated.
//
// The families (\p{L} letters, \p{N} numbers, \s the White_Space property, tokenizer/unicode.h):
//   gpt2    's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//           (GPT-2's encoder.py; ByteLevel(use_regex) in tokenizer.json; llama.cpp "gpt-2")
//   llama3  (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
//           ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+      (Llama 3; llama.cpp "llama-bpe")
//   qwen2   the llama3 expression with \p{N} instead of \p{N}{1,3}   (Qwen2; llama.cpp "qwen2")
// and the Digits pre-tokenizer (each \p{N} character its own word: SmolLM's first step).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace edgedistill::tok {

// A word: bytes [begin, begin + length) of the text that was split.
struct TextSpan {
  size_t begin = 0;
  size_t length = 0;
};

enum class SplitPattern {
  gpt2,
  llama3,
  qwen2,
};

// "gpt2", "llama3", "qwen2".
const char* split_pattern_name(SplitPattern pattern);

// The pattern whose regular expression is exactly `regex` (as tokenizer.json spells it, after
// JSON unescaping), or false. Also accepts the GPT-2 expression without its final "|\s+", as
// llama.cpp writes it (the same split: what no alternative matches is a word of its own).
bool split_pattern_of_regex(std::string_view regex, SplitPattern& pattern);

// The regular expression of a pattern, as tokenizer.json spells it.
const char* split_pattern_regex(SplitPattern pattern);

// Appends the words of `text` (well-formed UTF-8) under `pattern` to `words`; offsets are relative
// to `text` plus `offset`. Every byte of the text lands in exactly one word, in order.
void split_words(SplitPattern pattern, std::string_view text, size_t offset,
                 std::vector<TextSpan>& words);

// The Digits pre-tokenizer: every \p{N} character a word of its own (`individual`), or every run
// of them one word; the text between them stays one word.
void split_digits(std::string_view text, size_t offset, bool individual,
                  std::vector<TextSpan>& words);

}  // namespace edgedistill::tok
