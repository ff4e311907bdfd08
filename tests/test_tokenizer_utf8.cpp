// UTF-8 decoding, validation and U+FFFD replacement, against Python's codec.
#include <catch2/catch.hpp>

#include <cstdio>
#include <string>
#include <vector>

#include "python_reference.h"
#include "tokenizer/utf8.h"

using namespace edgedistill;

TEST_CASE("utf8_decode reads well-formed characters and refuses the rest") {
  uint32_t code = 0;
  CHECK(tok::utf8_decode("A", 0, code) == 1);
  CHECK(code == 'A');
  CHECK(tok::utf8_decode("\xC3\xA9", 0, code) == 2);
  CHECK(code == 0xE9);
  CHECK(tok::utf8_decode("\xE2\x96\x81", 0, code) == 3);
  CHECK(code == 0x2581);
  CHECK(tok::utf8_decode("\xF0\x9F\x98\x80", 0, code) == 4);
  CHECK(code == 0x1F600);
  CHECK(tok::utf8_decode("\xC0\xAF", 0, code) == 0);          // overlong '/'
  CHECK(tok::utf8_decode("\xED\xA0\x80", 0, code) == 0);      // surrogate U+D800
  CHECK(tok::utf8_decode("\xF4\x90\x80\x80", 0, code) == 0);  // past U+10FFFF
  CHECK(tok::utf8_decode("\xE2\x96", 0, code) == 0);          // truncated
  CHECK(tok::utf8_decode("\x80", 0, code) == 0);              // stray continuation
  std::string encoded;
  for (const uint32_t c : {0x41u, 0xE9u, 0x2581u, 0x1F600u, 0x10FFFFu})
    tok::utf8_append(encoded, c);
  CHECK(encoded == "A\xC3\xA9\xE2\x96\x81\xF0\x9F\x98\x80\xF4\x8F\xBF\xBF");
}

TEST_CASE("utf8_replace_invalid replaces maximal subparts as Python's decoder does") {
  // Python: bytes.decode("utf-8", "replace") is the independent reference (Unicode's "maximal
  // subpart" practice).
  const std::vector<std::string> inputs = {
      "plain",
      "\xE2\x82",
      "\xE2\x82z",
      "\xF0\x9F\x98",
      "a\x80\x80"
      "b",
      "\xC0\xAF",
      "\xED\xA0\x80",
      "\xF4\x90\x80\x80",
      "\xFF\xFE",
      "ok\xC3",
      "\xE0\x80\x80",
      "\xF0\x9F\x98\x80\xF0\x9F",
      "\xC3\xA9\x80\xE2\x96\x81\xE2",
  };
  std::vector<std::string> hex_inputs;
  for (const auto& input : inputs) {
    std::string hex;
    for (const char c : input) {
      char digits[3];
      std::snprintf(digits, sizeof(digits), "%02x", static_cast<uint8_t>(c));
      hex += digits;
    }
    hex_inputs.push_back(hex.empty() ? "-" : hex);
  }
  const std::string expected = test::run_python("utf8_replace.py", hex_inputs);
  std::string got;
  for (const auto& input : inputs) {
    for (const char c : tok::utf8_replace_invalid(input)) {
      char digits[3];
      std::snprintf(digits, sizeof(digits), "%02x", static_cast<uint8_t>(c));
      got += digits;
    }
    got += "\n";
  }
  CHECK(got == expected);
}
