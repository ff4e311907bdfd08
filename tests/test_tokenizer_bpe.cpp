// Byte-level and character BPE from tokenizer.json and GGUF against tests/python/bpe_reference.py:
// tokenizer files written by Python and ids computed by Python's `regex` module on the files' own
// split expressions plus a slow obvious BPE (lowest-rank pair first). Also the pre-tokenizer
// splitters alone against `regex`, and bad files.
#include <catch2/catch.hpp>

#include <fstream>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/gguf.h"
#include "python_reference.h"
#include "test_util.h"
#include "tokenizer/bpe_model.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/utf8.h"
#include "tokenizer/vocab.h"

using namespace edgedistill;

namespace {

std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

std::string from_hex(const std::string& hex) {
  std::string bytes;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    bytes.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  }
  return bytes;
}

std::string to_hex(std::string_view bytes) {
  std::string hex;
  char digits[3];
  for (const char c : bytes) {
    std::snprintf(digits, sizeof(digits), "%02x", static_cast<uint8_t>(c));
    hex += digits;
  }
  return hex;
}

std::string show_ids(const std::vector<int32_t>& ids) {
  std::string out;
  for (const int32_t id : ids) out += std::to_string(id) + " ";
  return out;
}

// The Python reference's files and expectations, made once per test run.
struct Reference {
  test::TempDir dir;
  std::vector<std::string> texts;
  nlohmann::json expected;

  Reference() {
    test::run_python("bpe_reference.py", {dir.path().string()});
    for (const auto& hex : nlohmann::json::parse(read_text(dir.path() / "texts.json"))) {
      texts.push_back(from_hex(hex.get<std::string>()));
    }
    expected = nlohmann::json::parse(read_text(dir.path() / "expected.json"));
  }
  tok::Vocab hugging_face(const std::string& family) const {
    const auto path = dir.path() / (family + ".tokenizer.json");
    return tok::Vocab::from_hugging_face(read_text(path), "", path.string());
  }
  std::vector<int32_t> ids(const std::string& key, size_t text) const {
    return expected.at(key).at(text).get<std::vector<int32_t>>();
  }
};

const Reference& reference() {
  static const Reference made;
  return made;
}

void require_same_ids(const tok::Vocab& vocab, const std::string& key, bool parse_special) {
  const Reference& ref = reference();
  for (size_t i = 0; i < ref.texts.size(); ++i) {
    INFO(key << " text " << i << " (hex " << to_hex(ref.texts[i]) << "): '" << ref.texts[i] << "'");
    const auto expected = ref.ids(key, i);
    const auto got = vocab.encode(ref.texts[i], parse_special);
    INFO("expected " << show_ids(expected));
    INFO("got      " << show_ids(got));
    CHECK(got == expected);
  }
}

bool has_added_token(const std::string& text) {
  for (const char* token :
       {"<|endoftext|>", "<|begin_of_text|>", "<custom>", "<mask>", "<s>", "</s>", "<unk>"}) {
    if (text.find(token) != std::string::npos) return true;
  }
  return false;
}

}  // namespace

TEST_CASE("pre-tokenizer splits equal Python regex on the expressions themselves") {
  // tests/python/split_reference.py prints the words of each text under each expression.
  const std::vector<std::string> texts = {
      "Hello world! I'm here, it's 12345 items; they're 3.14 'S 'ſ' 'LL'Ve",
      "   lead  \t\ttabs\n\n\r\n  x\n \n",
      "a\u00a0b\u3000c\u2028d \u0085e",
      "ünïcödé ΑΒΓ абв 日本 한국 १२३ ٣٤ ²½ Ⅻ x²",
      "emoji😀x 👍🏽 (paren) [brack] {brace} \"quote\" --dash-- ...dots",
      "code: for(i=0;i<n;++i){a[i]+=b;}\n\tif (x) return;\n",
      "\r\r\nx\n\n y  \n\t z\t",
      " ",
      "",
      "1",
      "a",
      "'",
      "'s",
      "  ",
      "\n",
      "e\u0301\u0302 combining marks\u0301 \u0300x",
  };
  std::vector<std::string> hex;
  for (const auto& text : texts) hex.push_back(text.empty() ? "-" : to_hex(text));
  const auto expected = nlohmann::json::parse(test::run_python("split_reference.py", hex));
  const std::pair<const char*, tok::SplitPattern> patterns[] = {
      {"gpt2", tok::SplitPattern::gpt2},
      {"llama3", tok::SplitPattern::llama3},
      {"qwen2", tok::SplitPattern::qwen2}};
  for (const auto& [name, pattern] : patterns) {
    for (size_t i = 0; i < texts.size(); ++i) {
      std::vector<tok::TextSpan> spans;
      tok::split_words(pattern, texts[i], 0, spans);
      std::vector<std::string> words;
      for (const auto& span : spans)
        words.push_back(to_hex(texts[i].substr(span.begin, span.length)));
      INFO(name << " text " << i << ": '" << texts[i] << "'");
      CHECK(words == expected.at(name).at(i).get<std::vector<std::string>>());
    }
    // The expression as the files spell it maps back to the pattern.
    tok::SplitPattern found = tok::SplitPattern::gpt2;
    REQUIRE(tok::split_pattern_of_regex(tok::split_pattern_regex(pattern), found));
    CHECK(found == pattern);
  }
  for (size_t i = 0; i < texts.size(); ++i) {
    std::vector<tok::TextSpan> spans;
    tok::split_digits(texts[i], 0, true, spans);
    std::vector<std::string> words;
    for (const auto& span : spans)
      words.push_back(to_hex(texts[i].substr(span.begin, span.length)));
    INFO("digits text " << i);
    CHECK(words == expected.at("digits").at(i).get<std::vector<std::string>>());
  }
}

TEST_CASE("byte-level spelling is GPT-2's bytes_to_unicode and round-trips every byte") {
  // encoder.py: '!' .. '~', 0xA1 .. 0xAC, 0xAE .. 0xFF spell themselves; the 68 others map to
  // U+0100 onwards in byte order, so 0x00 -> U+0100, ' ' (0x20, the 33rd of them) -> U+0120 'Ġ',
  // '\n' (0x0A) -> U+010A 'Ċ', 0xAD -> U+0143 (the 68th, after 0x7F..0xA0).
  CHECK(tok::byte_level_char(0x00) == 0x100);
  CHECK(tok::byte_level_char(' ') == 0x120);
  CHECK(tok::byte_level_char('\n') == 0x10A);
  CHECK(tok::byte_level_char('A') == 'A');
  CHECK(tok::byte_level_char(0xAD) == 0x143);
  CHECK(tok::byte_level_char(0xFF) == 0xFF);
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  std::string back;
  REQUIRE(tok::byte_level_bytes(tok::byte_level_spelling(all), back));
  CHECK(back == all);
  CHECK_FALSE(tok::byte_level_bytes("\xE2\x96\x81", back));  // U+2581 is outside the alphabet
}

TEST_CASE("tokenizer.json BPE families encode as the Python reference") {
  for (const char* family : {"gpt2", "llama3", "qwen2", "smollm", "llama2"}) {
    SECTION(family) {
      const tok::Vocab vocab = reference().hugging_face(family);
      CHECK(vocab.source() == tok::VocabSource::hugging_face);
      require_same_ids(vocab, family, true);
      require_same_ids(vocab, std::string(family) + ":no-special", false);
    }
  }
}

TEST_CASE("tokenizer.json vocabularies decode their encodings back") {
  const Reference& ref = reference();
  for (const char* family : {"gpt2", "llama3", "smollm", "llama2", "qwen2"}) {
    const tok::Vocab vocab = ref.hugging_face(family);
    for (size_t i = 0; i < ref.texts.size(); ++i) {
      const std::string& text = ref.texts[i];
      if (has_added_token(text) || !tok::is_valid_utf8(text)) continue;
      INFO(family << " text " << i << ": '" << text << "'");
      const std::string decoded = vocab.decode(vocab.encode(text));
      if (std::string(family) == "qwen2") {
        CHECK(to_hex(decoded) == ref.expected.at("decoded:qwen2").at(i).get<std::string>());
      } else {
        CHECK(decoded == text);
      }
    }
  }
  // Special tokens: kept by default (Hugging Face's decode), dropped on request.
  const tok::Vocab llama3 = ref.hugging_face("llama3");
  const int32_t bos = llama3.bos_id();
  REQUIRE(bos >= 0);
  CHECK(llama3.token(bos).text == "<|begin_of_text|>");
  CHECK(llama3.add_bos());
  auto ids = llama3.encode("Hello world");
  ids.insert(ids.begin(), bos);
  CHECK(llama3.decode(ids) == "<|begin_of_text|>Hello world");
  CHECK(llama3.decode(ids, true) == "Hello world");
}

TEST_CASE("special ids come from the post-processor and the families' names") {
  const Reference& ref = reference();
  const tok::Vocab gpt2 = ref.hugging_face("gpt2");
  // No template and no tokenizer_config.json: the families' names decide, and nothing is added.
  CHECK_FALSE(gpt2.add_bos());
  REQUIRE(gpt2.eos_id() >= 0);
  CHECK(gpt2.token(gpt2.eos_id()).text == "<|endoftext|>");
  REQUIRE(gpt2.bos_id() >= 0);
  CHECK(gpt2.token(gpt2.bos_id()).text == "<|begin_of_text|>");
  CHECK(gpt2.token(gpt2.eos_id()).type == tok::TokenType::control);
  // tokenizer_config.json names them when it is there.
  const auto path = ref.dir.path() / "gpt2.tokenizer.json";
  const tok::Vocab configured = tok::Vocab::from_hugging_face(
      read_text(path), R"({"bos_token": "<|endoftext|>", "eos_token": {"content": "<custom>"}})",
      path.string());
  CHECK(configured.token(configured.bos_id()).text == "<|endoftext|>");
  CHECK(configured.token(configured.eos_id()).text == "<custom>");
  const tok::Vocab llama2 = ref.hugging_face("llama2");
  CHECK(llama2.bos_id() == 1);
  CHECK(llama2.eos_id() == 2);
  CHECK(llama2.unk_id() == 0);
  CHECK(llama2.add_bos());
  CHECK(llama2.token(3).type == tok::TokenType::byte);  // <0x00>
}

TEST_CASE("GGUF gpt2 vocabularies written by Python encode as llama.cpp reads them") {
  const Reference& ref = reference();
  for (const char* family : {"gpt2", "llama3", "smollm"}) {
    SECTION(family) {
      const io::GgufReader file(ref.dir.path() / (std::string(family) + ".gguf"));
      const tok::Vocab vocab = tok::Vocab::from_gguf(file);
      CHECK(vocab.algorithm() == "byte-level-bpe");
      require_same_ids(vocab, std::string(family) + ":gguf", true);
    }
  }
}

TEST_CASE("a tokenizer.json vocabulary written to GGUF reads back with the same ids") {
  const Reference& ref = reference();
  test::TempDir dir;
  for (const char* family : {"gpt2", "llama3", "smollm"}) {
    const tok::Vocab vocab = ref.hugging_face(family);
    REQUIRE(vocab.gguf_model() == "gpt2");
    io::GgufWriter writer;
    writer.set("general.architecture", io::GgufValue::string("llama"));
    vocab.write_gguf(writer);
    const auto path = dir.path() / (std::string(family) + ".ours.gguf");
    writer.write(path);
    const io::GgufReader ours(path);
    const io::GgufReader theirs(ref.dir.path() / (std::string(family) + ".gguf"));
    // Same tokens, types and merges as the independent writer's file.
    for (const char* key :
         {"tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.merges"}) {
      INFO(family << " " << key);
      REQUIRE(ours.find(key) != nullptr);
      CHECK(*ours.find(key) == *theirs.find(key));
    }
    const tok::Vocab back = tok::Vocab::from_gguf(ours);
    require_same_ids(back, std::string(family) + ":gguf", true);
  }
  // Qwen2's NFC normalizer and llama2's character BPE: qwen2 writes (llama.cpp skips NFC), llama2
  // cannot be written.
  CHECK(ref.hugging_face("qwen2").gguf_model() == "gpt2");
  std::string why;
  CHECK(ref.hugging_face("llama2").gguf_model(&why).empty());
  CHECK(why.find("tokenizer.model") != std::string::npos);
}

TEST_CASE("tokenizer.json features that are not implemented are refused by name") {
  const Reference& ref = reference();
  const std::string base = read_text(ref.dir.path() / "llama3.tokenizer.json");
  auto with = [&](const std::function<void(nlohmann::json&)>& change) {
    auto json = nlohmann::json::parse(base);
    change(json);
    return json.dump();
  };
  auto refused = [&](const std::string& text, const std::string& needle) {
    INFO("expecting a refusal naming " << needle);
    try {
      tok::Vocab::from_hugging_face(text, "", "changed.json");
      FAIL("accepted");
    } catch (const InputError& e) {  // FileError is one too
      CHECK_THAT(e.what(), Catch::Contains(needle) && Catch::Contains("changed.json"));
    }
  };
  refused(with([](auto& j) { j["normalizer"] = {{"type", "Lowercase"}}; }), "Lowercase");
  refused(with([](auto& j) { j["normalizer"] = {{"type", "BertNormalizer"}}; }), "BertNormalizer");
  refused(
      with([](auto& j) { j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "\\w+"; }),
      "\\w+");
  refused(with([](auto& j) { j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Removed"; }),
          "Removed");
  refused(with([](auto& j) { j["pre_tokenizer"] = {{"type", "Whitespace"}}; }), "Whitespace");
  refused(with([](auto& j) { j["model"]["type"] = "WordPiece"; }), "WordPiece");
  refused(with([](auto& j) { j["model"]["type"] = "Unigram"; }), "Unigram");
  refused(with([](auto& j) { j["model"]["dropout"] = 0.1; }), "dropout");
  refused(with([](auto& j) { j["decoder"] = {{"type", "WordPiece"}}; }), "WordPiece");
  refused(with([](auto& j) { j["post_processor"] = {{"type", "Mystery"}}; }), "Mystery");
  // Damaged files: a FileError naming the problem.
  refused(base.substr(0, base.size() / 2), "not JSON");
  refused(with([](auto& j) { j["model"]["merges"][3] = "only-one-token"; }), "merge 3");
  refused(with([](auto& j) { j["model"]["merges"][5] = "nope notthere"; }), "merge 5");
  refused(with([](auto& j) { j["model"]["vocab"].erase(j["model"]["vocab"].begin()); }), "id");
  // A huge id is refused before a vocabulary of that size is allocated.
  refused(with([](auto& j) { j["added_tokens"][0]["id"] = 2000000000; }), "without gaps");
}

TEST_CASE("BPE merges by rank, leftmost first on ties, with byte fallback and unk") {
  // A hand-made vocabulary whose merges make the order visible: "a a" ranks before "b a", so
  // "baaa" merges the first "aa" from the left (b, aa, a), then "b aa" -> "baa".
  const std::vector<std::pair<std::string, int32_t>> vocab = {
      {"a", 0}, {"b", 1}, {"aa", 2}, {"ba", 3}, {"baa", 4}, {"<0x63>", 5}, {"<unk>", 6}};
  tok::BpeOptions options;
  const tok::BpeModel plain(vocab, {{0, 0}, {1, 0}, {1, 2}}, options, "test");
  std::vector<int32_t> ids;
  plain.encode_word("baaa", ids);
  CHECK(ids == std::vector<int32_t>{4, 0});
  ids.clear();
  plain.encode_word("aaaa", ids);
  CHECK(ids == std::vector<int32_t>{2, 2});
  // 'c' is no token: dropped without unk, its byte token with byte fallback, unk otherwise.
  ids.clear();
  plain.encode_word("acb", ids);
  CHECK(ids == std::vector<int32_t>{0, 1});
  options.byte_fallback = true;
  const tok::BpeModel fallback(vocab, {{0, 0}}, options, "test");
  ids.clear();
  fallback.encode_word("acb", ids);
  CHECK(ids == std::vector<int32_t>{0, 5, 1});
  options.byte_fallback = false;
  options.unk_id = 6;
  options.fuse_unk = true;
  const tok::BpeModel unk(vocab, {}, options, "test");
  ids.clear();
  unk.encode_word(
      "a\xC3\xA9\xC3\xA9"
      "b",
      ids);  // two unknown characters fuse into one unk
  CHECK(ids == std::vector<int32_t>{0, 6, 1});
  // A merge into a token that is not in the vocabulary is refused.
  CHECK_THROWS_AS(tok::BpeModel(vocab, {{1, 1}}, tok::BpeOptions{}, "test"), InputError);
}
