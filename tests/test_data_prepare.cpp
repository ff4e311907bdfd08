// SentencePiece training, data preparation end to end, the data cache, and the tokenizer round
// trip over the whole KJV corpus.
#include <catch2/catch.hpp>

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <thread>

#include "core/config.h"
#include "core/files.h"
#include "core/rng.h"
#include "core/sha256.h"
#include "core/version.h"
#include "data/byte_tokenizer.h"
#include "data/corpus.h"
#include "data/prepare.h"
#include "data/sentencepiece_tokenizer.h"
#include "data/split.h"
#include "data/token_shard.h"
#include "python_reference.h"
#include "test_util.h"
#include "tokenizer/sentencepiece_model.h"

using namespace edgedistill;
namespace fs = std::filesystem;

namespace {

// A synthetic English-like text with what tokenizers find hard: accented and CJK characters, an
// emoji, digits, runs of spaces, tabs, leading spaces and trailing spaces. Paragraphs of 1 to 3
// lines, separated by blank lines.
std::string synthetic_corpus(int paragraphs, uint64_t seed) {
  static const char* kSyllables[] = {"ka", "lo", "mi", "ne", "ta", "ru", "so", "vi",
                                     "th", "er", "an", "qu", "es", "or", "in", "ge"};
  static const char* kExtras[] = {"caf\xC3\xA9",
                                  "na\xC3\xAFve",
                                  "\xE6\x97\xA5\xE6\x9C\xAC",
                                  "\xF0\x9F\x98\x80",
                                  "42",
                                  "1999",
                                  "x\ty",
                                  "a  b",
                                  "--",
                                  "(quoted)",
                                  "\"speech\"",
                                  "it's"};
  core::Rng rng(seed);
  std::string text;
  for (int p = 0; p < paragraphs; ++p) {
    const int lines = 1 + static_cast<int>(rng.below(3));
    for (int l = 0; l < lines; ++l) {
      if (rng.below(10) == 0) text += "  ";  // a leading space run
      const int words = 3 + static_cast<int>(rng.below(12));
      for (int w = 0; w < words; ++w) {
        if (w > 0) text += " ";
        if (rng.below(8) == 0) {
          text += kExtras[rng.below(std::size(kExtras))];
          continue;
        }
        const int syllables = 1 + static_cast<int>(rng.below(3));
        for (int s = 0; s < syllables; ++s) text += kSyllables[rng.below(std::size(kSyllables))];
      }
      text += rng.below(4) == 0 ? ". " : ".";  // sometimes a trailing space
      text += "\n";
    }
    text += "\n";
  }
  return text;
}

data::DataConfig text_file_config(const fs::path& file, const std::string& model_type,
                                  int vocab_size) {
  data::DataConfig config;
  config.name = "synthetic";
  config.sources.resize(1);
  config.sources[0].kind = "text_file";
  config.sources[0].path = file;
  config.tokenizer.kind = "sentencepiece";
  config.tokenizer.model_type = model_type;
  config.tokenizer.vocab_size = vocab_size;
  config.split.valid = 0.1;
  config.split.test = 0.1;
  core::Validator::validate_config(config, "");
  return config;
}

// Splits a shard's stream at <s> ... </s> and checks that each document decodes to the corpus
// file's text, in order. Returns the number of documents seen.
size_t check_shard_matches_corpus(const data::PreparedData& prepared, const std::string& split) {
  const auto texts = data::read_corpus_file(prepared.dir() / "corpus" / (split + ".txt"));
  const data::TokenShard shard = prepared.shard(split);
  const auto& tokenizer = prepared.tokenizer();
  std::vector<int64_t> all(static_cast<size_t>(shard.size()));
  shard.read(0, shard.size(), all.data());
  size_t document = 0;
  size_t i = 0;
  while (i < all.size()) {
    REQUIRE(all[i] == tokenizer.bos_id());
    size_t end = i + 1;
    while (end < all.size() && all[end] != tokenizer.eos_id()) ++end;
    REQUIRE(end < all.size());
    const std::vector<int32_t> ids(all.begin() + static_cast<ptrdiff_t>(i) + 1,
                                   all.begin() + static_cast<ptrdiff_t>(end));
    REQUIRE(document < texts.size());
    INFO(split << " document " << document);
    REQUIRE(tokenizer.decode(ids) == texts[document]);
    REQUIRE(tokenizer.encode(texts[document]) == ids);
    ++document;
    i = end + 1;
  }
  CHECK(document == texts.size());
  return document;
}

bool process_exists(long pid) {
  return ::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH;
}

struct FileStamp {
  ino_t inode;
  int64_t mtime_ns;
  bool operator==(const FileStamp& other) const {
    return inode == other.inode && mtime_ns == other.mtime_ns;
  }
};

FileStamp stamp(const fs::path& path) {
  struct stat info {};
  REQUIRE(::stat(path.c_str(), &info) == 0);
  return {info.st_ino,
          static_cast<int64_t>(info.st_mtim.tv_sec) * 1000000000 + info.st_mtim.tv_nsec};
}

}  // namespace

TEST_CASE("SentencePiece tokenizers round-trip every document of a text corpus") {
  test::TempDir dir;
  const fs::path file = dir.path() / "corpus.txt";
  core::write_file_atomic(file, synthetic_corpus(900, 5));
  for (const std::string model_type : {"bpe", "unigram"}) {
    INFO(model_type);
    const auto config = text_file_config(file, model_type, 400);
    const fs::path out = dir.path() / model_type;
    data::prepare_data(config, out);
    const data::PreparedData prepared(out);
    const auto& tokenizer = prepared.tokenizer();
    CHECK(tokenizer.kind() == "sentencepiece");
    CHECK(tokenizer.vocab_size() == 400);
    CHECK_NOTHROW(data::check_llama_vocab(tokenizer));
    CHECK(tokenizer.piece(0) == "<unk>");
    CHECK(tokenizer.piece(1) == "<s>");
    CHECK(tokenizer.piece(2) == "</s>");
    CHECK(tokenizer.type(0) == data::TokenType::unknown);
    CHECK(tokenizer.type(1) == data::TokenType::control);
    CHECK(tokenizer.type(2) == data::TokenType::control);

    size_t documents = 0;
    for (const auto& split : data::kSplitNames)
      documents += check_shard_matches_corpus(prepared, split);
    CHECK(documents == 900);

    // Characters never seen in training come back through byte fallback, never as <unk>.
    const std::string unseen = "a snowman \xE2\x98\x83, a clef \xF0\x9D\x84\x9E\tand\n  spaces ";
    const auto ids = tokenizer.encode(unseen);
    CHECK(tokenizer.decode(ids) == unseen);
    CHECK(std::find(ids.begin(), ids.end(), tokenizer.unk_id()) == ids.end());
    CHECK(std::count_if(ids.begin(), ids.end(), [&](int32_t id) {
            return tokenizer.type(id) == data::TokenType::byte;
          }) >= 3 + 4);  // U+2603 is 3 bytes, U+1D11E 4 bytes

    // The hash is the model file's sha256, the same after saving and loading.
    const fs::path model = out / "tokenizer" / data::SentencePieceTokenizer::kModelFileName;
    CHECK(tokenizer.hash() == core::sha256_file_hex(model));
    CHECK(prepared.info()["tokenizer"]["hash"] == tokenizer.hash());
    const auto reloaded = data::load_tokenizer(out / "tokenizer");
    CHECK(reloaded->hash() == tokenizer.hash());
    const auto description = core::read_json_file(out / "tokenizer" / "tokenizer.json", "test");
    CHECK(description["model_type"] == model_type);
    CHECK(description["kind"] == "sentencepiece");
  }
}

TEST_CASE("our SentencePiece model reader and decoder agree with libsentencepiece") {
  // The vocabulary and decoding in programs that load LibTorch come from our own parser of the
  // model file (sentencepiece_model.h); libsentencepiece itself is the independent reference.
  test::TempDir dir;
  const fs::path file = dir.path() / "corpus.txt";
  core::write_file_atomic(file, synthetic_corpus(400, 9));
  for (const std::string model_type : {"bpe", "unigram"}) {
    INFO(model_type);
    const fs::path out = dir.path() / model_type;
    data::prepare_data(text_file_config(file, model_type, 350), out);
    const std::string bytes =
        core::read_file(out / "tokenizer" / data::SentencePieceTokenizer::kModelFileName, "model");
    sentencepiece::SentencePieceProcessor reference;
    REQUIRE(reference.LoadFromSerializedProto(bytes).ok());
    const auto model = tok::parse_sentencepiece_model(bytes, "test model");
    REQUIRE(static_cast<int>(model.pieces.size()) == reference.GetPieceSize());
    CHECK(model.model_type == model_type);
    CHECK(model.byte_fallback);
    CHECK(model.unk_id == reference.unk_id());
    CHECK(model.bos_id == reference.bos_id());
    CHECK(model.eos_id == reference.eos_id());
    CHECK(model.pad_id == reference.pad_id());
    CHECK(model.normalizer_name == "identity");
    CHECK_FALSE(model.remove_extra_whitespaces);
    for (int id = 0; id < reference.GetPieceSize(); ++id) {
      const auto& piece = model.pieces[static_cast<size_t>(id)];
      CHECK(piece.text == reference.IdToPiece(id));
      CHECK(piece.score == reference.GetScore(id));
      const auto expected_type = reference.IsUnknown(id)   ? data::TokenType::unknown
                                 : reference.IsControl(id) ? data::TokenType::control
                                 : reference.IsByte(id)    ? data::TokenType::byte
                                 : reference.IsUnused(id)  ? data::TokenType::unused
                                                           : data::TokenType::normal;
      CHECK(piece.type == expected_type);
    }
    // Decoding: every document, texts with leading spaces, unseen characters (byte pieces first),
    // and control tokens in odd places.
    std::vector<std::string> texts = data::read_corpus_file(out / "corpus" / "train.txt");
    for (const char* extra : {" leading space", "  two", "\xE2\x98\x83 snowman first", "", " ",
                              "tab\tand\nnewline", "trailing "}) {
      texts.emplace_back(extra);
    }
    for (const auto& text : texts) {
      std::vector<int> ids;
      REQUIRE(reference.Encode(text, &ids).ok());
      std::string expected;
      REQUIRE(reference.Decode(ids, &expected).ok());
      CHECK(tok::decode_sentencepiece(model, std::vector<int32_t>(ids.begin(), ids.end())) ==
            expected);
      ids.insert(ids.begin(), reference.bos_id());
      ids.push_back(reference.eos_id());
      REQUIRE(reference.Decode(ids, &expected).ok());
      CHECK(tok::decode_sentencepiece(model, std::vector<int32_t>(ids.begin(), ids.end())) ==
            expected);
    }
    const std::vector<int32_t> with_unknown = {5, 0, 7};
    std::string expected;
    REQUIRE(reference.Decode(std::vector<int>{5, 0, 7}, &expected).ok());
    CHECK(tok::decode_sentencepiece(model, with_unknown) == expected);
  }
}

TEST_CASE("the SentencePiece model reader rejects truncated and foreign bytes") {
  test::TempDir dir;
  const fs::path file = dir.path() / "corpus.txt";
  core::write_file_atomic(file, synthetic_corpus(200, 3));
  data::prepare_data(text_file_config(file, "bpe", 300), dir.path() / "out");
  const std::string bytes = core::read_file(
      dir.path() / "out" / "tokenizer" / data::SentencePieceTokenizer::kModelFileName, "model");
  for (size_t cut : {size_t{1}, size_t{7}, bytes.size() / 3, bytes.size() / 2, bytes.size() - 1}) {
    INFO("cut at " << cut);
    // A cut inside a field is malformed; a cut between fields parses but loses the trainer spec
    // (it follows the pieces) and is refused for that.
    CHECK_THROWS_AS(tok::parse_sentencepiece_model(bytes.substr(0, cut), "cut model"), FileError);
  }
  CHECK_THROWS_WITH(tok::parse_sentencepiece_model("\x89PNG\r\n\x1a\n", "png"),
                    Catch::Contains("png") && Catch::Contains("malformed"));
  CHECK_THROWS_AS(tok::parse_sentencepiece_model("", "empty"), FileError);
}

TEST_CASE("a damaged or unsuitable SentencePiece model is a FileError") {
  test::TempDir dir;
  const fs::path file = dir.path() / "corpus.txt";
  core::write_file_atomic(file, synthetic_corpus(300, 6));
  data::prepare_data(text_file_config(file, "bpe", 320), dir.path() / "data");
  const fs::path tokenizer_dir = dir.path() / "data" / "tokenizer";
  const fs::path model = tokenizer_dir / data::SentencePieceTokenizer::kModelFileName;
  const std::string original = core::read_file(model, "test");

  core::write_file_atomic(model, "this is not a protocol buffer at all");
  CHECK_THROWS_AS(data::load_tokenizer(tokenizer_dir), FileError);
  CHECK_THROWS_WITH(data::load_tokenizer(tokenizer_dir),
                    Catch::Contains("is malformed") && Catch::Contains("tokenizer.model"));

  std::string flipped = original;
  flipped[flipped.size() / 2] = static_cast<char>(flipped[flipped.size() / 2] ^ 0x01);
  core::write_file_atomic(model, flipped);
  CHECK_THROWS_AS(data::load_tokenizer(tokenizer_dir), FileError);

  core::write_file_atomic(model, original);
  CHECK_NOTHROW(data::load_tokenizer(tokenizer_dir));
  fs::remove(model);
  CHECK_THROWS_WITH(data::load_tokenizer(tokenizer_dir), Catch::Contains("does not exist"));

  // A model trained without byte fallback would turn unseen characters into <unk>.
  std::string no_fallback;
  std::vector<std::string> lines = {"alpha beta gamma", "beta gamma delta", "gamma delta alpha"};
  for (int i = 0; i < 50; ++i) lines.push_back("line " + std::to_string(i) + " of alpha text");
  class Lines : public sentencepiece::SentenceIterator {
   public:
    explicit Lines(const std::vector<std::string>& lines) : lines_(lines) {}
    bool done() const override { return i_ >= lines_.size(); }
    void Next() override { ++i_; }
    const std::string& value() const override { return lines_[i_]; }
    sentencepiece::util::Status status() const override { return {}; }

   private:
    const std::vector<std::string>& lines_;
    size_t i_ = 0;
  } iterator(lines);
  REQUIRE(sentencepiece::SentencePieceTrainer::Train({{"model_type", "bpe"},
                                                      {"vocab_size", "40"},
                                                      {"minloglevel", "2"},
                                                      {"byte_fallback", "false"}},
                                                     &iterator, &no_fallback)
              .ok());
  CHECK_THROWS_AS(data::SentencePieceTokenizer::from_model_bytes(no_fallback, "test model"),
                  FileError);
  CHECK_THROWS_WITH(data::SentencePieceTokenizer::from_model_bytes(no_fallback, "test model"),
                    Catch::Contains("byte_fallback") || Catch::Contains("unk/bos/eos"));
}

TEST_CASE("SentencePiece training reports a vocabulary too large for the corpus") {
  data::TokenizerConfig config;
  config.model_type = "unigram";
  config.vocab_size = 20000;
  const std::vector<std::string> documents = {"a tiny corpus", "with few words"};
  CHECK_THROWS_AS(data::SentencePieceTokenizer::train(config, documents), InputError);
  CHECK_THROWS_WITH(data::SentencePieceTokenizer::train(config, documents),
                    Catch::Contains("Vocabulary size too high (20000)") &&
                        Catch::Contains("tokenizer.vocab_size") && !Catch::Contains(".cc("));
}

TEST_CASE("prepare_data writes the documented layout and the shards decode to the corpus") {
  test::TempDir dir;
  auto config = core::load_config<data::DataConfig>(
      test::source_dir() / "configs" / "data" / "kjv.json",
      {"max_documents=300", "tokenizer.vocab_size=600", "name=kjv-small"});
  const fs::path out = dir.path() / "kjv-small";
  data::prepare_data(config, out);

  for (const char* file :
       {"data.json", "corpus/train.txt", "corpus/valid.txt", "corpus/test.txt", "corpus/split.json",
        "tokenizer/tokenizer.json", "tokenizer/tokenizer.model", "shards/train.bin",
        "shards/train.bin.json", "shards/valid.bin", "shards/test.bin", "shards/test.bin.json"}) {
    INFO(file);
    CHECK(fs::is_regular_file(out / file));
  }
  // Nothing else is left beside the output (the staging directory was renamed into place).
  CHECK(std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator()) == 1);

  const data::PreparedData prepared(out);
  const auto& info = prepared.info();
  CHECK(info["format"] == "edgedistill-data");
  CHECK(info["version"] == data::kDataFormatVersion);
  CHECK(info["kind"] == "text");
  CHECK(info["edgedistill_version"] == kVersion);
  CHECK(info["config_hash"] == data::data_config_hash(config));
  CHECK(data::data_config_hash(prepared.config()) == data::data_config_hash(config));
  CHECK(info["documents"] == 300);
  CHECK(info["sources"]["kjv"] == 300);
  CHECK(info["tokenizer"]["kind"] == "sentencepiece");
  CHECK(info["tokenizer"]["vocab_size"] == 600);
  const auto split_ids = core::read_json_file(out / "corpus" / "split.json", "test");
  int64_t documents = 0;
  for (const auto& split : data::kSplitNames) {
    INFO(split);
    const auto& counts = info["splits"][split];
    const size_t decoded = check_shard_matches_corpus(prepared, split);
    CHECK(counts["documents"] == decoded);
    CHECK(split_ids[split].size() == decoded);
    CHECK(counts["tokens"] == prepared.shard(split).size());
    const auto texts = data::read_corpus_file(out / "corpus" / (split + ".txt"));
    int64_t bytes = 0;
    for (const auto& text : texts) bytes += static_cast<int64_t>(text.size());
    CHECK(counts["bytes"] == bytes);
    const auto sidecar =
        core::read_json_file(data::token_shard_sidecar_path(prepared.shard_path(split)), "test");
    CHECK(sidecar["split"] == split);
    CHECK(sidecar["documents"] == decoded);
    CHECK(sidecar["tokenizer_hash"] == prepared.tokenizer().hash());
    documents += counts["documents"].get<int64_t>();
  }
  CHECK(documents == 300);
  CHECK(info["splits"]["valid"]["documents"] == 15);    // 5% of 300
  CHECK(split_ids["train"][0] == "kjv:Genesis 1:1-8");  // the split keeps corpus order
  CHECK_THROWS_AS(prepared.shard("training"), InputError);
  CHECK_THROWS_WITH(prepared.shard("training"), Catch::Contains("unknown split 'training'"));

  // Summaries for `edgedistill inspect`.
  const auto shard_summary = data::describe_path(out / "shards" / "train.bin");
  CHECK(shard_summary["kind"] == "token shard");
  CHECK(shard_summary["split"] == "train");
  CHECK(shard_summary["vocab_size"] == 600);
  CHECK(shard_summary["first_text"].get<std::string>().rfind("In the beginning God", 0) == 0);
  const auto tokenizer_summary = data::describe_path(out / "tokenizer");
  CHECK(tokenizer_summary["kind"] == "tokenizer");
  CHECK(tokenizer_summary["hash"] == prepared.tokenizer().hash());
  CHECK(tokenizer_summary["gguf_llama_vocab"] == "ok");
  CHECK(tokenizer_summary["token_types"]["byte"] == 256);
  const auto data_summary = data::describe_path(out);
  CHECK(data_summary["kind"] == "prepared data");
  CHECK(data_summary["splits"]["train"]["tokens"].get<int64_t>() ==
        info["splits"]["train"]["tokens"].get<int64_t>());
  CHECK(data::describe_path(out / "corpus" / "train.txt").empty());
  CHECK(data::describe_path(dir.path() / "nothing-here").empty());

  // Preparing again replaces the directory in place, with the same (deterministic) tokenizer.
  data::prepare_data(config, out);
  CHECK(data::PreparedData(out).tokenizer().hash() == prepared.tokenizer().hash());
  // A directory that is not prepared data is never replaced.
  core::write_file_atomic(dir.path() / "mine" / "notes.txt", "keep me");
  CHECK_THROWS_WITH(data::prepare_data(config, dir.path() / "mine"),
                    Catch::Contains("is not a prepared data directory"));
  CHECK(fs::exists(dir.path() / "mine" / "notes.txt"));
}

TEST_CASE("PreparedData refuses foreign, newer and image directories") {
  test::TempDir dir;
  CHECK_THROWS_WITH(data::PreparedData(dir.path()), Catch::Contains("holds no prepared data") &&
                                                        Catch::Contains("edgedistill data"));
  core::write_json_atomic(dir.path() / "data.json",
                          {{"format", "edgedistill-data"}, {"version", 9}});
  CHECK_THROWS_WITH(data::PreparedData(dir.path()),
                    Catch::Contains("version 9") && Catch::Contains("upgrade edgedistill"));
  core::write_json_atomic(dir.path() / "data.json", {{"format", "other"}});
  CHECK_THROWS_WITH(data::PreparedData(dir.path()), Catch::Contains("not an edgedistill data"));

  const auto images = core::load_config<data::DataConfig>(
      test::source_dir() / "configs" / "data" / "fashion-mnist.json", {});
  data::prepare_data(images, dir.path() / "images");
  const auto info = core::read_json_file(dir.path() / "images" / "data.json", "test");
  CHECK(info["kind"] == "images");
  CHECK(info["splits"]["train"]["images"] == 55000);
  CHECK(info["splits"]["valid"]["images"] == 5000);
  CHECK(info["splits"]["test"]["images"] == 10000);
  CHECK(info["images"]["classes"] == 10);
  CHECK(info["images"]["files_sha256"].size() == 4);
  CHECK_THROWS_AS(data::PreparedData(dir.path() / "images"), InputError);
  CHECK_THROWS_WITH(data::PreparedData(dir.path() / "images"), Catch::Contains("images data"));
  CHECK(data::describe_path(dir.path() / "images")["data_kind"] == "images");
}

TEST_CASE("the cache root follows EDGEDISTILL_CACHE_DIR, XDG_CACHE_HOME, then HOME") {
  {
    test::ScopedEnv cache("EDGEDISTILL_CACHE_DIR", "/tmp/ed-cache");
    CHECK(data::default_cache_root() == fs::path("/tmp/ed-cache"));
  }
  test::ScopedEnv cache("EDGEDISTILL_CACHE_DIR", nullptr);
  {
    test::ScopedEnv xdg("XDG_CACHE_HOME", "/tmp/xdg");
    CHECK(data::default_cache_root() == fs::path("/tmp/xdg/edgedistill"));
  }
  test::ScopedEnv xdg("XDG_CACHE_HOME", nullptr);
  test::ScopedEnv home("HOME", "/home/someone");
  CHECK(data::default_cache_root() == fs::path("/home/someone/.cache/edgedistill"));
}

TEST_CASE("ensure_prepared prepares once, then reuses the cache") {
  test::TempDir cache;
  test::ScopedEnv cache_env("EDGEDISTILL_CACHE_DIR", cache.path().c_str());
  test::TempDir sources;
  core::write_file_atomic(sources.path() / "corpus.txt", synthetic_corpus(200, 7));
  auto config = text_file_config(sources.path() / "corpus.txt", "bpe", 320);
  config.tokenizer.kind = "byte";
  const std::string hash = data::data_config_hash(config);

  const fs::path root = data::default_cache_root();
  CHECK(root == cache.path());
  const fs::path dir = data::ensure_prepared(config, root);
  CHECK(dir == root / "data" / ("synthetic-" + hash.substr(0, 16)));
  CHECK(data::is_prepared(dir, hash));
  const FileStamp before = stamp(dir / "data.json");
  const FileStamp shard_before = stamp(dir / "shards" / "train.bin");

  // A second call rewrites nothing.
  CHECK(data::ensure_prepared(config, root) == dir);
  CHECK(stamp(dir / "data.json") == before);
  CHECK(stamp(dir / "shards" / "train.bin") == shard_before);

  // Another config gets another directory.
  auto other = config;
  other.split.seed = 99;
  const fs::path other_dir = data::ensure_prepared(other, root);
  CHECK(other_dir != dir);
  CHECK(data::PreparedData(other_dir).shard("valid").size() > 0);

  // A run killed while staging leaves its directory behind; the next run is unaffected and clears
  // it away (its process is gone).
  long dead_pid = 999999;
  while (process_exists(dead_pid)) ++dead_pid;
  char host[256] = {};
  ::gethostname(host, sizeof(host) - 1);
  const fs::path leftover =
      dir.parent_path() / str(".", dir.filename().string(), ".staging-", host, "-", dead_pid, "-0");
  core::create_directories(leftover / "shards", "test");
  core::write_file_atomic(leftover / "shards" / "train.bin", "half written");
  fs::remove_all(dir);
  CHECK(data::ensure_prepared(config, root) == dir);
  CHECK(data::is_prepared(dir, hash));
  CHECK_FALSE(fs::exists(leftover));
  CHECK(data::PreparedData(dir).shard("train").size() > 0);

  // A directory with a stale data.json (another config hash) is rebuilt.
  auto stale = core::read_json_file(dir / "data.json", "test");
  stale["config_hash"] = std::string(64, '0');
  core::write_json_atomic(dir / "data.json", stale);
  CHECK_FALSE(data::is_prepared(dir, hash));
  CHECK(data::ensure_prepared(config, root) == dir);
  CHECK(data::is_prepared(dir, hash));

  // Nothing but the two prepared directories is left in the cache.
  std::vector<std::string> entries;
  for (const auto& entry : fs::directory_iterator(root / "data")) {
    entries.push_back(entry.path().filename().string());
  }
  std::sort(entries.begin(), entries.end());
  std::vector<std::string> expected = {dir.filename().string(), other_dir.filename().string()};
  std::sort(expected.begin(), expected.end());
  CHECK(entries == expected);
}

TEST_CASE("concurrent preparers of one config leave one complete directory") {
  test::TempDir cache;
  test::TempDir sources;
  core::write_file_atomic(sources.path() / "corpus.txt", synthetic_corpus(300, 8));
  auto config = text_file_config(sources.path() / "corpus.txt", "bpe", 320);
  config.tokenizer.kind = "byte";
  std::vector<fs::path> results(3);
  std::vector<std::thread> threads;
  for (size_t t = 0; t < results.size(); ++t) {
    threads.emplace_back([&, t] { results[t] = data::ensure_prepared(config, cache.path()); });
  }
  for (auto& thread : threads) thread.join();
  CHECK(results[0] == results[1]);
  CHECK(results[1] == results[2]);
  CHECK(data::is_prepared(results[0], data::data_config_hash(config)));
  size_t documents = 0;
  const data::PreparedData prepared(results[0]);
  for (const auto& split : data::kSplitNames)
    documents += check_shard_matches_corpus(prepared, split);
  CHECK(documents == 300);
  CHECK(std::distance(fs::directory_iterator(cache.path() / "data"), fs::directory_iterator()) ==
        1);
}

TEST_CASE("the KJV SentencePiece tokenizer round-trips every document of the corpus") {
  // configs/data/kjv.json as shipped: SentencePiece BPE, 4,096 pieces, trained on the train split.
  test::TempDir cache;
  const auto config =
      core::load_config<data::DataConfig>(test::source_dir() / "configs" / "data" / "kjv.json", {});
  const auto start = std::chrono::steady_clock::now();
  const fs::path dir = data::ensure_prepared(config, cache.path());
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const data::PreparedData prepared(dir);
  CHECK(prepared.tokenizer().vocab_size() == 4096);
  CHECK_NOTHROW(data::check_llama_vocab(prepared.tokenizer()));
  size_t documents = 0;
  for (const auto& split : data::kSplitNames)
    documents += check_shard_matches_corpus(prepared, split);
  CHECK(documents == 4409);  // see "kjv documents group consecutive verses within one chapter"
  CHECK(prepared.info()["splits"]["valid"]["documents"] == 220);  // round(0.05 * 4409)
  CHECK(prepared.info()["splits"]["test"]["documents"] == 220);
  // A 4,096-piece BPE vocabulary compresses English well below the byte count: the KJV's ~4.3 MB
  // become roughly a million tokens (a measured ratio of ~4 bytes per token; 3 is a loose bound).
  const auto& train = prepared.info()["splits"]["train"];
  CHECK(train["bytes"].get<double>() / train["tokens"].get<double>() > 3.0);
  INFO("KJV preparation took " << seconds << " s");  // reported, not asserted: tests never time
}

namespace {

// Checks every document of a split: framed as the tokenizer frames texts (BOS when it starts
// sequences with one, EOS when it has one), holding exactly the tokenizer's ids of the corpus
// text, decoding back to it when the tokenizer keeps every text.
void check_pretrained_shard(const data::PreparedData& prepared, const std::string& split,
                            const data::Tokenizer& reference) {
  const auto texts = data::read_corpus_file(prepared.dir() / "corpus" / (split + ".txt"));
  const data::TokenShard shard = prepared.shard(split);
  std::vector<int64_t> all(static_cast<size_t>(shard.size()));
  shard.read(0, shard.size(), all.data());
  std::vector<int64_t> expected;
  for (const auto& text : texts) {
    if (reference.frames_with_bos()) expected.push_back(reference.bos_id());
    for (const int32_t id : reference.encode(text)) expected.push_back(id);
    if (reference.eos_id() >= 0) expected.push_back(reference.eos_id());
    if (reference.round_trips()) {
      INFO(split << ": " << text);
      REQUIRE(reference.decode(reference.encode(text)) == text);
    }
  }
  REQUIRE(all == expected);
}

}  // namespace

TEST_CASE("data is prepared with pretrained tokenizers: tokenizer.json, tokenizer.model, GGUF") {
  test::TempDir dir;
  core::write_file_atomic(dir.path() / "corpus.txt", synthetic_corpus(200, 11));
  test::run_python("bpe_reference.py", {dir.path().string()});
  // A Hugging Face model folder: tokenizer.json and tokenizer_config.json.
  const fs::path hf = dir.path() / "hf-model";
  fs::create_directories(hf);
  fs::copy_file(dir.path() / "llama3.tokenizer.json", hf / "tokenizer.json");
  core::write_file_atomic(hf / "tokenizer_config.json",
                          R"({"bos_token": "<|begin_of_text|>", "eos_token": "<|endoftext|>"})");
  // A SentencePiece unigram model with the default nmt_nfkc normalizer, trained by the library.
  const fs::path spm_model = dir.path() / "unigram.model";
  {
    std::string lines;
    for (int i = 0; i < 400; ++i) lines += synthetic_corpus(1, static_cast<uint64_t>(i)) + "\n";
    core::write_file_atomic(dir.path() / "spm-train.txt", lines);
    const auto status = sentencepiece::SentencePieceTrainer::Train(
        "--input=" + (dir.path() / "spm-train.txt").string() +
        " --model_prefix=" + (dir.path() / "unigram").string() +
        " --model_type=unigram --vocab_size=400 --byte_fallback=true --minloglevel=2 "
        "--num_threads=1");
    REQUIRE(status.ok());
  }
  struct Case {
    const char* name;
    fs::path from;
    const char* saved_file;
  };
  for (const Case& source : {Case{"tokenizer.json", hf, "hf_tokenizer.json"},
                             Case{"tokenizer.model", spm_model, "tokenizer.model"},
                             Case{"gguf", dir.path() / "gpt2.gguf", "vocab.gguf"}}) {
    SECTION(source.name) {
      const auto reference = data::open_tokenizer(source.from);
      REQUIRE(reference->kind() == "pretrained");
      auto config = text_file_config(dir.path() / "corpus.txt", "bpe", 300);
      config.tokenizer.from = source.from;
      const fs::path out = dir.path() / "prepared";
      data::prepare_data(config, out);
      CHECK(fs::is_regular_file(out / "tokenizer" / source.saved_file));
      const data::PreparedData prepared(out);
      CHECK(prepared.tokenizer().kind() == "pretrained");
      CHECK(prepared.tokenizer().hash() == reference->hash());
      CHECK(prepared.tokenizer().vocab_size() == reference->vocab_size());
      for (const char* split : {"train", "valid", "test"}) {
        check_pretrained_shard(prepared, split, *reference);
      }
      const auto info = core::read_json_file(out / "data.json", "data.json");
      CHECK(info["tokenizer"]["kind"] == "pretrained");
      // nmt_nfkc changes the full-width and compatibility characters of some documents.
      if (std::string(source.name) == "tokenizer.model") {
        CHECK_FALSE(reference->round_trips());
      } else {
        CHECK(info["tokenizer"]["normalized_documents"] == 0);
      }
    }
  }
  SECTION("the cache key follows the tokenizer's contents, not its path") {
    auto config = text_file_config(dir.path() / "corpus.txt", "bpe", 300);
    config.tokenizer.from = dir.path() / "gpt2.tokenizer.json";
    const std::string original = data::data_config_hash(config);
    fs::create_directories(dir.path() / "elsewhere");
    fs::copy_file(dir.path() / "gpt2.tokenizer.json", dir.path() / "elsewhere" / "t.json");
    config.tokenizer.from = dir.path() / "elsewhere" / "t.json";
    CHECK(data::data_config_hash(config) == original);
    config.tokenizer.from = dir.path() / "smollm.tokenizer.json";  // same vocabulary, other split
    CHECK(data::data_config_hash(config) != original);
  }
  SECTION("a path that holds no tokenizer is one clear error") {
    auto config = text_file_config(dir.path() / "corpus.txt", "bpe", 300);
    config.tokenizer.from = dir.path();
    CHECK_THROWS_WITH(data::prepare_data(config, dir.path() / "out"),
                      Catch::Contains(dir.path().string()) && Catch::Contains("no tokenizer"));
  }
}
