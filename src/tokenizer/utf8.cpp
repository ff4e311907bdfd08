#include "tokenizer/utf8.h"

namespace edgedistill::tok {
namespace {

// The range the second byte of a sequence with this lead byte must fall in (RFC 3629 section 4);
// {0, 0} when `lead` starts no multi-byte sequence.
struct SecondByteRange {
  uint8_t low, high;
  size_t length;
};

SecondByteRange second_byte_range(uint8_t lead) {
  if (lead >= 0xC2 && lead <= 0xDF) return {0x80, 0xBF, 2};
  if (lead == 0xE0) return {0xA0, 0xBF, 3};  // no overlongs
  if (lead == 0xED) return {0x80, 0x9F, 3};  // no UTF-16 surrogates
  if (lead >= 0xE1 && lead <= 0xEF) return {0x80, 0xBF, 3};
  if (lead == 0xF0) return {0x90, 0xBF, 4};  // no overlongs
  if (lead == 0xF4) return {0x80, 0x8F, 4};  // nothing past U+10FFFF
  if (lead >= 0xF1 && lead <= 0xF3) return {0x80, 0xBF, 4};
  return {0, 0, 0};
}

// Bytes of the longest prefix of a well-formed sequence at text[i] (at least 1), and whether it is
// a whole character.
size_t well_formed_prefix(std::string_view text, size_t i, bool& complete) {
  const auto lead = static_cast<uint8_t>(text[i]);
  complete = true;
  if (lead < 0x80) return 1;
  const SecondByteRange range = second_byte_range(lead);
  complete = false;
  if (range.length == 0) return 1;
  size_t n = 1;
  for (; n < range.length && i + n < text.size(); ++n) {
    const auto byte = static_cast<uint8_t>(text[i + n]);
    const uint8_t low = n == 1 ? range.low : 0x80, high = n == 1 ? range.high : 0xBF;
    if (byte < low || byte > high) return n;
  }
  complete = n == range.length;
  return n;
}

}  // namespace

size_t utf8_decode(std::string_view text, size_t i, uint32_t& code) {
  const auto lead = static_cast<uint8_t>(text[i]);
  if (lead < 0x80) {
    code = lead;
    return 1;
  }
  bool complete = false;
  const size_t n = well_formed_prefix(text, i, complete);
  if (!complete) return 0;
  uint32_t value = lead & (0xFFu >> (n + 1));
  for (size_t k = 1; k < n; ++k) value = (value << 6) | (static_cast<uint8_t>(text[i + k]) & 0x3Fu);
  code = value;
  return n;
}

void utf8_append(std::string& out, uint32_t code) {
  if (code < 0x80) {
    out.push_back(static_cast<char>(code));
  } else if (code < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (code >> 6)));
    out.push_back(static_cast<char>(0x80 | (code & 0x3F)));
  } else if (code < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (code >> 12)));
    out.push_back(static_cast<char>(0x80 | ((code >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (code & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (code >> 18)));
    out.push_back(static_cast<char>(0x80 | ((code >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((code >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (code & 0x3F)));
  }
}

bool is_valid_utf8(std::string_view text, size_t* error_offset) {
  for (size_t i = 0; i < text.size();) {
    uint32_t code = 0;
    const size_t n = utf8_decode(text, i, code);
    if (n == 0) {
      if (error_offset != nullptr) *error_offset = i;
      return false;
    }
    i += n;
  }
  return true;
}

std::string utf8_replace_invalid(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    bool complete = false;
    const size_t n = well_formed_prefix(text, i, complete);
    if (complete) {
      out.append(text.data() + i, n);
    } else {
      utf8_append(out, kReplacementCharacter);
    }
    i += n;
  }
  return out;
}

}  // namespace edgedistill::tok
