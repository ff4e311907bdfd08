// Unicode character classes, canonical combining classes and the four normalization forms, against
// Python's unicodedata (tests/python/unicode_reference.py) for every code point and ~76k strings.
#include <catch2/catch.hpp>

#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include "python_reference.h"
#include "tokenizer/unicode.h"
#include "tokenizer/utf8.h"

using namespace edgedistill;

namespace {

// Seeds the reference's random strings; any value works, this one is fixed so failures repeat.
constexpr int kNormalizationSeed = 20240611;
// Mismatches printed in full before the count is checked.
constexpr int kMismatchesShown = 10;

std::string hex_of(const std::string& bytes) {
  std::string hex;
  for (const char c : bytes) {
    char digits[3];
    std::snprintf(digits, sizeof(digits), "%02x", static_cast<uint8_t>(c));
    hex += digits;
  }
  return hex.empty() ? "-" : hex;
}

std::string bytes_of_hex(const std::string& hex) {
  std::string bytes;
  if (hex == "-") return bytes;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    bytes.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  }
  return bytes;
}

struct NormalizationCase {
  std::string input, nfc, nfd, nfkc, nfkd;
};

// The reference's strings and their unicodedata.normalize results, parsed once for the test cases.
const std::vector<NormalizationCase>& normalization_cases() {
  static const std::vector<NormalizationCase> cases = [] {
    std::istringstream lines(test::run_python(
        "unicode_reference.py", {"normalization", std::to_string(kNormalizationSeed)}));
    std::vector<NormalizationCase> parsed;
    std::string input, nfc, nfd, nfkc, nfkd;
    while (lines >> input >> nfc >> nfd >> nfkc >> nfkd) {
      parsed.push_back({bytes_of_hex(input), bytes_of_hex(nfc), bytes_of_hex(nfd),
                        bytes_of_hex(nfkc), bytes_of_hex(nfkd)});
    }
    return parsed;
  }();
  return cases;
}

using Normalizer = std::string (*)(std::string_view);
using ExpectedOutput = std::string NormalizationCase::*;

// Counts the cases where `normalize(input)` differs from `expected`, showing the first few.
int count_mismatches(const char* what, Normalizer normalize, ExpectedOutput expected_output) {
  int mismatches = 0;
  for (const NormalizationCase& c : normalization_cases()) {
    const std::string& expected = c.*expected_output;
    const std::string got = normalize(c.input);
    if (got == expected) continue;
    if (++mismatches <= kMismatchesShown) {
      FAIL_CHECK(what << ": input " << hex_of(c.input) << "\n  expected " << hex_of(expected)
                      << "\n  got      " << hex_of(got));
    }
  }
  return mismatches;
}

std::string nfc_without_quick_check(std::string_view text) {
  return tok::normalize_without_quick_check(text, tok::NormalizationForm::nfc);
}
std::string nfd_without_quick_check(std::string_view text) {
  return tok::normalize_without_quick_check(text, tok::NormalizationForm::nfd);
}
std::string nfkc_without_quick_check(std::string_view text) {
  return tok::normalize_without_quick_check(text, tok::NormalizationForm::nfkc);
}
std::string nfkd_without_quick_check(std::string_view text) {
  return tok::normalize_without_quick_check(text, tok::NormalizationForm::nfkd);
}

struct FormUnderTest {
  const char* name;
  Normalizer fast, without_quick_check;
  ExpectedOutput expected;
};

const FormUnderTest kForms[] = {
    {"NFC", tok::normalize_nfc, nfc_without_quick_check, &NormalizationCase::nfc},
    {"NFD", tok::normalize_nfd, nfd_without_quick_check, &NormalizationCase::nfd},
    {"NFKC", tok::normalize_nfkc, nfkc_without_quick_check, &NormalizationCase::nfkc},
    {"NFKD", tok::normalize_nfkd, nfkd_without_quick_check, &NormalizationCase::nfkd},
};

}  // namespace

TEST_CASE("codepoint_flags and canonical_combining_class match unicodedata for every code point") {
  std::istringstream lines(test::run_python("unicode_reference.py", {"properties"}));
  std::string word, version;
  REQUIRE(lines >> word >> version);
  REQUIRE(word == "unicode");
  CHECK(version == tok::unicode_version());
  uint32_t next = 0;
  int flag_mismatches = 0, class_mismatches = 0;
  std::string start_hex, end_hex, flags_hex, class_hex;
  while (lines >> start_hex >> end_hex >> flags_hex >> class_hex) {
    const auto start = static_cast<uint32_t>(std::stoul(start_hex, nullptr, 16));
    const auto end = static_cast<uint32_t>(std::stoul(end_hex, nullptr, 16));
    const auto flags = static_cast<uint16_t>(std::stoul(flags_hex, nullptr, 16));
    const auto combining_class = static_cast<uint8_t>(std::stoul(class_hex, nullptr, 16));
    REQUIRE(start == next);  // the runs cover 0..0x10FFFF in order
    for (uint32_t code = start; code <= end; ++code) {
      if (tok::codepoint_flags(code) != flags && ++flag_mismatches <= kMismatchesShown) {
        FAIL_CHECK("U+" << std::hex << code << " flags: expected 0x" << flags << ", got 0x"
                        << tok::codepoint_flags(code));
      }
      if (tok::canonical_combining_class(code) != combining_class &&
          ++class_mismatches <= kMismatchesShown) {
        FAIL_CHECK("U+" << std::hex << code << " ccc: expected " << std::dec << int{combining_class}
                        << ", got " << int{tok::canonical_combining_class(code)});
      }
    }
    next = end + 1;
  }
  REQUIRE(next == 0x110000);
  CHECK(flag_mismatches == 0);
  CHECK(class_mismatches == 0);
}

TEST_CASE("values past U+10FFFF are kOther with ccc 0") {
  for (const uint32_t code : {0x110000u, 0x1FFFFFu, 0x7FFFFFFFu, 0xFFFFFFFFu}) {
    CHECK(tok::codepoint_flags(code) == tok::kOther);
    CHECK(tok::canonical_combining_class(code) == 0);
  }
}

TEST_CASE("the classification helpers read the flags") {
  CHECK(tok::is_letter('a'));
  CHECK(tok::is_lowercase_letter('a'));
  CHECK(tok::is_uppercase_letter(0x0416));  // CYRILLIC CAPITAL LETTER ZHE
  CHECK(tok::is_letter(0x4E00));            // Lo
  CHECK(tok::is_number('7'));
  CHECK(tok::is_number(0x2167));  // ROMAN NUMERAL EIGHT, Nl
  CHECK(tok::is_mark(0x0301));
  CHECK(tok::is_punctuation('!'));
  CHECK(tok::is_symbol('+'));
  CHECK(tok::is_symbol(0x1F600));
  CHECK(tok::is_separator(' '));
  CHECK(tok::is_other(0x200D));  // ZERO WIDTH JOINER, Cf
  CHECK(tok::is_whitespace('\n'));
  CHECK(tok::is_whitespace(0x3000));
  CHECK_FALSE(tok::is_whitespace(0x200B));  // ZERO WIDTH SPACE is Cf, not White_Space
  CHECK_FALSE(tok::is_separator('\t'));     // Cc, though White_Space
  CHECK_FALSE(tok::is_letter('1'));
}

TEST_CASE("normalization forms equal unicodedata.normalize") {
  REQUIRE(normalization_cases().size() > 70000);
  // The normalizers take well-formed UTF-8 by contract.
  int ill_formed_inputs = 0;
  for (const NormalizationCase& c : normalization_cases()) {
    ill_formed_inputs += tok::is_valid_utf8(c.input) ? 0 : 1;
  }
  REQUIRE(ill_formed_inputs == 0);
  for (const FormUnderTest& form : kForms) {
    SECTION(form.name) {
      CHECK(count_mismatches(form.name, form.fast, form.expected) == 0);
    }
  }
}

TEST_CASE("the scalar twin without quick check equals unicodedata.normalize") {
  for (const FormUnderTest& form : kForms) {
    SECTION(form.name) {
      CHECK(count_mismatches(form.name, form.without_quick_check, form.expected) == 0);
    }
  }
}

TEST_CASE("text already in the form comes back identical") {
  SECTION("each expected output, normalized again") {
    int mismatches = 0;
    for (const NormalizationCase& c : normalization_cases()) {
      for (const FormUnderTest& form : kForms) {
        const std::string& text = c.*form.expected;
        const std::string got = form.fast(text);
        if (got != text && ++mismatches <= kMismatchesShown) {
          FAIL_CHECK(form.name << " of its own output " << hex_of(text) << " gave " << hex_of(got));
        }
      }
    }
    CHECK(mismatches == 0);
  }
  SECTION("ASCII") {
    std::string ascii;
    for (int repeat = 0; repeat < 100; ++repeat) {
      for (int c = 0; c < 128; ++c) ascii.push_back(static_cast<char>(c));
    }
    // Every length and offset around the 8-byte ASCII scan.
    for (size_t start = 0; start < 9; ++start) {
      for (size_t length = 0; length < 40; ++length) {
        const std::string_view text = std::string_view(ascii).substr(start, length);
        CHECK(tok::normalize_nfc(text) == text);
        CHECK(tok::normalize_nfd(text) == text);
        CHECK(tok::normalize_nfkc(text) == text);
        CHECK(tok::normalize_nfkd(text) == text);
      }
    }
    CHECK(tok::normalize_nfc(ascii) == ascii);
    CHECK(tok::normalize_nfkd(ascii) == ascii);
  }
}

TEST_CASE("a decomposed mark after long ASCII runs is composed in place") {
  // Written from UAX #15 Figure 4 (e + U+0301 composes to U+00E9) with the ASCII scan's word
  // boundaries around it.
  for (size_t before = 0; before < 20; ++before) {
    const std::string prefix(before, 'x');
    CHECK(tok::normalize_nfc(prefix + "e\xCC\x81" + prefix) == prefix + "\xC3\xA9" + prefix);
    CHECK(tok::normalize_nfd(prefix + "\xC3\xA9" + prefix) == prefix + "e\xCC\x81" + prefix);
  }
}
