#include "tokenizer/spm_normalizer.h"

#include <cstring>

#include "core/error.h"
#include "tokenizer/utf8.h"

namespace edgedistill::tok {
namespace {

constexpr std::string_view kSpaceMarker = "\xE2\x96\x81";  // U+2581, SentencePiece's space
constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// darts-clone's unit fields (see the header).
constexpr uint32_t kLeafBit = 1u << 31;
constexpr uint32_t kHasLeafBit = 1u << 8;
constexpr uint32_t kBlockUnits = 256;  // darts-clone allocates units in blocks of 256

uint32_t unit_label(uint32_t unit) {
  return unit & (kLeafBit | 0xFF);  // a leaf never matches a byte
}
uint32_t unit_offset(uint32_t unit) {
  return (unit >> 10) << ((unit & (1u << 9)) >> 6);
}
uint32_t unit_value(uint32_t unit) {
  return unit & ~kLeafBit;
}

[[noreturn]] void fail_charsmap(const std::string& origin, const std::string& what) {
  throw FileError(str("the precompiled_charsmap (normalization rules) of ", origin,
                      " is damaged: ", what,
                      "; the model file is corrupt or truncated: take it again from where it was "
                      "trained or downloaded"));
}

}  // namespace

PrecompiledCharsmap::PrecompiledCharsmap(std::string_view blob, const std::string& origin) {
  if (blob.size() <= 4) fail_charsmap(origin, str("it has ", blob.size(), " bytes"));
  uint32_t trie_bytes = 0;
  std::memcpy(&trie_bytes, blob.data(), 4);  // little-endian, as is this host
  if (trie_bytes == 0 || trie_bytes % 4 != 0 || trie_bytes > blob.size() - 4) {
    fail_charsmap(origin, str("its trie size is ", trie_bytes,
                              " bytes, expected a positive "
                              "multiple of 4 within the ",
                              blob.size() - 4, " bytes that follow"));
  }
  const size_t unit_count = trie_bytes / 4;
  if (unit_count % kBlockUnits != 0) {
    fail_charsmap(origin,
                  str("its trie has ", unit_count, " units, not whole blocks of ", kBlockUnits));
  }
  units_.resize(unit_count);
  std::memcpy(units_.data(), blob.data() + 4, trie_bytes);
  strings_ = std::string(blob.substr(4 + trie_bytes));
  if (!strings_.empty() && strings_.back() != '\0') {
    fail_charsmap(origin, "its replacement strings do not end with NUL");
  }
  // Every unit a search can reach as a node is a non-leaf unit, and a search touches only the
  // 256-unit block at index ^ offset and, for a key end, the leaf there; so checking those of
  // every non-leaf unit (and of the root, whatever it holds) makes every look-up in bounds.
  for (size_t index = 0; index < unit_count; ++index) {
    const uint32_t unit = units_[index];
    if (index != 0 && (unit & kLeafBit) != 0) continue;
    const size_t children = index ^ unit_offset(unit);
    if (children >= unit_count) {
      fail_charsmap(origin, str("unit ", index, " points at unit ", children, " of ", unit_count));
    }
    if ((unit & kHasLeafBit) != 0 && unit_value(units_[children]) >= strings_.size()) {
      fail_charsmap(origin, str("unit ", index, " names replacement string offset ",
                                unit_value(units_[children]), " of ", strings_.size()));
    }
  }
}

size_t PrecompiledCharsmap::longest_match(std::string_view text,
                                          std::string_view& replacement) const {
  size_t position = unit_offset(units_[0]);
  size_t longest = 0;
  uint32_t longest_value = 0;
  int matches = 0;
  for (size_t i = 0; i < text.size() && matches < kMaxMatches; ++i) {
    const auto byte = static_cast<uint8_t>(text[i]);
    position ^= byte;
    const uint32_t unit = units_[position];
    if (unit_label(unit) != byte) break;
    position ^= unit_offset(unit);
    if ((unit & kHasLeafBit) != 0) {
      longest = i + 1;
      longest_value = unit_value(units_[position]);
      ++matches;
    }
  }
  if (longest > 0) replacement = std::string_view(strings_.data() + longest_value);
  return longest;
}

bool PrecompiledCharsmap::has_key_starting_with(uint8_t byte) const {
  const size_t position = unit_offset(units_[0]) ^ byte;
  return unit_label(units_[position]) == byte;
}

SpmNormalizer::SpmNormalizer(const SentencePieceNormalizerSpec& spec,
                             bool treat_whitespace_as_suffix, const std::string& origin)
    : spec_{spec.name, "", spec.add_dummy_prefix, spec.remove_extra_whitespaces,
            spec.escape_whitespaces},
      treat_whitespace_as_suffix_(treat_whitespace_as_suffix) {
  // SentencePiece applies the charsmap whenever it is not empty, whatever the rule's name says
  // (normalizer.cc, Init); "identity" models carry none.
  if (!spec.precompiled_charsmap.empty()) {
    charsmap_ = PrecompiledCharsmap(spec.precompiled_charsmap, origin);
  }
  find_plain_ascii();
}

void SpmNormalizer::find_plain_ascii() {
  for (int byte = 0; byte < 256; ++byte) {
    const auto b = static_cast<uint8_t>(byte);
    plain_ascii_[byte] = byte < 0x80 &&
                         (charsmap_.empty() || !charsmap_.has_key_starting_with(b)) &&
                         user_defined_.child(PieceTrie::kRoot, b) == PieceTrie::kNoNode;
  }
}

void SpmNormalizer::set_user_defined_pieces(const std::vector<std::string_view>& pieces) {
  user_defined_ = PieceTrie();
  for (size_t i = 0; i < pieces.size(); ++i) {
    if (!pieces[i].empty()) user_defined_.insert(pieces[i], static_cast<int32_t>(i));
  }
  find_plain_ascii();
}

size_t SpmNormalizer::normalize_prefix(std::string_view text, std::string_view& replacement) const {
  if (!user_defined_.empty()) {
    size_t longest = 0;
    uint32_t node = PieceTrie::kRoot;
    for (size_t i = 0; i < text.size(); ++i) {
      node = user_defined_.child(node, static_cast<uint8_t>(text[i]));
      if (node == PieceTrie::kNoNode) break;
      if (user_defined_.value(node) >= 0) longest = i + 1;
    }
    if (longest > 0) {
      replacement = text.substr(0, longest);
      return longest;
    }
  }
  if (!charsmap_.empty()) {
    const size_t length = charsmap_.longest_match(text, replacement);
    if (length > 0) return length;
  }
  uint32_t code = 0;
  const size_t length = utf8_decode(text, 0, code);
  if (length == 0) {
    // One malformed byte becomes U+FFFD and the next byte starts afresh (normalizer.cc,
    // NormalizePrefix), so "\xE2\x82" is two U+FFFD, not one as in Unicode's maximal subparts.
    replacement = kReplacement;
    return 1;
  }
  replacement = text.substr(0, length);
  return length;
}

std::string SpmNormalizer::normalize(std::string_view text) const {
  std::string out;
  normalize(text, out);
  return out;
}

void SpmNormalizer::normalize(std::string_view text, std::string& out) const {
  out.clear();
  const bool remove_extra = spec_.remove_extra_whitespaces;
  const std::string_view space = spec_.escape_whitespaces ? kSpaceMarker : std::string_view(" ");
  std::string_view replacement;
  size_t position = 0;
  if (remove_extra) {
    while (position < text.size()) {
      const size_t length = normalize_prefix(text.substr(position), replacement);
      if (replacement != " ") break;
      position += length;
    }
  }
  if (position == text.size()) return;

  out.reserve((text.size() - position) * 3 + space.size());
  const bool dummy_space = spec_.add_dummy_prefix;
  if (dummy_space && !treat_whitespace_as_suffix_) out += space;
  bool after_space = remove_extra;  // drop the leading spaces of the next replacement
  while (position < text.size()) {
    const auto byte = static_cast<uint8_t>(text[position]);
    if (plain_ascii_[byte]) {
      // The general step below for a one-byte prefix that is its own replacement.
      ++position;
      if (byte == ' ') {
        if (after_space) continue;
        out += space;
        after_space = remove_extra;
      } else {
        out.push_back(static_cast<char>(byte));
        after_space = false;
      }
      continue;
    }
    position += normalize_prefix(text.substr(position), replacement);
    if (after_space) {
      while (!replacement.empty() && replacement.front() == ' ') replacement.remove_prefix(1);
    }
    if (!replacement.empty()) {
      if (spec_.escape_whitespaces) {
        for (const char c : replacement) {
          if (c == ' ') {
            out += kSpaceMarker;
          } else {
            out.push_back(c);
          }
        }
      } else {
        out += replacement;
      }
      after_space = remove_extra && replacement.back() == ' ';
    } else if (!remove_extra) {
      after_space = false;
    }
  }
  if (remove_extra) {
    while (out.size() >= space.size() &&
           out.compare(out.size() - space.size(), space.size(), space) == 0) {
      out.resize(out.size() - space.size());
    }
  }
  if (dummy_space && treat_whitespace_as_suffix_) out += space;
}

}  // namespace edgedistill::tok
