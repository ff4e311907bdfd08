#include "tokenizer/unicode.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "tokenizer/utf8.h"

namespace edgedistill::tok {
namespace {

// The quick-check values of UAX #15 section 9 that are not "Yes", one bit each.
enum QuickCheckBit : uint8_t {
  kNfdNo = 1 << 0,
  kNfkdNo = 1 << 1,
  kNfcNo = 1 << 2,
  kNfcMaybe = 1 << 3,  // may compose with a preceding character
  kNfkcNo = 1 << 4,
  kNfkcMaybe = 1 << 5,
};

struct CodepointRecord {
  uint16_t flags;  // CodepointFlag bits
  uint8_t combining_class;
  uint8_t quick_check;  // QuickCheckBit bits
};
static_assert(sizeof(CodepointRecord) == 4, "kRecords is sized as 4 bytes per record");

struct CompositionPair {
  uint32_t first, second, composite;
};
static_assert(sizeof(CompositionPair) == 12, "kCompositions is sized as 12 bytes per pair");

#include "tokenizer/unicode_tables.inc"

constexpr uint32_t kLastCodePoint = 0x10FFFF;
constexpr CodepointRecord kBeyondUnicodeRecord = {kOther, 0, 0};

// Hangul syllable arithmetic (Unicode 14, section 3.12, "Conjoining Jamo Behavior").
constexpr uint32_t kHangulSBase = 0xAC00, kHangulLBase = 0x1100, kHangulVBase = 0x1161,
                   kHangulTBase = 0x11A7;
constexpr uint32_t kHangulLCount = 19, kHangulVCount = 21, kHangulTCount = 28;
constexpr uint32_t kHangulNCount = kHangulVCount * kHangulTCount;  // 588
constexpr uint32_t kHangulSCount = kHangulLCount * kHangulNCount;  // 11172

// `code` at most kLastCodePoint.
constexpr const CodepointRecord& record_in_table(uint32_t code) {
  constexpr uint32_t kMask = (1u << kRecordShift) - 1;
  const uint32_t block = kRecordPage[code >> kRecordShift];
  return kRecords[kRecordBlock[(block << kRecordShift) | (code & kMask)]];
}

const CodepointRecord& record_of(uint32_t code) {
  return code <= kLastCodePoint ? record_in_table(code) : kBeyondUnicodeRecord;
}

struct AsciiFlagTable {
  uint16_t flags[128];
};

constexpr AsciiFlagTable make_ascii_flag_table() {
  AsciiFlagTable table{};
  for (uint32_t code = 0; code < 128; ++code) table.flags[code] = record_in_table(code).flags;
  return table;
}

constexpr AsciiFlagTable kAsciiFlags = make_ascii_flag_table();

// Bytes of the character at bytes[i] of well-formed UTF-8, its code point in `code`. Validity is
// the caller's contract; the length check keeps a broken promise from reading past the end.
inline size_t decode_trusted(const unsigned char* bytes, size_t size, size_t i, uint32_t& code) {
  const uint32_t lead = bytes[i];
  if (lead < 0x80) {
    code = lead;
    return 1;
  }
  const size_t length = lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4;
  ED_CHECK(i + length <= size, "normalization input is not well-formed UTF-8: a ", length,
           "-byte character at offset ", i, " runs past the end (", size, " bytes)");
  if (length == 2) {
    code = (lead & 0x1F) << 6 | (bytes[i + 1] & 0x3Fu);
  } else if (length == 3) {
    code = (lead & 0x0F) << 12 | (bytes[i + 1] & 0x3Fu) << 6 | (bytes[i + 2] & 0x3Fu);
  } else {
    code = (lead & 0x07) << 18 | (bytes[i + 1] & 0x3Fu) << 12 | (bytes[i + 2] & 0x3Fu) << 6 |
           (bytes[i + 3] & 0x3Fu);
  }
  return length;
}

inline bool is_ascii_word(const unsigned char* bytes) {
  uint64_t word = 0;
  std::memcpy(&word, bytes, sizeof(word));
  return (word & 0x8080808080808080ull) == 0;
}

// The offset of the first character at or after `from` that fails the quick check of UAX #15
// section 9 (a quick-check value other than "Yes", or a mark out of canonical order), or
// text.size() when none does. `boundary` receives the offset of the last character before it with
// ccc 0 and "Yes" (or `from`): normalization may start over there, as nothing before such a
// character reorders or composes with it or with what follows.
size_t find_quick_check_failure(std::string_view text, size_t from, uint8_t not_yes,
                                size_t& boundary) {
  const auto* bytes = reinterpret_cast<const unsigned char*>(text.data());
  const size_t size = text.size();
  boundary = from;
  uint8_t last_class = 0;
  size_t i = from;
  while (i < size) {
    if (bytes[i] < 0x80) {  // ASCII is "Yes" with ccc 0 in every form
      size_t end = i + 1;
      while (end + 8 <= size && is_ascii_word(bytes + end)) end += 8;
      while (end < size && bytes[end] < 0x80) ++end;
      boundary = end - 1;
      last_class = 0;
      i = end;
      continue;
    }
    uint32_t code = 0;
    const size_t length = decode_trusted(bytes, size, i, code);
    const CodepointRecord& record = record_of(code);
    const uint8_t combining_class = record.combining_class;
    if ((record.quick_check & not_yes) != 0 ||
        (combining_class != 0 && combining_class < last_class)) {
      return i;
    }
    if (combining_class == 0) boundary = i;
    last_class = combining_class;
    i += length;
  }
  return size;
}

// The offset of the first character at or after `from` with ccc 0 and quick-check "Yes", or
// text.size().
size_t find_next_boundary(std::string_view text, size_t from, uint8_t not_yes) {
  const auto* bytes = reinterpret_cast<const unsigned char*>(text.data());
  const size_t size = text.size();
  for (size_t i = from; i < size;) {
    if (bytes[i] < 0x80) return i;
    uint32_t code = 0;
    const size_t length = decode_trusted(bytes, size, i, code);
    const CodepointRecord& record = record_of(code);
    if (record.combining_class == 0 && (record.quick_check & not_yes) == 0) return i;
    i += length;
  }
  return size;
}

struct DecomposedChar {
  uint32_t code;
  uint8_t combining_class;
  bool composes_with_preceding;  // NFC_Quick_Check "Maybe"
};

// Every decomposed character is its own NFD and NFKD, so its NFC "Maybe" bit says whether it is
// the second character of a primary composite, in either form.
void append_decomposed(uint32_t code, std::vector<DecomposedChar>& chars) {
  const CodepointRecord& record = record_of(code);
  chars.push_back({code, record.combining_class, (record.quick_check & kNfcMaybe) != 0});
}

// UTF-16 code units in kDecompositionPool.
struct PoolSpan {
  const uint16_t* units;
  uint32_t count;
};

// The offset of `code`'s entry in kDecompositionPool, 0 when it has none.
uint32_t pool_offset(uint32_t code) {
  if (code >= kDecompositionLimit) return 0;
  constexpr uint32_t kMask = (1u << kDecompositionShift) - 1;
  const uint32_t block = kDecompositionPage[code >> kDecompositionShift];
  return kDecompositionBlock[(block << kDecompositionShift) | (code & kMask)];
}

// A pool entry is a header unit (canonical length | compatibility length << 8 | separate << 15,
// in code units), the canonical decomposition, then the compatibility one when it differs
// ("separate"; scripts/make_unicode_tables.py). Each is the full decomposition (UAX #15 section
// 1.3; D68 and D65 of Unicode ch. 3), count 0 where the character decomposes to itself.
PoolSpan canonical_decomposition(uint32_t code) {
  const uint32_t offset = pool_offset(code);
  if (offset == 0) return {nullptr, 0};
  return {kDecompositionPool + offset + 1, kDecompositionPool[offset] & 0xFFu};
}

PoolSpan compatibility_decomposition(uint32_t code) {
  const uint32_t offset = pool_offset(code);
  if (offset == 0) return {nullptr, 0};
  const uint32_t header = kDecompositionPool[offset];
  const bool separate = (header >> 15) != 0;
  return {kDecompositionPool + offset + 1 + (separate ? header & 0xFFu : 0), (header >> 8) & 0x7Fu};
}

// Unicode 14 section 3.12, "Hangul Syllable Decomposition".
void append_hangul_decomposition(uint32_t syllable, std::vector<DecomposedChar>& chars) {
  const uint32_t index = syllable - kHangulSBase;
  append_decomposed(kHangulLBase + index / kHangulNCount, chars);
  append_decomposed(kHangulVBase + (index % kHangulNCount) / kHangulTCount, chars);
  if (index % kHangulTCount != 0) append_decomposed(kHangulTBase + index % kHangulTCount, chars);
}

void append_pool_span(PoolSpan span, std::vector<DecomposedChar>& chars) {
  for (uint32_t k = 0; k < span.count; ++k) {
    uint32_t code = span.units[k];
    if (code - 0xD800 < 0x400) {  // a high surrogate: the low one follows
      code = 0x10000 + ((code - 0xD800) << 10) + (span.units[++k] - 0xDC00);
    }
    append_decomposed(code, chars);
  }
}

// Canonical Ordering Algorithm (Unicode 14, section 3.11, D109): each run of characters with
// nonzero ccc sorted stably by ccc.
void put_in_canonical_order(std::vector<DecomposedChar>& chars) {
  const auto by_class = [](const DecomposedChar& a, const DecomposedChar& b) {
    return a.combining_class < b.combining_class;
  };
  // Runs longer than this (text stacked with marks) are sorted in O(n log n); real runs are short.
  constexpr size_t kInsertionSortRun = 16;
  const size_t count = chars.size();
  for (size_t start = 0; start < count;) {
    if (chars[start].combining_class == 0) {
      ++start;
      continue;
    }
    size_t end = start + 1;
    while (end < count && chars[end].combining_class != 0) ++end;
    if (end - start > kInsertionSortRun) {
      std::stable_sort(chars.begin() + start, chars.begin() + end, by_class);
    } else {
      for (size_t i = start + 1; i < end; ++i) {
        const DecomposedChar moving = chars[i];
        size_t j = i;
        for (; j > start && by_class(moving, chars[j - 1]); --j) chars[j] = chars[j - 1];
        chars[j] = moving;
      }
    }
    start = end;
  }
}

// The primary composite of `first` and `second`, or 0 when there is none.
uint32_t primary_composite(uint32_t first, uint32_t second) {
  // Hangul LV and LVT syllables (Unicode 14 section 3.12, "Hangul Syllable Composition").
  if (first - kHangulLBase < kHangulLCount && second - kHangulVBase < kHangulVCount) {
    return kHangulSBase +
           ((first - kHangulLBase) * kHangulVCount + (second - kHangulVBase)) * kHangulTCount;
  }
  if (first - kHangulSBase < kHangulSCount && (first - kHangulSBase) % kHangulTCount == 0 &&
      second - kHangulTBase - 1 < kHangulTCount - 1) {
    return first + (second - kHangulTBase);
  }
  const CompositionPair* end = kCompositions + sizeof(kCompositions) / sizeof(kCompositions[0]);
  const CompositionPair* found =
      std::lower_bound(kCompositions, end, CompositionPair{first, second, 0},
                       [](const CompositionPair& a, const CompositionPair& b) {
                         return a.first != b.first ? a.first < b.first : a.second < b.second;
                       });
  return found != end && found->first == first && found->second == second ? found->composite : 0;
}

// Canonical Composition Algorithm (Unicode 14, section 3.11, D117), in place: each character not
// blocked from the last starter (D115: no character between them has ccc 0 or a ccc at least its
// own) and forming a primary composite with it replaces that starter.
void compose(std::vector<DecomposedChar>& chars) {
  if (chars.empty()) return;
  size_t starter = 0;
  // The ccc of the last character kept after the starter; 0 when the starter is the last one
  // kept, 256 while no starter has been seen (everything is blocked).
  int last_class = chars[0].combining_class == 0 ? 0 : 256;
  size_t kept = 1;
  for (size_t i = 1; i < chars.size(); ++i) {
    const DecomposedChar c = chars[i];
    if (c.composes_with_preceding && (last_class == 0 || last_class < c.combining_class)) {
      const uint32_t composite = primary_composite(chars[starter].code, c.code);
      if (composite != 0) {
        chars[starter].code = composite;
        continue;
      }
    }
    if (c.combining_class == 0) starter = kept;
    last_class = c.combining_class;
    chars[kept++] = c;
  }
  chars.resize(kept);
}

// What a normalization form does (UAX #15 section 1.2): which decomposition, whether it composes
// afterwards, and which quick-check bits mean "not known to be in the form".
struct FormTraits {
  PoolSpan (*decomposition)(uint32_t code);
  bool compose;
  uint8_t not_yes;
};

FormTraits traits_of(NormalizationForm form) {
  switch (form) {
    case NormalizationForm::nfc:
      return {canonical_decomposition, true, kNfcNo | kNfcMaybe};
    case NormalizationForm::nfd:
      return {canonical_decomposition, false, kNfdNo};
    case NormalizationForm::nfkc:
      return {compatibility_decomposition, true, kNfkcNo | kNfkcMaybe};
    case NormalizationForm::nfkd:
      return {compatibility_decomposition, false, kNfkdNo};
  }
  ED_CHECK(false, "unknown normalization form ", static_cast<int>(form));
  return {};
}

// Appends the normalization of `text` (whole characters) to `out`; `chars` is scratch space.
void normalize_span(std::string_view text, FormTraits traits, std::vector<DecomposedChar>& chars,
                    std::string& out) {
  chars.clear();
  const auto* bytes = reinterpret_cast<const unsigned char*>(text.data());
  for (size_t i = 0; i < text.size();) {
    uint32_t code = 0;
    i += decode_trusted(bytes, text.size(), i, code);
    if (code - kHangulSBase < kHangulSCount) {
      append_hangul_decomposition(code, chars);
      continue;
    }
    const PoolSpan decomposition = traits.decomposition(code);
    if (decomposition.count != 0) {
      append_pool_span(decomposition, chars);
    } else {
      append_decomposed(code, chars);
    }
  }
  put_in_canonical_order(chars);
  if (traits.compose) compose(chars);
  for (const DecomposedChar& c : chars) utf8_append(out, c.code);
}

// Copies what passes the quick check and rebuilds only the spans from the boundary before each
// failing character to the next boundary after it.
std::string normalize_with_quick_check(std::string_view text, FormTraits traits) {
  size_t boundary = 0;
  size_t failure = find_quick_check_failure(text, 0, traits.not_yes, boundary);
  if (failure == text.size()) return std::string(text);
  std::string out;
  out.reserve(text.size() + text.size() / 4);
  std::vector<DecomposedChar> chars;
  chars.reserve(64);
  const auto* bytes = reinterpret_cast<const unsigned char*>(text.data());
  size_t copied = 0;
  while (failure < text.size()) {
    out.append(text, copied, boundary - copied);
    uint32_t code = 0;
    const size_t after_failure = failure + decode_trusted(bytes, text.size(), failure, code);
    const size_t span_end = find_next_boundary(text, after_failure, traits.not_yes);
    normalize_span(text.substr(boundary, span_end - boundary), traits, chars, out);
    copied = span_end;
    failure = find_quick_check_failure(text, span_end, traits.not_yes, boundary);
  }
  out.append(text, copied, text.size() - copied);
  return out;
}

}  // namespace

const char* unicode_version() {
  return kUnicodeVersion;
}

uint16_t codepoint_flags(uint32_t code) {
  return code < 128 ? kAsciiFlags.flags[code] : record_of(code).flags;
}

uint8_t canonical_combining_class(uint32_t code) {
  return record_of(code).combining_class;
}

std::string normalize_nfc(std::string_view text) {
  return normalize_with_quick_check(text, traits_of(NormalizationForm::nfc));
}

std::string normalize_nfd(std::string_view text) {
  return normalize_with_quick_check(text, traits_of(NormalizationForm::nfd));
}

std::string normalize_nfkc(std::string_view text) {
  return normalize_with_quick_check(text, traits_of(NormalizationForm::nfkc));
}

std::string normalize_nfkd(std::string_view text) {
  return normalize_with_quick_check(text, traits_of(NormalizationForm::nfkd));
}

std::string normalize_without_quick_check(std::string_view text, NormalizationForm form) {
  std::string out;
  out.reserve(text.size() + text.size() / 4);
  std::vector<DecomposedChar> chars;
  normalize_span(text, traits_of(form), chars, out);
  return out;
}

}  // namespace edgedistill::tok
