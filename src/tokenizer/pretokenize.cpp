// The splitters follow the expressions' regex semantics: at each position the alternatives are
// tried in order and the first that matches wins; quantifiers are greedy and give back characters
// only as far as the rest of their alternative needs (the backtracking of \s+(?!\S) and
// \s*[\r\n]+ below). Every character is matched by some alternative of these expressions (a
// character is a letter, a number, whitespace or "other"), so the words tile the text.
#include "tokenizer/pretokenize.h"

#include <cstdint>

#include "core/error.h"
#include "tokenizer/unicode.h"
#include "tokenizer/utf8.h"

namespace edgedistill::tok {
namespace {

constexpr std::string_view kGpt2Regex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr std::string_view kGpt2RegexLlamaCpp =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S))";
constexpr std::string_view kLlama3Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// The character classes the expressions use.
enum class CharClass { letter, number, whitespace, other, end };

// A read position in well-formed UTF-8 text.
class CharReader {
 public:
  explicit CharReader(std::string_view text) : text_(text) {}

  size_t size() const { return text_.size(); }
  uint8_t byte(size_t i) const { return i < text_.size() ? static_cast<uint8_t>(text_[i]) : 0; }

  // The class of the character at `i` and, in `length`, its bytes (0 at the end).
  CharClass char_class(size_t i, size_t& length) const {
    if (i >= text_.size()) {
      length = 0;
      return CharClass::end;
    }
    uint32_t code = 0;
    length = utf8_decode(text_, i, code);
    ED_CHECK(length > 0, "split_words needs well-formed UTF-8 (byte ", i, ")");
    const uint16_t flags = codepoint_flags(code);
    if (flags & kLetter) return CharClass::letter;
    if (flags & kNumber) return CharClass::number;
    if (flags & kWhitespace) return CharClass::whitespace;
    return CharClass::other;
  }
  CharClass char_class(size_t i) const {
    size_t length = 0;
    return char_class(i, length);
  }

  // The end of the run of `wanted` characters that starts at `i`.
  size_t run_end(size_t i, CharClass wanted) const {
    size_t length = 0;
    while (char_class(i, length) == wanted) i += length;
    return i;
  }

 private:
  std::string_view text_;
};

// 's 't 're 've 'm 'll 'd at `i` (case-sensitive, as GPT-2 spells them): bytes matched, or 0.
size_t match_contraction(const CharReader& text, size_t i) {
  if (text.byte(i) != '\'') return 0;
  const uint8_t a = text.byte(i + 1), b = text.byte(i + 2);
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
  if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
  return 0;
}

// Bytes of the character at `i` when it matches the ASCII letter `lower` under (?i): its two
// cases, and for 's' also U+017F LATIN SMALL LETTER LONG S, whose simple case folding is 's' (the
// only non-ASCII character that folds to one of the letters used here); 0 otherwise.
size_t match_folded(const CharReader& text, size_t i, char lower) {
  const uint8_t c = text.byte(i);
  if (c == static_cast<uint8_t>(lower) || c == static_cast<uint8_t>(lower - 'a' + 'A')) return 1;
  if (lower == 's' && c == 0xC5 && text.byte(i + 1) == 0xBF) return 2;
  return 0;
}

// (?i:'s|'t|'re|'ve|'m|'ll|'d) at `i`: bytes matched, or 0.
size_t match_contraction_folded(const CharReader& text, size_t i) {
  if (text.byte(i) != '\'') return 0;
  const size_t j = i + 1;
  for (const char single : {'s', 't'}) {
    if (const size_t n = match_folded(text, j, single)) return 1 + n;
  }
  for (const char* pair : {"re", "ve"}) {
    if (const size_t n = match_folded(text, j, pair[0])) {
      if (const size_t m = match_folded(text, j + n, pair[1])) return 1 + n + m;
    }
  }
  if (const size_t n = match_folded(text, j, 'm')) return 1 + n;
  if (const size_t n = match_folded(text, j, 'l')) {
    if (const size_t m = match_folded(text, j + n, 'l')) return 1 + n + m;
  }
  if (const size_t n = match_folded(text, j, 'd')) return 1 + n;
  return 0;
}

// \s+(?!\S)|\s+ at `i`, which starts whitespace: the whole run when it ends the text or the
// character after it is whitespace (never: the run is maximal), else the run without its last
// character when that leaves one (so that character can prefix the next word), else the one
// character (\s+).
size_t match_whitespace_tail(const CharReader& text, size_t i) {
  size_t end = i, last = i, length = 0;
  while (text.char_class(end, length) == CharClass::whitespace) {
    last = end;
    end += length;
  }
  if (end >= text.size()) return end - i;
  return last > i ? last - i : end - i;
}

// One word of the gpt2 expression at `i` (< size): its length in bytes.
size_t match_gpt2(const CharReader& text, size_t i) {
  if (const size_t n = match_contraction(text, i)) return n;
  size_t length = 0;
  const CharClass first = text.char_class(i, length);
  // " ?\p{L}+", " ?\p{N}+", " ?[^\s\p{L}\p{N}]+": a space joins the run that follows it.
  if (text.byte(i) == ' ') {
    const CharClass next = text.char_class(i + 1);
    if (next == CharClass::letter || next == CharClass::number || next == CharClass::other) {
      return text.run_end(i + 1, next) - i;
    }
  } else if (first != CharClass::whitespace) {
    return text.run_end(i, first) - i;
  }
  return match_whitespace_tail(text, i);
}

// One word of the llama3 (max_digits 3) or qwen2 (max_digits 1) expression at `i` (< size).
size_t match_llama3(const CharReader& text, size_t i, int max_digits) {
  if (const size_t n = match_contraction_folded(text, i)) return n;
  size_t length = 0;
  const CharClass first = text.char_class(i, length);
  const uint8_t first_byte = text.byte(i);
  // [^\r\n\p{L}\p{N}]?\p{L}+
  if (first == CharClass::letter) return text.run_end(i, CharClass::letter) - i;
  if (first != CharClass::number && first_byte != '\r' && first_byte != '\n' &&
      text.char_class(i + length) == CharClass::letter) {
    return text.run_end(i + length, CharClass::letter) - i;
  }
  // \p{N}{1,max_digits}
  if (first == CharClass::number) {
    size_t end = i;
    for (int digits = 0; digits < max_digits && text.char_class(end, length) == CharClass::number;
         ++digits) {
      end += length;
    }
    return end - i;
  }
  // " ?[^\s\p{L}\p{N}]+[\r\n]*"
  size_t start = 0;
  bool other_run = false;
  if (first == CharClass::other) {
    start = i;
    other_run = true;
  } else if (first_byte == ' ' && text.char_class(i + 1) == CharClass::other) {
    start = i + 1;
    other_run = true;
  }
  if (other_run) {
    size_t end = text.run_end(start, CharClass::other);
    while (text.byte(end) == '\r' || text.byte(end) == '\n') ++end;
    return end - i;
  }
  // \s*[\r\n]+: the whitespace run up to and including its last \r or \n.
  size_t end = i, after_newline = 0;
  while (text.char_class(end, length) == CharClass::whitespace) {
    if (text.byte(end) == '\r' || text.byte(end) == '\n') after_newline = end + 1;
    end += length;
  }
  if (after_newline > 0) return after_newline - i;
  return match_whitespace_tail(text, i);
}

}  // namespace

const char* split_pattern_name(SplitPattern pattern) {
  switch (pattern) {
    case SplitPattern::gpt2:
      return "gpt2";
    case SplitPattern::llama3:
      return "llama3";
    case SplitPattern::qwen2:
      return "qwen2";
  }
  return "?";
}

const char* split_pattern_regex(SplitPattern pattern) {
  switch (pattern) {
    case SplitPattern::gpt2:
      return kGpt2Regex.data();
    case SplitPattern::llama3:
      return kLlama3Regex.data();
    case SplitPattern::qwen2:
      return kQwen2Regex.data();
  }
  return "";
}

bool split_pattern_of_regex(std::string_view regex, SplitPattern& pattern) {
  if (regex == kGpt2Regex || regex == kGpt2RegexLlamaCpp) {
    pattern = SplitPattern::gpt2;
  } else if (regex == kLlama3Regex) {
    pattern = SplitPattern::llama3;
  } else if (regex == kQwen2Regex) {
    pattern = SplitPattern::qwen2;
  } else {
    return false;
  }
  return true;
}

void split_words(SplitPattern pattern, std::string_view text, size_t offset,
                 std::vector<TextSpan>& words) {
  const CharReader reader(text);
  for (size_t i = 0; i < text.size();) {
    size_t length = 0;
    switch (pattern) {
      case SplitPattern::gpt2:
        length = match_gpt2(reader, i);
        break;
      case SplitPattern::llama3:
        length = match_llama3(reader, i, 3);
        break;
      case SplitPattern::qwen2:
        length = match_llama3(reader, i, 1);
        break;
    }
    ED_CHECK(length > 0, "no alternative matched at byte ", i);
    words.push_back({offset + i, length});
    i += length;
  }
}

void split_digits(std::string_view text, size_t offset, bool individual,
                  std::vector<TextSpan>& words) {
  const CharReader reader(text);
  size_t start = 0;  // of the current run of non-numbers
  for (size_t i = 0; i < text.size();) {
    size_t length = 0;
    if (reader.char_class(i, length) != CharClass::number) {
      i += length;
      continue;
    }
    if (i > start) words.push_back({offset + start, i - start});
    const size_t end = individual ? i + length : reader.run_end(i, CharClass::number);
    words.push_back({offset + i, end - i});
    i = start = end;
  }
  if (text.size() > start) words.push_back({offset + start, text.size() - start});
}

}  // namespace edgedistill::tok
