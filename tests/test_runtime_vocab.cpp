// GGUF "llama" vocabularies (tok::Vocab::from_llama_vocab and from_gguf: encode, decode,
// validation, GGUF keys) against libsentencepiece, and the sampler against the distributions it
// should draw from.
#include <catch2/catch.hpp>

#include <sentencepiece_trainer.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <numeric>
#include <set>
#include <sstream>

#include "core/error.h"
#include "core/rng.h"
#include "data/data_config.h"
#include "data/kjv_source.h"
#include "data/sentencepiece_backend.h"
#include "data/sentencepiece_tokenizer.h"
#include "io/gguf.h"
#include "runtime/sampler.h"
#include "test_util.h"
#include "tokenizer/sentencepiece_model.h"
#include "tokenizer/vocab.h"

using namespace edgedistill;
namespace fs = std::filesystem;
using tok::Vocab;
using VocabTokenType = tok::TokenType;

namespace {

// A vocabulary as GGUF's parallel arrays hold it (tokens, scores, types), made into the runtime's
// tok::Vocab through from_llama_vocab.
struct VocabData {
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<VocabTokenType> types;
  int32_t bos_id = 1, eos_id = 2, unk_id = 0;
  bool add_bos = true;
};

Vocab make_vocab(const VocabData& data, const std::string& origin) {
  REQUIRE(data.scores.size() == data.tokens.size());
  REQUIRE(data.types.size() == data.tokens.size());
  tok::LlamaVocabData llama;
  for (size_t i = 0; i < data.tokens.size(); ++i) {
    llama.tokens.push_back({data.tokens[i], data.scores[i], data.types[i]});
  }
  llama.bos_id = data.bos_id;
  llama.eos_id = data.eos_id;
  llama.unk_id = data.unk_id;
  llama.add_bos = data.add_bos;
  return Vocab::from_llama_vocab(std::move(llama), origin);
}

// BOS (when the vocabulary starts sequences with it) and the ids of `text`.
std::vector<int32_t> encode_with_bos(const Vocab& vocab, const std::string& text) {
  std::vector<int32_t> ids = vocab.encode(text);
  ids.insert(ids.begin(), vocab.bos_id());
  return ids;
}

// ---------------------------------------------------------------------------------------------
// Training text and tokenizers

// KJV verses used for training when the `bible` program (Debian bible-kjv) is installed.
constexpr size_t kKjvTrainingVerses = 800;
// Pieces of the trained tokenizer: 259 special and byte pieces plus merges and characters.
constexpr int kTrainedVocabSize = 1000;

bool program_on_path(const std::string& name) {
  const char* path = std::getenv("PATH");
  if (path == nullptr) return false;
  std::stringstream dirs(path);
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    if (!dir.empty() && fs::exists(fs::path(dir) / name)) return true;
  }
  return false;
}

// English-like lines with what the encoder finds hard: accented letters (in the training text, so
// they become character pieces), digits (split_digits), punctuation and runs of spaces.
std::vector<std::string> synthetic_lines(int count, uint64_t seed) {
  static const char* kSyllables[] = {"ka", "lo", "mi", "ne", "ta", "ru", "so", "vi",
                                     "th", "er", "an", "qu", "es", "or", "in", "ge"};
  static const char* kExtras[] = {
      "caf\xC3\xA9", "na\xC3\xAFve", "42",  "1999", "--",     "(quoted)",         "\"speech\"",
      "it's",        "a  b",         "x,y", "3.14", "e-mail", "\xC3\xA9t\xC3\xA9"};
  core::Rng rng(seed);
  std::vector<std::string> lines;
  for (int l = 0; l < count; ++l) {
    std::string line;
    if (rng.below(10) == 0) line += "  ";
    const int words = 3 + static_cast<int>(rng.below(12));
    for (int w = 0; w < words; ++w) {
      if (w > 0) line += " ";
      if (rng.below(6) == 0) {
        line += kExtras[rng.below(std::size(kExtras))];
        continue;
      }
      const int syllables = 1 + static_cast<int>(rng.below(3));
      for (int s = 0; s < syllables; ++s) line += kSyllables[rng.below(std::size(kSyllables))];
    }
    line += rng.below(4) == 0 ? ". " : ".";
    lines.push_back(line);
  }
  return lines;
}

// The lines a tokenizer is trained on: KJV verses when available, and synthetic lines always.
std::vector<std::string> training_lines() {
  std::vector<std::string> lines;
  if (program_on_path("bible")) {
    const auto verses = data::read_kjv_verses();
    for (size_t i = 0; i < kKjvTrainingVerses && i < verses.size(); ++i) {
      lines.push_back(verses[i].text);
    }
  } else {
    WARN("the `bible` program (bible-kjv) is not installed: training on generated text only");
  }
  const auto synthetic = synthetic_lines(400, 17);
  lines.insert(lines.end(), synthetic.begin(), synthetic.end());
  return lines;
}

VocabData vocab_data_of(const tok::SentencePieceModel& model) {
  VocabData data;
  for (const auto& piece : model.pieces) {
    data.tokens.push_back(piece.text);
    data.scores.push_back(piece.score);
    data.types.push_back(static_cast<VocabTokenType>(static_cast<int32_t>(piece.type)));
  }
  data.bos_id = model.bos_id;
  data.eos_id = model.eos_id;
  data.unk_id = model.unk_id;
  return data;
}

// A tokenizer trained the way `edgedistill data` trains one (data::SentencePieceTokenizer through
// the libsentencepiece backend), its parsed model, libsentencepiece's encoder and our Vocab.
struct TrainedTokenizer {
  std::vector<std::string> lines;
  std::string model_bytes;
  tok::SentencePieceModel model;
  std::unique_ptr<data::SentencePieceEncoder> reference;
  Vocab vocab;
};

const TrainedTokenizer& trained_tokenizer() {
  static const TrainedTokenizer trained = [] {
    std::vector<std::string> lines = training_lines();
    data::TokenizerConfig config;
    config.kind = "sentencepiece";
    config.model_type = "bpe";
    config.vocab_size = kTrainedVocabSize;
    std::string documents;
    for (const auto& line : lines) documents += line + "\n";
    const auto tokenizer = data::SentencePieceTokenizer::train(config, {documents});
    std::string bytes = tokenizer->model_bytes();
    auto model = tok::parse_sentencepiece_model(bytes, "trained model");
    auto reference = data::sentencepiece_backend()->load_encoder(bytes, "trained model");
    Vocab vocab = make_vocab(vocab_data_of(model), "trained model");
    return TrainedTokenizer{std::move(lines), std::move(bytes), std::move(model),
                            std::move(reference), std::move(vocab)};
  }();
  return trained;
}

// Texts that exercise the encoder: sentences, spaces in every position, newlines and tabs, digits,
// punctuation, characters outside the vocabulary (byte fallback), and the spellings of special
// pieces (which must encode as plain text).
std::vector<std::string> probe_texts() {
  return {
      "",
      "In the beginning God created the heaven and the earth.",
      "And God said, Let there be light: and there was light.",
      "the",
      "a",
      " ",
      "  ",
      "   ",
      " leading space",
      "  two leading spaces",
      "trailing space ",
      "trailing spaces   ",
      "multiple   spaces    inside  the   text",
      "line one\nline two",
      "\n",
      "\n\n",
      "a\n b\n  c",
      "ends with a newline\n",
      "tab\tseparated\tvalues",
      "windows\r\nline end",
      "12345",
      "in 1611 the 3rd of 24 verses, 3.14159 and 0",
      "Hello, world! (yes) -- \"quoted\" 'single'; a: b? [c] {d} <e> @#$%^&*_+=~`|\\/",
      "caf\xC3\xA9",
      "na\xC3\xAFve caf\xC3\xA9 \xC3\xA9t\xC3\xA9",
      "\xC3\x9Cn\xC3\xAF\x63\xC3\xB6\x64\xC3\xA9",             // Ünïcödé
      "\xE4\xB8\xAD\xE6\x96\x87",                              // 中文
      "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E text",             // 日本語 text
      "\xF0\x9F\x98\x80",                                      // 😀
      "emoji \xF0\x9F\x98\x80 in \xF0\x9F\x8E\x89 text",       // 😀 🎉
      "\xCE\xB5 = mc\xC2\xB2",                                 // ε = mc²
      "mixed: caf\xC3\xA9 \xE4\xB8\xAD 42 \xF0\x9F\x98\x80!",  // café 中 42 😀
      "<s>",
      "</s> and <unk>",
      "<0x41> is not a byte token here",
      "God God God God God God God God God God",
      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
      "thethethethethe",
  };
}

// Random strings over a pool of characters, spaces and newlines included.
std::vector<std::string> random_texts(int count, uint64_t seed) {
  static const char* kPool[] = {"a",
                                "e",
                                "t",
                                "h",
                                "n",
                                "o",
                                "s",
                                "G",
                                "d",
                                " ",
                                " ",
                                " ",
                                "\n",
                                "\t",
                                ".",
                                ",",
                                "1",
                                "9",
                                "0",
                                "'",
                                "-",
                                "\xC3\xA9",
                                "\xE4\xB8\xAD",
                                "th",
                                "e",
                                "r",
                                "in",
                                "LORD",
                                "and",
                                "\xF0\x9F\x98\x80",
                                "\xC3\xBC"};
  core::Rng rng(seed);
  std::vector<std::string> texts;
  for (int i = 0; i < count; ++i) {
    std::string text;
    const int length = static_cast<int>(rng.below(40));
    for (int c = 0; c < length; ++c) text += kPool[rng.below(std::size(kPool))];
    texts.push_back(text);
  }
  return texts;
}

// One piece of a hand-made vocabulary.
struct HandPiece {
  std::string text;
  float score;
  VocabTokenType type = VocabTokenType::normal;
};

// A small hand-made vocabulary: <unk>, <s>, </s>, the 256 byte tokens when asked, then `pieces`.
VocabData hand_vocab(const std::vector<HandPiece>& pieces, bool with_byte_tokens) {
  VocabData data;
  data.tokens = {"<unk>", "<s>", "</s>"};
  data.scores = {0, 0, 0};
  data.types = {VocabTokenType::unknown, VocabTokenType::control, VocabTokenType::control};
  if (with_byte_tokens) {
    for (int b = 0; b < 256; ++b) {
      char name[8];
      std::snprintf(name, sizeof(name), "<0x%02X>", b);
      data.tokens.push_back(name);
      data.scores.push_back(0);
      data.types.push_back(VocabTokenType::byte);
    }
  }
  for (const auto& piece : pieces) {
    data.tokens.push_back(piece.text);
    data.scores.push_back(piece.score);
    data.types.push_back(piece.type);
  }
  return data;
}

// Protocol-buffer encoding of a hand-made vocabulary as a SentencePiece ModelProto (the layout
// in src/tokenizer/sentencepiece_model.h), so that libsentencepiece can encode with it: BPE,
// identity normalization, dummy prefix, spaces kept, byte fallback when the byte tokens are there.
void put_varint(std::string& out, uint64_t value) {
  while (value >= 0x80) {
    out.push_back(static_cast<char>((value & 0x7F) | 0x80));
    value >>= 7;
  }
  out.push_back(static_cast<char>(value));
}
void put_key(std::string& out, int field, int wire_type) {
  put_varint(out, static_cast<uint64_t>(field) << 3 | static_cast<uint64_t>(wire_type));
}
void put_bytes(std::string& out, int field, const std::string& bytes) {
  put_key(out, field, 2);
  put_varint(out, bytes.size());
  out += bytes;
}
std::string sentencepiece_model_bytes(const VocabData& data) {
  std::string model;
  bool byte_fallback = false;
  for (size_t i = 0; i < data.tokens.size(); ++i) {
    std::string piece;
    put_bytes(piece, 1, data.tokens[i]);
    put_key(piece, 2, 5);
    char score[4];
    std::memcpy(score, &data.scores[i], 4);  // little-endian float, as the host stores it
    piece.append(score, 4);
    put_key(piece, 3, 0);
    put_varint(piece, static_cast<uint64_t>(data.types[i]));
    put_bytes(model, 1, piece);
    byte_fallback |= data.types[i] == VocabTokenType::byte;
  }
  std::string trainer;
  put_key(trainer, 3, 0);  // model_type BPE
  put_varint(trainer, 2);
  put_key(trainer, 4, 0);  // vocab_size
  put_varint(trainer, data.tokens.size());
  put_key(trainer, 35, 0);  // byte_fallback
  put_varint(trainer, byte_fallback ? 1 : 0);
  put_bytes(model, 2, trainer);
  std::string normalizer;
  put_bytes(normalizer, 1, "identity");
  put_key(normalizer, 3, 0);  // add_dummy_prefix
  put_varint(normalizer, 1);
  put_key(normalizer, 4, 0);  // remove_extra_whitespaces
  put_varint(normalizer, 0);
  put_key(normalizer, 5, 0);  // escape_whitespaces
  put_varint(normalizer, 1);
  put_bytes(model, 3, normalizer);
  return model;
}

// Checks Vocab::encode against libsentencepiece for a hand-made vocabulary on `texts` and on
// random strings over `alphabet`.
void check_hand_vocab_against_library(const VocabData& data, std::vector<std::string> texts,
                                      const std::vector<std::string>& alphabet) {
  const Vocab vocab = make_vocab(data, "hand-made vocabulary");
  const std::string bytes = sentencepiece_model_bytes(data);
  REQUIRE(tok::parse_sentencepiece_model(bytes, "hand-made model").pieces.size() ==
          data.tokens.size());
  const auto reference = data::sentencepiece_backend()->load_encoder(bytes, "hand-made model");
  core::Rng rng(99);
  for (int i = 0; i < 300; ++i) {
    std::string text;
    const int length = static_cast<int>(rng.below(12));
    for (int c = 0; c < length; ++c) text += alphabet[rng.below(alphabet.size())];
    texts.push_back(text);
  }
  for (const auto& text : texts) {
    INFO("text '" << text << "'");
    REQUIRE(vocab.encode(text) == reference->encode(text));
  }
}

std::vector<std::string> pieces_of(const Vocab& vocab, const std::vector<int32_t>& ids) {
  std::vector<std::string> pieces;
  pieces.reserve(ids.size());
  for (const int32_t id : ids) pieces.push_back(vocab.token(id).text);
  return pieces;
}

const std::string kSpace = "\xE2\x96\x81";  // U+2581

}  // namespace

// ---------------------------------------------------------------------------------------------
// Vocab against libsentencepiece

TEST_CASE("Vocab::encode equals libsentencepiece on a trained BPE tokenizer") {
  const auto& trained = trained_tokenizer();
  REQUIRE(trained.vocab.size() == kTrainedVocabSize);
  REQUIRE(trained.model.model_type == "bpe");
  std::vector<std::string> texts = probe_texts();
  for (const auto& text : random_texts(2000, 5)) texts.push_back(text);
  texts.insert(texts.end(), trained.lines.begin(), trained.lines.end());
  for (const auto& text : texts) {
    INFO("text '" << text << "'");
    const auto expected = trained.reference->encode(text);
    REQUIRE(trained.vocab.encode(text) == expected);
  }
}

TEST_CASE("Vocab::encode equals libsentencepiece on malformed UTF-8 and NUL bytes") {
  // SentencePiece's normalizer turns each byte that starts no well-formed character into U+FFFD.
  const auto& trained = trained_tokenizer();
  const std::vector<std::string> texts = {"\xFF",
                                          "a\xC3",
                                          "\xC3",
                                          "\x80 stray",
                                          "\xED\xA0\x80 surrogate",
                                          "\xC0\xAF overlong",
                                          "\xF4\x90\x80\x80 past U+10FFFF",
                                          "\xE4\xB8 truncated",
                                          std::string("a\0b", 3),
                                          "\xEF\xBF\xBD replacement"};
  for (const auto& text : texts) {
    INFO("text bytes " << text.size());
    REQUIRE(trained.vocab.encode(text) == trained.reference->encode(text));
  }
}

TEST_CASE("Vocab::encode equals libsentencepiece on a long text") {
  // The whole training text as one string (about 100 KB): the merge queue, not rescans, keeps
  // this fast.
  const auto& trained = trained_tokenizer();
  std::string text;
  for (const auto& line : trained.lines) text += line + "\n";
  const auto start = std::chrono::steady_clock::now();
  const auto ids = trained.vocab.encode(text);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  INFO("encoded " << text.size() << " bytes into " << ids.size() << " tokens in " << seconds
                  << " s");
  REQUIRE(ids == trained.reference->encode(text));
  REQUIRE(trained.vocab.decode(ids) == text);
  // Generous: a quadratic rescan of ~100 KB takes minutes; the queue takes milliseconds.
  constexpr double kLongTextSeconds = 5.0;
  REQUIRE(seconds < kLongTextSeconds);
}

TEST_CASE("Vocab::decode inverts encode and agrees with SentencePiece's decoding") {
  const auto& trained = trained_tokenizer();
  const Vocab& vocab = trained.vocab;
  std::vector<std::string> texts = probe_texts();
  for (const auto& text : random_texts(500, 6)) texts.push_back(text);
  for (const auto& text : texts) {
    INFO("text '" << text << "'");
    const auto ids = vocab.encode(text);
    REQUIRE(vocab.decode(ids) == text);
    REQUIRE(vocab.decode(ids) == tok::decode_sentencepiece(trained.model, ids));
    // Without stripping, the dummy-prefix space stays; piece() continues a stream the same way.
    std::string streamed;
    for (const int32_t id : ids) streamed += vocab.piece(id);
    if (!text.empty()) REQUIRE(streamed == " " + text);
    // Control tokens vanish wherever they are; the leading space is dropped after a BOS too.
    auto framed = ids;
    framed.insert(framed.begin(), vocab.bos_id());
    framed.push_back(vocab.eos_id());
    REQUIRE(vocab.decode(framed) == text);
    REQUIRE(vocab.decode(framed) == tok::decode_sentencepiece(trained.model, framed));
  }
  // <unk> reads " ⁇ " as in SentencePiece.
  const std::vector<int32_t> with_unknown = {vocab.bos_id(), vocab.unk_id()};
  REQUIRE(vocab.decode(with_unknown) == tok::decode_sentencepiece(trained.model, with_unknown));
  REQUIRE_THROWS_AS(vocab.decode({vocab.size()}), InputError);
  REQUIRE_THROWS_AS(vocab.decode({-1}), InputError);
}

TEST_CASE("Vocab pieces: byte tokens are raw bytes, U+2581 a space, control tokens empty") {
  const auto& trained = trained_tokenizer();
  const Vocab& vocab = trained.vocab;
  REQUIRE(vocab.piece(vocab.bos_id()).empty());
  REQUIRE(vocab.piece(vocab.eos_id()).empty());
  int byte_tokens = 0;
  for (int32_t id = 0; id < vocab.size(); ++id) {
    if (vocab.token(id).type == VocabTokenType::byte) {
      ++byte_tokens;
      char name[8];
      std::snprintf(name, sizeof(name), "<0x%02X>", static_cast<unsigned char>(vocab.piece(id)[0]));
      REQUIRE(vocab.piece(id).size() == 1);
      REQUIRE(vocab.token(id).text == name);
    }
  }
  REQUIRE(byte_tokens == 256);
  const auto ids = vocab.encode(" the");
  REQUIRE(pieces_of(vocab, ids) == std::vector<std::string>{kSpace, kSpace + "the"});
  REQUIRE(vocab.piece(ids[1]) == " the");
  REQUIRE_THROWS_AS(vocab.piece(vocab.size()), InputError);
}

TEST_CASE("Vocab prepends BOS only when asked") {
  const auto& trained = trained_tokenizer();
  const Vocab& vocab = trained.vocab;
  REQUIRE(vocab.add_bos());
  REQUIRE(vocab.bos_id() == 1);
  REQUIRE(vocab.eos_id() == 2);
  REQUIRE(vocab.unk_id() == 0);
  for (const auto& text : probe_texts()) {
    auto expected = vocab.encode(text);
    expected.insert(expected.begin(), vocab.bos_id());
    REQUIRE(encode_with_bos(vocab, text) == expected);
  }
  REQUIRE(encode_with_bos(vocab, "") == std::vector<int32_t>{vocab.bos_id()});
  REQUIRE(vocab.encode("").empty());
}

TEST_CASE("Vocab::encode equals libsentencepiece with user-defined and control pieces") {
  // Not what `edgedistill data` trains, but what a GGUF vocabulary may hold: SentencePiece takes a
  // user-defined piece whole wherever it occurs and never merges it further; a control piece's
  // spelling in the text is plain text.
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
  };
  const auto lines = synthetic_lines(600, 23);
  Lines iterator(lines);
  std::string bytes;
  REQUIRE(sentencepiece::SentencePieceTrainer::Train({{"model_type", "bpe"},
                                                      {"vocab_size", "500"},
                                                      {"byte_fallback", "true"},
                                                      {"normalization_rule_name", "identity"},
                                                      {"remove_extra_whitespaces", "false"},
                                                      {"split_digits", "true"},
                                                      {"user_defined_symbols", "<sep>,kalo,[[x]]"},
                                                      {"control_symbols", "<ctl>"},
                                                      {"num_threads", "1"},
                                                      {"minloglevel", "2"}},
                                                     &iterator, &bytes)
              .ok());
  const auto model = tok::parse_sentencepiece_model(bytes, "user-defined model");
  const Vocab vocab = make_vocab(vocab_data_of(model), "user-defined model");
  int user_defined = 0, control = 0;
  for (int32_t id = 0; id < vocab.size(); ++id) {
    user_defined += vocab.token(id).type == VocabTokenType::user_defined;
    control += vocab.token(id).type == VocabTokenType::control;
  }
  REQUIRE(user_defined == 3);
  REQUIRE(control == 3);  // <s>, </s>, <ctl>
  const auto reference = data::sentencepiece_backend()->load_encoder(bytes, "user-defined model");
  std::vector<std::string> texts = {
      "<sep>", "a<sep>b",         " <sep> ", "<sep><sep>", "<se",
      "kalo",  "kalokalo tamine", " kalo",   "xkaloy",     "[[x]]y [[x]] [[x",
      "<ctl>", "a <ctl> b",       "<s> </s>"};
  for (const auto& text : probe_texts()) texts.push_back(text);
  for (const auto& text : lines) texts.push_back(text);
  for (const auto& text : texts) {
    INFO("text '" << text << "'");
    REQUIRE(vocab.encode(text) == reference->encode(text));
  }
}

// ---------------------------------------------------------------------------------------------
// Vocab rules on hand-made vocabularies (expected pieces worked out by hand)

TEST_CASE("Vocab merges the highest-scoring pair first, the leftmost on ties") {
  // "▁aaa": the pairs (a, a) at 1-2 and 2-3 tie; the left one merges, and "aa" + "a" is no piece.
  const Vocab ties = make_vocab(hand_vocab({{kSpace, -1}, {"a", -2}, {"aa", -3}}, false), "ties");
  REQUIRE(pieces_of(ties, ties.encode("aaa")) == std::vector<std::string>{kSpace, "aa", "a"});
  // "▁abc" with "ab" scoring above "bc", then the reverse.
  const Vocab ab_first = make_vocab(
      hand_vocab({{kSpace, -1}, {"a", -2}, {"b", -2}, {"c", -2}, {"ab", -3}, {"bc", -4}}, false),
      "ab first");
  REQUIRE(pieces_of(ab_first, ab_first.encode("abc")) ==
          std::vector<std::string>{kSpace, "ab", "c"});
  const Vocab bc_first = make_vocab(
      hand_vocab({{kSpace, -1}, {"a", -2}, {"b", -2}, {"c", -2}, {"ab", -4}, {"bc", -3}}, false),
      "bc first");
  REQUIRE(pieces_of(bc_first, bc_first.encode("abc")) ==
          std::vector<std::string>{kSpace, "a", "bc"});
  // A merge made possible by an earlier one: ▁a, then ▁ab.
  const Vocab chain = make_vocab(
      hand_vocab({{kSpace, -1}, {"a", -2}, {"b", -2}, {kSpace + "a", -3}, {kSpace + "ab", -5}},
                 false),
      "chain");
  REQUIRE(pieces_of(chain, chain.encode("ab")) == std::vector<std::string>{kSpace + "ab"});
}

TEST_CASE("Vocab falls back to byte tokens, or to unk without them") {
  const Vocab bytes = make_vocab(hand_vocab({{kSpace, -1}, {"a", -2}}, true), "with bytes");
  // "é" is C3 A9 in UTF-8.
  REQUIRE(pieces_of(bytes, bytes.encode("a\xC3\xA9")) ==
          std::vector<std::string>{kSpace, "a", "<0xC3>", "<0xA9>"});
  REQUIRE(bytes.decode(bytes.encode("a\xC3\xA9")) == "a\xC3\xA9");
  const Vocab no_bytes = make_vocab(hand_vocab({{kSpace, -1}, {"a", -2}}, false), "without bytes");
  // One <unk> per run of characters that are no piece, as SentencePiece without byte_fallback.
  REQUIRE(no_bytes.encode("a\xC3\xA9x") == std::vector<int32_t>{3, 4, no_bytes.unk_id()});
  REQUIRE(no_bytes.encode("x a y") ==
          std::vector<int32_t>{3, no_bytes.unk_id(), 3, 4, 3, no_bytes.unk_id()});
}

TEST_CASE("hand-made vocabularies encode as libsentencepiece encodes them") {
  // Rules that trained vocabularies rarely or never exercise, each checked against the library on
  // a few chosen texts and on random strings over a small alphabet.
  const std::vector<std::string> alphabet = {"a", "b", "c", " ", "x", "#", "\xC3\xA9"};
  const auto user_defined = VocabTokenType::user_defined;
  SECTION("equal scores: the leftmost pair merges first") {
    check_hand_vocab_against_library(hand_vocab({{kSpace, -1},
                                                 {"a", -2},
                                                 {"b", -2},
                                                 {"c", -2},
                                                 {"aa", -3},
                                                 {"ab", -3},
                                                 {"ba", -3},
                                                 {"aaa", -4},
                                                 {kSpace + "a", -3}},
                                                true),
                                     {"aaa", "aaaa", "abab", "a a  aa", "baaab"}, alphabet);
  }
  SECTION("user-defined pieces are taken whole and never merge") {
    check_hand_vocab_against_library(hand_vocab({{kSpace, -1},
                                                 {"a", -2},
                                                 {"b", -2},
                                                 {"c", -2},
                                                 {"ab", 0, user_defined},
                                                 {"a#b", 0, user_defined},
                                                 {kSpace + "ab", 5},
                                                 {"abc", 5},
                                                 {"bc", -3},
                                                 {"ca", -3}},
                                                true),
                                     {"ab", "abc", "cab", "xaby", "aab", "abab", "a#b#ab"},
                                     alphabet);
  }
  SECTION("a merge into an unused piece is split back") {
    check_hand_vocab_against_library(hand_vocab({{kSpace, -1},
                                                 {"a", -2},
                                                 {"b", -2},
                                                 {"c", -2},
                                                 {"ab", -0.5f, VocabTokenType::unused},
                                                 {"abc", -3},
                                                 {kSpace + "a", -4}},
                                                true),
                                     {"ab", "abc", "abab", "cab", "ab abc"}, alphabet);
  }
  SECTION("a control piece's spelling is plain text") {
    check_hand_vocab_against_library(hand_vocab({{kSpace, -1},
                                                 {"a", -2},
                                                 {"b", -2},
                                                 {"<c>", 0, VocabTokenType::control},
                                                 {"<", -3},
                                                 {"c>", -3}},
                                                true),
                                     {"<c>", "a<c>b", "<c"}, alphabet);
    // A one-character control piece: libsentencepiece refuses the text ("all normalized
    // characters are not consumed"); we encode the character as plain text (its byte here).
    const Vocab vocab = make_vocab(
        hand_vocab({{kSpace, -1}, {"a", -2}, {"#", 0, VocabTokenType::control}}, true), "hash");
    REQUIRE(pieces_of(vocab, vocab.encode("a#")) ==
            std::vector<std::string>{kSpace, "a", "<0x23>"});
  }
  SECTION("without byte tokens, characters outside the vocabulary become <unk>") {
    check_hand_vocab_against_library(
        hand_vocab({{kSpace, -1}, {"a", -2}, {"b", -2}, {"ab", -3}}, false),
        {"xyz", "a \xC3\xA9 b",
         "\xF0\x9F\x98\x80"
         "ab",
         "x ab yz"},
        alphabet);
  }
}

TEST_CASE("Vocab rejects inconsistent data, naming where it came from") {
  const VocabData good = hand_vocab({{kSpace, -1}, {"a", -2}}, true);
  REQUIRE_NOTHROW(make_vocab(good, "good"));

  VocabData duplicate = good;
  duplicate.tokens.back() = kSpace;
  REQUIRE_THROWS_AS(make_vocab(duplicate, "dup vocab"), InputError);
  REQUIRE_THROWS_WITH(make_vocab(duplicate, "dup vocab"),
                      Catch::Contains("dup vocab") && Catch::Contains("unique"));

  REQUIRE_THROWS_WITH(make_vocab(VocabData{}, "empty"), Catch::Contains("no tokens"));

  VocabData bad_bos = good;
  bad_bos.bos_id = static_cast<int32_t>(good.tokens.size());
  REQUIRE_THROWS_WITH(make_vocab(bad_bos, "ids"), Catch::Contains("ids") && Catch::Contains("bos"));
  VocabData bad_unk = good;
  bad_unk.unk_id = 5;  // a byte token
  REQUIRE_THROWS_WITH(make_vocab(bad_unk, "ids"), Catch::Contains("ids") && Catch::Contains("unk"));

  VocabData bad_type = good;
  bad_type.types.back() = static_cast<VocabTokenType>(9);
  REQUIRE_THROWS_WITH(make_vocab(bad_type, "types"), Catch::Contains("type 9"));

  VocabData bad_byte = good;
  bad_byte.tokens[3] = "<0xzz>";
  REQUIRE_THROWS_WITH(make_vocab(bad_byte, "bytes"), Catch::Contains("<0xNN>"));
}

// ---------------------------------------------------------------------------------------------
// Vocab from GGUF metadata

TEST_CASE("Vocab::from_gguf reads the tokenizer keys and names a key of the wrong type") {
  const auto& trained = trained_tokenizer();
  const VocabData data = vocab_data_of(trained.model);
  std::vector<int32_t> types;
  for (const auto type : data.types) types.push_back(static_cast<int32_t>(type));
  auto tokenizer_keys = [&](io::GgufWriter& writer) {
    writer.set("general.architecture", io::GgufValue::string("llama"));
    writer.set("tokenizer.ggml.model", io::GgufValue::string("llama"));
    writer.set("tokenizer.ggml.tokens", io::GgufValue::strings(data.tokens));
    writer.set("tokenizer.ggml.scores", io::GgufValue::f32_array(data.scores));
    writer.set("tokenizer.ggml.token_type", io::GgufValue::i32_array(types));
  };
  test::TempDir dir;

  SECTION("the keys round-trip and encode as the trained tokenizer") {
    io::GgufWriter writer;
    tokenizer_keys(writer);
    writer.set("tokenizer.ggml.bos_token_id", io::GgufValue::u32(1));
    writer.set("tokenizer.ggml.eos_token_id", io::GgufValue::u32(2));
    writer.set("tokenizer.ggml.unknown_token_id", io::GgufValue::u32(0));
    writer.set("tokenizer.ggml.add_bos_token", io::GgufValue::boolean(false));
    writer.write(dir.path() / "vocab.gguf");
    const Vocab vocab = Vocab::from_gguf(io::GgufReader(dir.path() / "vocab.gguf"));
    REQUIRE(vocab.size() == trained.vocab.size());
    REQUIRE_FALSE(vocab.add_bos());
    for (int32_t id = 0; id < vocab.size(); ++id) {
      REQUIRE(vocab.token(id).text == trained.vocab.token(id).text);
      REQUIRE(vocab.token(id).score == trained.vocab.token(id).score);
      REQUIRE(vocab.token(id).type == trained.vocab.token(id).type);
    }
    for (const auto& text : probe_texts()) {
      REQUIRE(encode_with_bos(vocab, text) == encode_with_bos(trained.vocab, text));
    }
  }
  SECTION("absent special ids take the llama defaults") {
    io::GgufWriter writer;
    tokenizer_keys(writer);
    writer.write(dir.path() / "defaults.gguf");
    const Vocab vocab = Vocab::from_gguf(io::GgufReader(dir.path() / "defaults.gguf"));
    REQUIRE(vocab.bos_id() == 1);
    REQUIRE(vocab.eos_id() == 2);
    REQUIRE(vocab.unk_id() == 0);
    REQUIRE(vocab.add_bos());
  }
  SECTION("a wrong type is a FileError naming the key") {
    io::GgufWriter writer;
    tokenizer_keys(writer);
    writer.set("tokenizer.ggml.bos_token_id", io::GgufValue::i32(1));  // must be UINT32
    writer.write(dir.path() / "wrong.gguf");
    const io::GgufReader file(dir.path() / "wrong.gguf");
    REQUIRE_THROWS_AS(Vocab::from_gguf(file), FileError);
    REQUIRE_THROWS_WITH(Vocab::from_gguf(file), Catch::Contains("tokenizer.ggml.bos_token_id"));
  }
  SECTION("scores stored as another element type are a FileError naming the key") {
    io::GgufWriter writer;
    writer.set("tokenizer.ggml.model", io::GgufValue::string("llama"));
    writer.set("tokenizer.ggml.tokens", io::GgufValue::strings(data.tokens));
    writer.set("tokenizer.ggml.scores", io::GgufValue::i32_array(types));
    writer.write(dir.path() / "scores.gguf");
    const io::GgufReader file(dir.path() / "scores.gguf");
    REQUIRE_THROWS_AS(Vocab::from_gguf(file), FileError);
    REQUIRE_THROWS_WITH(Vocab::from_gguf(file), Catch::Contains("tokenizer.ggml.scores"));
  }
  SECTION("a tokenizer model other than llama and gpt2 is refused, naming the key") {
    io::GgufWriter writer;
    writer.set("tokenizer.ggml.model", io::GgufValue::string("t5"));
    writer.set("tokenizer.ggml.tokens", io::GgufValue::strings(data.tokens));
    writer.write(dir.path() / "t5.gguf");
    const io::GgufReader file(dir.path() / "t5.gguf");
    REQUIRE_THROWS_AS(Vocab::from_gguf(file), InputError);
    REQUIRE_THROWS_WITH(Vocab::from_gguf(file),
                        Catch::Contains("tokenizer.ggml.model") && Catch::Contains("t5"));
  }
  SECTION("a gpt2 vocabulary without merges or with an unknown split is refused, naming the key") {
    io::GgufWriter writer;
    writer.set("tokenizer.ggml.model", io::GgufValue::string("gpt2"));
    writer.set("tokenizer.ggml.pre", io::GgufValue::string("gpt-2"));
    writer.set("tokenizer.ggml.tokens", io::GgufValue::strings({"a", "b", "ab"}));
    writer.write(dir.path() / "gpt2.gguf");
    REQUIRE_THROWS_WITH(Vocab::from_gguf(io::GgufReader(dir.path() / "gpt2.gguf")),
                        Catch::Contains("tokenizer.ggml.merges"));
    io::GgufWriter unknown;
    unknown.set("tokenizer.ggml.model", io::GgufValue::string("gpt2"));
    unknown.set("tokenizer.ggml.pre", io::GgufValue::string("mystery-split"));
    unknown.set("tokenizer.ggml.tokens", io::GgufValue::strings({"a", "b", "ab"}));
    unknown.set("tokenizer.ggml.merges", io::GgufValue::strings({"a b"}));
    unknown.write(dir.path() / "unknown.gguf");
    REQUIRE_THROWS_WITH(Vocab::from_gguf(io::GgufReader(dir.path() / "unknown.gguf")),
                        Catch::Contains("tokenizer.ggml.pre") && Catch::Contains("mystery-split"));
  }
  SECTION("duplicate tokens and a bos id outside the vocabulary are FileErrors") {
    io::GgufWriter writer;
    auto tokens = data.tokens;
    tokens.back() = tokens[3];
    writer.set("tokenizer.ggml.model", io::GgufValue::string("llama"));
    writer.set("tokenizer.ggml.tokens", io::GgufValue::strings(tokens));
    writer.write(dir.path() / "duplicate.gguf");
    REQUIRE_THROWS_AS(Vocab::from_gguf(io::GgufReader(dir.path() / "duplicate.gguf")), FileError);

    io::GgufWriter outside;
    tokenizer_keys(outside);
    outside.set("tokenizer.ggml.bos_token_id",
                io::GgufValue::u32(static_cast<uint32_t>(data.tokens.size())));
    outside.write(dir.path() / "outside.gguf");
    REQUIRE_THROWS_WITH(Vocab::from_gguf(io::GgufReader(dir.path() / "outside.gguf")),
                        Catch::Contains("tokenizer.ggml.bos_token_id"));
  }
}

// ---------------------------------------------------------------------------------------------
// Sampler

namespace {

// Draws per distribution check. With 4 standard errors per token, a correct sampler fails one
// check with probability about 6e-5.
constexpr int kDraws = 100000;
constexpr double kStandardErrors = 4.0;

// What the sampler should draw from, computed independently in long double: the softmax of all
// logits / T, sorted by probability (lowest id first on ties), the top_k kept and renormalised,
// then the nucleus prefix reaching top_p, renormalised.
std::vector<double> expected_distribution(const std::vector<float>& logits,
                                          const runtime::SamplerOptions& options) {
  const size_t n = logits.size();
  std::vector<long double> p(n);
  long double max_logit = *std::max_element(logits.begin(), logits.end());
  long double sum = 0;
  for (size_t i = 0; i < n; ++i) {
    p[i] = std::exp((logits[i] - max_logit) / static_cast<long double>(options.temperature));
    sum += p[i];
  }
  for (auto& x : p) x /= sum;
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return p[a] > p[b]; });
  size_t kept = options.top_k > 0 ? std::min(n, static_cast<size_t>(options.top_k)) : n;
  long double kept_mass = 0;
  for (size_t r = 0; r < kept; ++r) kept_mass += p[order[r]];
  if (options.top_p < 1.0f) {
    long double prefix = 0;
    size_t r = 0;
    while (r < kept) {
      prefix += p[order[r++]] / kept_mass;
      if (prefix >= options.top_p) break;
    }
    kept = r;
  }
  long double mass = 0;
  for (size_t r = 0; r < kept; ++r) mass += p[order[r]];
  std::vector<double> expected(n, 0.0);
  for (size_t r = 0; r < kept; ++r) {
    expected[order[r]] = static_cast<double>(p[order[r]] / mass);
  }
  return expected;
}

void check_frequencies(const std::vector<float>& logits, const runtime::SamplerOptions& options) {
  INFO("T " << options.temperature << " top_k " << options.top_k << " top_p " << options.top_p);
  runtime::Sampler sampler(options);
  std::vector<int> counts(logits.size(), 0);
  for (int i = 0; i < kDraws; ++i) {
    ++counts[static_cast<size_t>(
        sampler.sample(logits.data(), static_cast<int32_t>(logits.size())))];
  }
  const auto expected = expected_distribution(logits, options);
  for (size_t id = 0; id < logits.size(); ++id) {
    const double p = expected[id];
    const double frequency = static_cast<double>(counts[id]) / kDraws;
    INFO("token " << id << " expected " << p << " drawn " << frequency);
    if (p == 0.0) {
      REQUIRE(counts[id] == 0);
    } else {
      REQUIRE(std::abs(frequency - p) <= kStandardErrors * std::sqrt(p * (1 - p) / kDraws));
    }
  }
}

}  // namespace

TEST_CASE("greedy sampling picks the largest logit, the lowest id on ties") {
  const std::vector<float> logits = {0.1f, 2.0f, -1.0f, 2.0f, 1.9f};
  for (const float temperature : {0.0f, -1.0f}) {
    runtime::SamplerOptions options;
    options.temperature = temperature;
    runtime::Sampler sampler(options);
    REQUIRE(sampler.sample(logits.data(), 5) == 1);
    REQUIRE(sampler.sample(logits.data() + 2, 3) == 1);  // {-1, 2, 1.9}
  }
  const std::vector<float> all_equal(7, 0.5f);
  runtime::Sampler greedy({});
  REQUIRE(greedy.sample(all_equal.data(), 7) == 0);
  const float lowest = -std::numeric_limits<float>::infinity();
  const std::vector<float> masked = {lowest, lowest, -3.0f};
  REQUIRE(greedy.sample(masked.data(), 3) == 2);
}

TEST_CASE("temperature sampling repeats exactly for a seed") {
  core::Rng rng(3);
  std::vector<float> logits(300);
  for (auto& l : logits) l = static_cast<float>(rng.uniform() * 6.0 - 3.0);
  runtime::SamplerOptions options;
  options.temperature = 0.9f;
  options.top_k = 50;
  options.top_p = 0.9f;
  options.seed = 77;
  runtime::Sampler first(options), second(options);
  options.seed = 78;
  runtime::Sampler other(options);
  int differences = 0;
  std::set<int32_t> seen;
  for (int i = 0; i < 500; ++i) {
    const int32_t a = first.sample(logits.data(), 300);
    REQUIRE(a == second.sample(logits.data(), 300));
    differences += a != other.sample(logits.data(), 300);
    seen.insert(a);
  }
  REQUIRE(differences > 0);
  REQUIRE(seen.size() > 1);
}

TEST_CASE("top_k = 1 and a tiny top_p are greedy") {
  core::Rng rng(11);
  for (int trial = 0; trial < 200; ++trial) {
    const int32_t vocab = 1 + static_cast<int32_t>(rng.below(100));
    std::vector<float> logits(static_cast<size_t>(vocab));
    // Coarse values so that ties for the maximum happen often.
    for (auto& l : logits) l = static_cast<float>(rng.below(5));
    runtime::Sampler greedy({});
    const int32_t expected = greedy.sample(logits.data(), vocab);
    runtime::SamplerOptions top_k_1;
    top_k_1.temperature = 1.5f;
    top_k_1.top_k = 1;
    top_k_1.top_p = 1.0f;
    top_k_1.seed = static_cast<uint64_t>(trial);
    runtime::SamplerOptions tiny_p;
    tiny_p.temperature = 1.5f;
    tiny_p.top_k = 0;
    tiny_p.top_p = 1e-6f;
    tiny_p.seed = static_cast<uint64_t>(trial);
    runtime::Sampler k1(top_k_1), p0(tiny_p);
    for (int draw = 0; draw < 5; ++draw) {
      REQUIRE(k1.sample(logits.data(), vocab) == expected);
      REQUIRE(p0.sample(logits.data(), vocab) == expected);
    }
  }
}

TEST_CASE("temperature scales the logits: two tokens against the analytic probability") {
  // p(1) = 1 / (1 + exp(-(l1 - l0) / T)) = 1 / (1 + exp(-0.5)) for logits {0, 1} at T = 2.
  const std::vector<float> logits = {0.0f, 1.0f};
  runtime::SamplerOptions options;
  options.temperature = 2.0f;
  options.top_k = 0;
  options.top_p = 1.0f;
  runtime::Sampler sampler(options);
  int ones = 0;
  for (int i = 0; i < kDraws; ++i) ones += sampler.sample(logits.data(), 2);
  const double p = 1.0 / (1.0 + std::exp(-0.5));
  const double frequency = static_cast<double>(ones) / kDraws;
  INFO("expected " << p << " drawn " << frequency);
  REQUIRE(std::abs(frequency - p) <= kStandardErrors * std::sqrt(p * (1 - p) / kDraws));
}

TEST_CASE("sampled frequencies match softmax(logits / T) cut by top-k and top-p") {
  const std::vector<float> logits = {1.0f, 2.0f, 0.5f, 2.0f, -1.0f, 0.0f, 1.5f, 3.0f};
  struct Case {
    float temperature;
    int top_k;
    float top_p;
  };
  const Case cases[] = {{0.7f, 0, 1.0f},  {1.3f, 4, 1.0f}, {1.0f, 0, 0.8f},  {0.9f, 5, 0.7f},
                        {2.0f, 3, 0.95f}, {1.0f, 8, 1.0f}, {1.0f, 100, 0.5f}};
  uint64_t seed = 100;
  for (const auto& c : cases) {
    runtime::SamplerOptions options;
    options.temperature = c.temperature;
    options.top_k = c.top_k;
    options.top_p = c.top_p;
    options.seed = seed++;
    check_frequencies(logits, options);
  }
}

TEST_CASE("the sampler refuses bad options and NaN logits") {
  runtime::SamplerOptions options;
  options.top_k = -1;
  REQUIRE_THROWS_AS(runtime::Sampler(options), InputError);
  options = {};
  options.top_p = 1.5f;
  REQUIRE_THROWS_WITH(runtime::Sampler(options), Catch::Contains("top_p"));
  options = {};
  options.temperature = std::numeric_limits<float>::quiet_NaN();
  REQUIRE_THROWS_WITH(runtime::Sampler(options), Catch::Contains("temperature"));

  const std::vector<float> logits = {0.0f, std::numeric_limits<float>::quiet_NaN()};
  runtime::Sampler greedy({});
  REQUIRE_THROWS_AS(greedy.sample(logits.data(), 2), RunError);
  options = {};
  options.temperature = 1.0f;
  runtime::Sampler sampled(options);
  REQUIRE_THROWS_WITH(sampled.sample(logits.data(), 2), Catch::Contains("NaN"));
}
