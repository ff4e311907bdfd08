// The data layer without external data: config, byte tokenizer, GGUF vocabulary rules, token
// shards, the document split and corpus files.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <set>

#include "core/config.h"
#include "core/files.h"
#include "core/rng.h"
#include "core/sha256.h"
#include "data/byte_tokenizer.h"
#include "data/corpus.h"
#include "data/data_config.h"
#include "data/split.h"
#include "data/token_shard.h"
#include "data/tokenizer.h"
#include "test_util.h"

using namespace edgedistill;
namespace fs = std::filesystem;

namespace {

fs::path write_text(const fs::path& path, const std::string& text) {
  core::write_file_atomic(path, text);
  return path;
}

std::string read_bytes(const fs::path& path) {
  return core::read_file(path, "test file");
}

// Overwrites `bytes.size()` bytes of a file at `offset`.
void patch_file(const fs::path& path, size_t offset, const std::string& bytes) {
  std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
  REQUIRE(file);
  file.seekp(static_cast<std::streamoff>(offset));
  file.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string le_u32(uint32_t value) {
  std::string out(4, '\0');
  std::memcpy(out.data(), &value, 4);
  return out;
}

// A tokenizer over a fixed list of (piece, type), for the vocabulary rule checks.
class ListTokenizer final : public data::Tokenizer {
 public:
  explicit ListTokenizer(std::vector<std::pair<std::string, data::TokenType>> vocab)
      : vocab_(std::move(vocab)) {}
  std::vector<int32_t> encode(std::string_view) const override { return {}; }
  std::string decode(const std::vector<int32_t>&) const override { return ""; }
  int32_t vocab_size() const override { return static_cast<int32_t>(vocab_.size()); }
  std::string piece(int32_t id) const override { return vocab_.at(static_cast<size_t>(id)).first; }
  float score(int32_t) const override { return 0; }
  data::TokenType type(int32_t id) const override {
    return vocab_.at(static_cast<size_t>(id)).second;
  }
  std::string kind() const override { return "list"; }
  const std::string& hash() const override { return hash_; }
  nlohmann::ordered_json save_model_files(const fs::path&) const override { return {}; }

 private:
  std::vector<std::pair<std::string, data::TokenType>> vocab_;
  std::string hash_ = std::string(64, '0');
};

// A valid llama vocabulary: the byte tokenizer's 259 pieces plus a few SentencePiece-style ones.
std::vector<std::pair<std::string, data::TokenType>> valid_vocab() {
  const data::ByteTokenizer bytes;
  std::vector<std::pair<std::string, data::TokenType>> vocab;
  for (int32_t id = 0; id < bytes.vocab_size(); ++id)
    vocab.emplace_back(bytes.piece(id), bytes.type(id));
  for (const char* piece : {"\xE2\x96\x81the",
                            "\xE2\x96\x81"
                            "and",
                            "e", "\xE2\x96\x81"}) {
    vocab.emplace_back(piece, data::TokenType::normal);
  }
  return vocab;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Config

TEST_CASE("every shipped data config loads and validates") {
  std::set<std::string> names;
  for (const auto& entry : fs::directory_iterator(test::source_dir() / "configs" / "data")) {
    if (entry.path().extension() != ".json") continue;
    INFO(entry.path().string());
    const auto config = core::load_config<data::DataConfig>(entry.path(), {});
    names.insert(entry.path().filename().string());
    CHECK(config.name == entry.path().stem().string());
    CHECK(data::data_config_hash(config).size() == 64);
  }
  CHECK(names == std::set<std::string>{"fashion-mnist.json", "kjv-bytes.json", "kjv.json",
                                       "licenses.json", "wordnet.json"});
  const auto kjv =
      core::load_config<data::DataConfig>(test::source_dir() / "configs" / "data" / "kjv.json", {});
  CHECK(kjv.tokenizer.kind == "sentencepiece");
  CHECK(kjv.tokenizer.model_type == "bpe");
  CHECK(kjv.tokenizer.vocab_size == 4096);
  const auto wordnet = core::load_config<data::DataConfig>(
      test::source_dir() / "configs" / "data" / "wordnet.json", {});
  CHECK(wordnet.tokenizer.model_type == "unigram");
  CHECK(wordnet.sources.at(0).kind == "wordnet");
  const auto bytes = core::load_config<data::DataConfig>(
      test::source_dir() / "configs" / "data" / "kjv-bytes.json", {});
  CHECK(bytes.tokenizer.kind == "byte");
  const auto images = core::load_config<data::DataConfig>(
      test::source_dir() / "configs" / "data" / "fashion-mnist.json", {});
  CHECK(images.kind == "images");
  CHECK(images.images.valid_count == 5000);
}

TEST_CASE("a data config rejects unknown keys, bad types and bad values by key path") {
  test::TempDir dir;
  auto load = [&](const std::string& json) {
    return core::load_config<data::DataConfig>(write_text(dir.path() / "d.json", json), {});
  };
  CHECK_THROWS_AS(load(R"({"tokenizer": {"vocab_sise": 100}})"), ConfigError);
  CHECK_THROWS_WITH(load(R"({"tokenizer": {"vocab_sise": 100}})"),
                    Catch::Contains("tokenizer.vocab_sise") &&
                        Catch::Contains("did you mean 'tokenizer.vocab_size'"));
  CHECK_THROWS_WITH(load(R"({"split": {"valid": "some"}})"),
                    Catch::Contains("'split.valid' expects a number"));
  CHECK_THROWS_WITH(
      load(R"({"sources": [{"kind": "kjv", "verses_per_doc": "8"}]})"),
      Catch::Contains("sources[0].verses_per_doc") && Catch::Contains("expects an integer"));
  CHECK_THROWS_WITH(load(R"({"sources": [{"kind": "bible"}]})"),
                    Catch::Contains("must be one of 'kjv', 'wordnet', 'text_file'"));
  // Keys of another source kind are unknown for this one.
  CHECK_THROWS_WITH(load(R"({"sources": [{"kind": "kjv", "parts": ["noun"]}]})"),
                    Catch::Contains("unknown config key 'sources[0].parts'"));
  CHECK_THROWS_WITH(load(R"({"kind": "images", "tokenizer": {}})"),
                    Catch::Contains("unknown config key 'tokenizer'"));
  CHECK_THROWS_WITH(load(R"({"split": {"valid": 0.6, "test": 0.4}})"),
                    Catch::Contains("split: valid + test must be below 1"));
  CHECK_THROWS_WITH(load(R"({"split": {"test": -0.1}})"),
                    Catch::Contains("split.test: must be in [0, 1)"));
  CHECK_THROWS_WITH(load(R"({"tokenizer": {"vocab_size": 100}})"),
                    Catch::Contains("tokenizer.vocab_size: must be in 260..262144"));
  CHECK_THROWS_WITH(load(R"({"tokenizer": {"character_coverage": 0}})"),
                    Catch::Contains("tokenizer.character_coverage"));
  CHECK_THROWS_WITH(load(R"({"sources": [{"kind": "text_file"}]})"),
                    Catch::Contains("sources[0].path: a text_file source needs"));
  CHECK_THROWS_WITH(load(R"({"sources": [{"kind": "wordnet", "parts": ["nouns"]}]})"),
                    Catch::Contains("sources[0].parts: expects noun, verb, adj or adv"));
  CHECK_THROWS_WITH(load(R"({"sources": []})"),
                    Catch::Contains("sources: a text dataset needs at least one source"));
  CHECK_THROWS_WITH(load(R"({"name": "../x"})"), Catch::Contains("name: must hold only letters"));
  CHECK_THROWS_WITH(load(R"({"kind": "images", "images": {"valid_count": -1}})"),
                    Catch::Contains("images.valid_count"));
  // A text_file path is resolved against the config file's directory.
  const auto config = load(R"({"sources": [{"kind": "text_file", "path": "corpus.txt"}]})");
  CHECK(config.sources.at(0).path == dir.path() / "corpus.txt");
}

TEST_CASE("the data config hash follows the config and nothing else") {
  const data::DataConfig defaults;
  const std::string hash = data::data_config_hash(defaults);
  CHECK(hash == data::data_config_hash(data::DataConfig{}));
  CHECK(hash == data::data_config_hash(core::load_config<data::DataConfig>("", {})));
  CHECK(hash != data::data_config_hash(core::load_config<data::DataConfig>("", {"split.seed=7"})));
  CHECK(hash != data::data_config_hash(
                    core::load_config<data::DataConfig>("", {"tokenizer.vocab_size=512"})));
  CHECK(hash !=
        data::data_config_hash(core::load_config<data::DataConfig>("", {"max_documents=10"})));
  // The key listing covers the keys of every source kind.
  const auto keys = core::list_keys<data::DataConfig>();
  auto has_key = [&](const std::string& path) {
    return std::any_of(keys.begin(), keys.end(),
                       [&](const core::KeyDoc& key) { return key.path == path; });
  };
  CHECK(has_key("sources[].verses_per_doc"));
  CHECK(has_key("sources[].parts"));
  CHECK(has_key("sources[].unit"));
  CHECK(has_key("tokenizer.model_type"));
  CHECK(has_key("images.valid_count"));
}

// ---------------------------------------------------------------------------------------------
// Byte tokenizer

TEST_CASE("the byte tokenizer round-trips every byte value exactly") {
  const data::ByteTokenizer tokenizer;
  std::string all_bytes;
  for (int b = 0; b < 256; ++b) all_bytes.push_back(static_cast<char>(b));
  const auto ids = tokenizer.encode(all_bytes);
  REQUIRE(ids.size() == 256);
  for (int b = 0; b < 256; ++b) CHECK(ids[static_cast<size_t>(b)] == 3 + b);
  CHECK(tokenizer.decode(ids) == all_bytes);

  core::Rng rng(99);
  for (int trial = 0; trial < 200; ++trial) {
    std::string text(rng.below(300), '\0');
    for (auto& c : text) c = static_cast<char>(rng.below(256));
    REQUIRE(tokenizer.decode(tokenizer.encode(text)) == text);
    CHECK(tokenizer.encode(text).size() == text.size());
  }
  CHECK(tokenizer.encode("").empty());
  // <s> and </s> are skipped; <unk> shows as U+FFFD.
  CHECK(tokenizer.decode({1, 3 + 'h', 3 + 'i', 2}) == "hi");
  CHECK(tokenizer.decode({0}) == "\xEF\xBF\xBD");
  CHECK_THROWS_AS(tokenizer.decode({259}), InputError);
  CHECK_THROWS_WITH(tokenizer.decode({-1}), Catch::Contains("outside the byte tokenizer"));
}

TEST_CASE("the byte tokenizer's pieces and types follow the GGUF llama layout") {
  const data::ByteTokenizer tokenizer;
  CHECK(tokenizer.vocab_size() == 259);
  CHECK(tokenizer.kind() == "byte");
  CHECK(tokenizer.unk_id() == 0);
  CHECK(tokenizer.bos_id() == 1);
  CHECK(tokenizer.eos_id() == 2);
  CHECK(tokenizer.piece(0) == "<unk>");
  CHECK(tokenizer.piece(1) == "<s>");
  CHECK(tokenizer.piece(2) == "</s>");
  CHECK(tokenizer.type(0) == data::TokenType::unknown);
  CHECK(tokenizer.type(1) == data::TokenType::control);
  CHECK(tokenizer.type(2) == data::TokenType::control);
  CHECK(tokenizer.piece(3) == "<0x00>");
  CHECK(tokenizer.piece(3 + 0x0A) == "<0x0A>");
  CHECK(tokenizer.piece(3 + 0xAB) == "<0xAB>");
  CHECK(tokenizer.piece(258) == "<0xFF>");
  for (int32_t id = 3; id < 259; ++id) CHECK(tokenizer.type(id) == data::TokenType::byte);
  CHECK(static_cast<int>(data::TokenType::byte) == 6);  // GGUF numbering
  CHECK_NOTHROW(data::check_llama_vocab(tokenizer));
  // The hash is stable and survives a save/load round trip.
  CHECK(tokenizer.hash().size() == 64);
  CHECK(tokenizer.hash() == data::ByteTokenizer().hash());
  test::TempDir dir;
  data::save_tokenizer(tokenizer, dir.path() / "tok");
  const auto loaded = data::load_tokenizer(dir.path() / "tok");
  CHECK(loaded->kind() == "byte");
  CHECK(loaded->hash() == tokenizer.hash());
  const auto description = core::read_json_file(dir.path() / "tok" / "tokenizer.json", "test");
  CHECK(description["format"] == "edgedistill-tokenizer");
  CHECK(description["version"] == 1);
  CHECK(description["vocab_size"] == 259);
  CHECK(description["hash"] == tokenizer.hash());
}

TEST_CASE("load_tokenizer refuses missing, foreign, newer and tampered descriptions") {
  test::TempDir dir;
  const fs::path tok = dir.path() / "tok";
  CHECK_THROWS_WITH(data::load_tokenizer(tok),
                    Catch::Contains("does not exist") && Catch::Contains("edgedistill data"));
  data::save_tokenizer(data::ByteTokenizer(), tok);
  auto description = core::read_json_file(tok / "tokenizer.json", "test");
  auto rewrite = [&](const std::string& key, const nlohmann::json& value) {
    auto changed = description;
    changed[key] = value;
    core::write_json_atomic(tok / "tokenizer.json", changed);
  };
  rewrite("version", 2);
  CHECK_THROWS_WITH(data::load_tokenizer(tok),
                    Catch::Contains("version 2") && Catch::Contains("upgrade edgedistill"));
  rewrite("format", "something-else");
  CHECK_THROWS_WITH(data::load_tokenizer(tok), Catch::Contains("is not an edgedistill tokenizer"));
  rewrite("hash", std::string(64, 'a'));
  CHECK_THROWS_AS(data::load_tokenizer(tok), FileError);
  CHECK_THROWS_WITH(data::load_tokenizer(tok), Catch::Contains("differs from aaaa"));
  rewrite("kind", "wordpiece");
  CHECK_THROWS_WITH(data::load_tokenizer(tok), Catch::Contains("unknown kind 'wordpiece'"));
}

// ---------------------------------------------------------------------------------------------
// GGUF llama vocabulary rules

TEST_CASE("check_llama_vocab accepts a valid vocabulary and names each broken rule") {
  CHECK_NOTHROW(data::check_llama_vocab(ListTokenizer(valid_vocab())));
  const int32_t the_id = 259;  // "▁the" in valid_vocab()

  auto duplicate = valid_vocab();
  duplicate.emplace_back("\xE2\x96\x81the", data::TokenType::normal);
  CHECK_THROWS_AS(data::check_llama_vocab(ListTokenizer(duplicate)), InputError);
  CHECK_THROWS_WITH(data::check_llama_vocab(ListTokenizer(duplicate)),
                    Catch::Contains("pieces are unique (also id 259)") &&
                        Catch::Contains(str("id ", duplicate.size() - 1)));

  auto missing_byte = valid_vocab();
  missing_byte[3 + 0x41] = {"A", data::TokenType::normal};
  CHECK_THROWS_WITH(
      data::check_llama_vocab(ListTokenizer(missing_byte)),
      Catch::Contains("all 256 byte pieces are present") && Catch::Contains("<0x41> is missing"));

  auto lowercase = valid_vocab();
  lowercase[3 + 0xAB].first = "<0xab>";
  CHECK_THROWS_WITH(
      data::check_llama_vocab(ListTokenizer(lowercase)),
      Catch::Contains("uppercase hex") && Catch::Contains("id 174") && Catch::Contains("<0xab>"));

  auto space = valid_vocab();
  space[the_id].first = " the";
  CHECK_THROWS_WITH(data::check_llama_vocab(ListTokenizer(space)),
                    Catch::Contains("ASCII space") && Catch::Contains("id 259"));

  auto empty = valid_vocab();
  empty[the_id].first = "";
  CHECK_THROWS_WITH(data::check_llama_vocab(ListTokenizer(empty)),
                    Catch::Contains("pieces are non-empty"));

  auto bad_utf8 = valid_vocab();
  bad_utf8[the_id].first = "\xC3";
  CHECK_THROWS_WITH(data::check_llama_vocab(ListTokenizer(bad_utf8)),
                    Catch::Contains("valid UTF-8"));

  auto bos_normal = valid_vocab();
  bos_normal[1].second = data::TokenType::normal;
  CHECK_THROWS_WITH(data::check_llama_vocab(ListTokenizer(bos_normal)),
                    Catch::Contains("bos is id 1 with type control, found type normal"));

  auto byte_typed_normal = valid_vocab();
  byte_typed_normal[3 + 0x10].second = data::TokenType::normal;
  CHECK_THROWS_WITH(data::check_llama_vocab(ListTokenizer(byte_typed_normal)),
                    Catch::Contains("byte piece <0x10> has type byte"));
}

TEST_CASE("is_valid_utf8 follows RFC 3629") {
  CHECK(data::is_valid_utf8(""));
  CHECK(data::is_valid_utf8("plain ASCII"));
  CHECK(data::is_valid_utf8("\xC3\xA9"));          // é
  CHECK(data::is_valid_utf8("\xE2\x96\x81"));      // U+2581
  CHECK(data::is_valid_utf8("\xF0\x9F\x98\x80"));  // U+1F600
  size_t offset = 99;
  CHECK_FALSE(data::is_valid_utf8("ab\xC0\xAF", &offset));  // overlong '/'
  CHECK(offset == 2);
  CHECK_FALSE(data::is_valid_utf8("\xED\xA0\x80"));      // surrogate U+D800
  CHECK_FALSE(data::is_valid_utf8("\xF4\x90\x80\x80"));  // past U+10FFFF
  CHECK_FALSE(data::is_valid_utf8("\xE2\x96"));          // cut short
  CHECK_FALSE(data::is_valid_utf8("\x80"));              // stray continuation byte
}

// ---------------------------------------------------------------------------------------------
// Token shards

TEST_CASE("token shards round-trip uint16 and uint32 tokens") {
  test::TempDir dir;
  const std::string hash = core::sha256_hex("some tokenizer");
  struct Case {
    int32_t vocab;
    data::TokenDtype dtype;
    size_t bytes_per_token;
  };
  for (const Case& c :
       {Case{1000, data::TokenDtype::uint16, 2}, Case{65536, data::TokenDtype::uint16, 2},
        Case{70000, data::TokenDtype::uint32, 4}}) {
    INFO("vocab " << c.vocab);
    core::Rng rng(static_cast<uint64_t>(c.vocab));
    std::vector<int32_t> tokens(5003);
    for (auto& t : tokens) t = static_cast<int32_t>(rng.below(static_cast<uint64_t>(c.vocab)));
    tokens[0] = 0;
    tokens[1] = c.vocab - 1;
    const fs::path path = dir.path() / str("s", c.vocab, ".bin");
    data::write_token_shard(path, tokens, c.vocab, hash, {{"split", "train"}, {"documents", 3}});
    CHECK(fs::file_size(path) == 64 + tokens.size() * c.bytes_per_token);

    const data::TokenShard shard(path, hash);
    CHECK(shard.size() == static_cast<int64_t>(tokens.size()));
    CHECK(shard.vocab_size() == c.vocab);
    CHECK(shard.dtype() == c.dtype);
    CHECK(shard.tokenizer_hash() == hash);
    CHECK(shard.path() == path);
    for (size_t i = 0; i < tokens.size(); ++i)
      REQUIRE(shard.at(static_cast<int64_t>(i)) == tokens[i]);
    std::vector<int64_t> window(100);
    shard.read(4903, 100, window.data());
    for (size_t i = 0; i < window.size(); ++i) REQUIRE(window[i] == tokens[4903 + i]);
    CHECK_THROWS_AS(shard.read(4904, 100, window.data()), InternalError);
    CHECK_THROWS_AS(shard.at(-1), InternalError);

    // The shard stays usable after a move.
    data::TokenShard moved = data::TokenShard(path);
    CHECK(moved.at(1) == c.vocab - 1);

    const auto sidecar = core::read_json_file(data::token_shard_sidecar_path(path), "test");
    CHECK(sidecar["format"] == "edgedistill-token-shard");
    CHECK(sidecar["version"] == 1);
    CHECK(sidecar["dtype"] == data::token_dtype_name(c.dtype));
    CHECK(sidecar["count"] == tokens.size());
    CHECK(sidecar["vocab_size"] == c.vocab);
    CHECK(sidecar["tokenizer_hash"] == hash);
    CHECK(sidecar["split"] == "train");
    CHECK(sidecar["documents"] == 3);
  }
  // An empty shard is valid.
  data::write_token_shard(dir.path() / "empty.bin", {}, 259, hash, nlohmann::json::object());
  CHECK(data::TokenShard(dir.path() / "empty.bin").size() == 0);
}

TEST_CASE("token shards refuse damaged, foreign, newer and mismatched files with clear messages") {
  test::TempDir dir;
  const std::string hash = core::sha256_hex("tokenizer A");
  const std::vector<int32_t> tokens = {1, 5, 999, 7, 2};
  const fs::path good = dir.path() / "good.bin";
  data::write_token_shard(good, tokens, 1000, hash, nlohmann::json::object());
  const std::string original = read_bytes(good);
  const fs::path path = dir.path() / "damaged.bin";
  auto fresh_copy = [&] { write_text(path, original); };

  fresh_copy();
  fs::resize_file(path, 64 + 2 * 4);
  CHECK_THROWS_AS(data::TokenShard(path), FileError);
  CHECK_THROWS_WITH(data::TokenShard(path),
                    Catch::Contains("is truncated") && Catch::Contains("5 uint16 tokens") &&
                        Catch::Contains("74 bytes in all") && Catch::Contains("the file has 72") &&
                        Catch::Contains("re-run `edgedistill data`"));

  write_text(path, original + "xyz");
  CHECK_THROWS_WITH(data::TokenShard(path), Catch::Contains("has extra bytes") &&
                                                Catch::Contains("74 bytes in all") &&
                                                Catch::Contains("the file has 77"));

  write_text(path, original.substr(0, 40));
  CHECK_THROWS_WITH(data::TokenShard(path), Catch::Contains("is truncated: its header needs 64"));

  write_text(path, "GGUF: some other kind of file, long enough to hold a token shard header.");
  CHECK_THROWS_WITH(data::TokenShard(path), Catch::Contains("is not an edgedistill token shard"));
  CHECK_FALSE(data::looks_like_token_shard(path));
  CHECK(data::looks_like_token_shard(good));

  fresh_copy();
  patch_file(path, 8, le_u32(2));
  CHECK_THROWS_WITH(data::TokenShard(path), Catch::Contains("format version 2") &&
                                                Catch::Contains("reads version 1") &&
                                                Catch::Contains("upgrade edgedistill"));
  patch_file(path, 8, le_u32(0));
  CHECK_THROWS_WITH(data::TokenShard(path),
                    Catch::Contains("old format version 0") && Catch::Contains("re-run"));

  fresh_copy();
  patch_file(path, 12, le_u32(9));
  CHECK_THROWS_WITH(data::TokenShard(path), Catch::Contains("unknown token dtype code 9"));

  const std::string other = core::sha256_hex("tokenizer B");
  CHECK_THROWS_WITH(data::TokenShard(good, other), Catch::Contains("made with another tokenizer") &&
                                                       Catch::Contains(hash) &&
                                                       Catch::Contains(other));
  CHECK_NOTHROW(data::TokenShard(good, hash));

  fresh_copy();
  patch_file(path, 64 + 2 * 3, std::string("\xE8\x03", 2));  // token 3 := 1000 (little-endian)
  CHECK_THROWS_WITH(data::TokenShard(path), Catch::Contains("holds the token 1000 at position 3") &&
                                                Catch::Contains("outside its vocabulary of 1000"));

  CHECK_THROWS_WITH(data::TokenShard(dir.path() / "none.bin"), Catch::Contains("does not exist"));
}

// ---------------------------------------------------------------------------------------------
// Split

TEST_CASE("the document split is seeded, disjoint, complete and sized by the fractions") {
  data::SplitConfig config;
  config.valid = 0.05;
  config.test = 0.1;
  config.seed = 1234;
  for (const int64_t n : {int64_t{0}, int64_t{1}, int64_t{7}, int64_t{1000}, int64_t{3999}}) {
    INFO("documents " << n);
    const auto split = data::split_documents(n, config);
    CHECK(std::abs(static_cast<double>(split.valid.size()) - 0.05 * static_cast<double>(n)) <= 1);
    CHECK(std::abs(static_cast<double>(split.test.size()) - 0.1 * static_cast<double>(n)) <= 1);
    std::vector<int64_t> all;
    for (const auto* part : {&split.train, &split.valid, &split.test}) {
      CHECK(std::is_sorted(part->begin(), part->end()));
      all.insert(all.end(), part->begin(), part->end());
    }
    std::sort(all.begin(), all.end());
    std::vector<int64_t> expected(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) expected[static_cast<size_t>(i)] = i;
    CHECK(all == expected);  // every document in exactly one split
    const auto again = data::split_documents(n, config);
    CHECK(again.train == split.train);
    CHECK(again.valid == split.valid);
    CHECK(again.test == split.test);
  }
  const auto first = data::split_documents(1000, config);
  CHECK(first.valid.size() == 50);
  CHECK(first.test.size() == 100);
  CHECK(first.train.size() == 850);
  config.seed = 1235;
  const auto second = data::split_documents(1000, config);
  CHECK(second.valid != first.valid);
  CHECK(second.test != first.test);
}

// ---------------------------------------------------------------------------------------------
// Documents and corpus files

TEST_CASE("document text is normalised to hold no blank line") {
  CHECK(data::normalize_document_text("a\r\n\r\nb\n\n\nc  \n \n") == "a\nb\nc  ");
  CHECK(data::normalize_document_text("\n\n  x\ty \n") == "  x\ty ");
  CHECK(data::normalize_document_text("one\rtwo") == "one\ntwo");
  CHECK(data::normalize_document_text(" \n\t\n").empty());
  CHECK(data::normalize_document_text("kept as is") == "kept as is");
}

TEST_CASE("corpus files hold documents separated by one blank line and read back exactly") {
  test::TempDir dir;
  const std::vector<data::Document> documents = {
      {"a", "first line\nsecond  line "}, {"b", "\tindented"}, {"c", "x"}, {"d", "caf\xC3\xA9"}};
  std::vector<const data::Document*> pointers;
  for (const auto& d : documents) pointers.push_back(&d);
  const fs::path path = dir.path() / "c.txt";
  data::write_corpus_file(path, pointers);
  CHECK(read_bytes(path) == "first line\nsecond  line \n\n\tindented\n\nx\n\ncaf\xC3\xA9\n");
  const auto texts = data::read_corpus_file(path);
  REQUIRE(texts.size() == documents.size());
  for (size_t i = 0; i < texts.size(); ++i) CHECK(texts[i] == documents[i].text);
  data::write_corpus_file(path, {});
  CHECK(data::read_corpus_file(path).empty());
}
