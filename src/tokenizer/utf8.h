// UTF-8 decoding and encoding (RFC 3629): the well-formed sequences only, no overlongs, no
// surrogates, nothing past U+10FFFF.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace edgedistill::tok {

inline constexpr uint32_t kReplacementCharacter = 0xFFFD;

// Bytes of the well-formed UTF-8 character at text[i] (i < text.size()), its code point in
// `code`; 0 when the bytes there are not a well-formed character (`code` is then untouched).
size_t utf8_decode(std::string_view text, size_t i, uint32_t& code);

// Appends the UTF-8 bytes of `code` (at most U+10FFFF, not a surrogate).
void utf8_append(std::string& out, uint32_t code);

// True when `text` is well-formed UTF-8; `error_offset`, when given, receives the offset of the
// first byte that does not start a well-formed character.
bool is_valid_utf8(std::string_view text, size_t* error_offset = nullptr);

// The "maximal subpart" replacement of ill-formed sequences by U+FFFD (Unicode 15, section 3.9,
// "U+FFFD Substitution of Maximal Subparts"), which is what Python's
// bytes.decode("utf-8", "replace") and the WHATWG decoder do: each maximal prefix of a
// well-formed sequence, or each lone byte that starts none, becomes one U+FFFD.
std::string utf8_replace_invalid(std::string_view text);

}  // namespace edgedistill::tok
