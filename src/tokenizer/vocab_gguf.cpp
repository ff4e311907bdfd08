// GGUF tokenizer.ggml.* into a tok::Vocab and back, following llama.cpp's loader
// (llama-vocab.cpp) for what each key means and its default when absent.
//
//   tokenizer.ggml.model        "llama": SentencePiece-style BPE by score over U+2581-escaped
//                               text; "gpt2": byte-level BPE by merge rank
//   tokenizer.ggml.tokens       STRING array, the vocabulary (required)
//   tokenizer.ggml.scores       FLOAT32 array (llama; optional, 0)
//   tokenizer.ggml.token_type   INT32 array (optional, normal)
//   tokenizer.ggml.merges       STRING array of "left right" (gpt2, required)
//   tokenizer.ggml.pre          STRING, the split (gpt2): see kPreVariants below
//   tokenizer.ggml.{bos,eos,unknown,padding}_token_id   UINT32
//   tokenizer.ggml.add_bos_token, add_eos_token, add_space_prefix   BOOL
#include <algorithm>

#include "core/error.h"
#include "io/gguf.h"
#include "tokenizer/vocab_impl.h"

namespace edgedistill::tok {
namespace {

constexpr const char* kModelKey = "tokenizer.ggml.model";
constexpr const char* kTokensKey = "tokenizer.ggml.tokens";
constexpr const char* kScoresKey = "tokenizer.ggml.scores";
constexpr const char* kTokenTypeKey = "tokenizer.ggml.token_type";
constexpr const char* kMergesKey = "tokenizer.ggml.merges";
constexpr const char* kPreKey = "tokenizer.ggml.pre";
constexpr const char* kBosKey = "tokenizer.ggml.bos_token_id";
constexpr const char* kEosKey = "tokenizer.ggml.eos_token_id";
constexpr const char* kUnknownKey = "tokenizer.ggml.unknown_token_id";
constexpr const char* kPaddingKey = "tokenizer.ggml.padding_token_id";
constexpr const char* kAddBosKey = "tokenizer.ggml.add_bos_token";
constexpr const char* kAddEosKey = "tokenizer.ggml.add_eos_token";
constexpr const char* kAddSpacePrefixKey = "tokenizer.ggml.add_space_prefix";

// The tokenizer.ggml.pre values llama.cpp maps to the splits implemented here, with its
// ignore_merges and add_bos defaults for them (llama-vocab.cpp, llama_vocab::impl::load).
struct PreVariant {
  const char* name;
  std::vector<PreTokenizerStep::Kind> steps;  // digits and/or split
  SplitPattern pattern;
  bool ignore_merges;
  bool add_bos;
};

const std::vector<PreVariant>& pre_variants() {
  using Kind = PreTokenizerStep::Kind;
  static const std::vector<PreVariant> variants = {
      {"gpt-2", {Kind::split}, SplitPattern::gpt2, false, false},
      {"phi-2", {Kind::split}, SplitPattern::gpt2, false, false},
      {"mpt", {Kind::split}, SplitPattern::gpt2, false, false},
      {"olmo", {Kind::split}, SplitPattern::gpt2, false, false},
      {"llama-bpe", {Kind::split}, SplitPattern::llama3, true, true},
      {"llama3", {Kind::split}, SplitPattern::llama3, true, true},
      {"llama-v3", {Kind::split}, SplitPattern::llama3, true, true},
      {"falcon3", {Kind::split}, SplitPattern::llama3, true, true},
      {"dbrx", {Kind::split}, SplitPattern::llama3, false, false},
      {"smaug-bpe", {Kind::split}, SplitPattern::llama3, false, false},
      {"qwen2", {Kind::split}, SplitPattern::qwen2, false, false},
      {"deepseek-r1-qwen", {Kind::split}, SplitPattern::qwen2, false, false},
      {"stablelm2", {Kind::split}, SplitPattern::qwen2, false, false},
      {"smollm", {Kind::digits, Kind::split}, SplitPattern::gpt2, false, false},
      {"starcoder", {Kind::digits, Kind::split}, SplitPattern::gpt2, false, false},
      {"refact", {Kind::digits, Kind::split}, SplitPattern::gpt2, false, false},
      {"command-r", {Kind::digits, Kind::split}, SplitPattern::gpt2, false, false},
  };
  return variants;
}

std::string known_pre_names() {
  std::string names;
  for (const PreVariant& variant : pre_variants()) {
    names += (names.empty() ? "" : ", ") + std::string(variant.name);
  }
  return names;
}

}  // namespace

Vocab Vocab::from_gguf(const io::GgufReader& file) {
  const std::string origin = str("GGUF file ", file.path().string());
  auto impl = std::make_unique<Impl>();
  Impl& v = *impl;
  v.source = VocabSource::gguf;
  v.origin = file.path().string();
  // llama.cpp's tools differ (llama-cli parses special tokens in prompts, llama-perplexity does
  // not); the text a GGUF is judged on is read as plain text.
  v.parse_special_default = false;

  const std::string& model = file.get_string(kModelKey);
  if (model != "llama" && model != "gpt2") {
    throw InputError(str(origin, ": ", kModelKey, " is '", model,
                         "'; edgedistill reads 'llama' (SentencePiece) and 'gpt2' (byte-level BPE) "
                         "vocabularies"));
  }
  const auto& tokens = file.require_array(kTokensKey, io::GgufValueType::string).elements;
  const size_t n = tokens.size();
  if (n == 0) throw FileError(str(origin, ": ", kTokensKey, " is empty"));
  v.tokens.resize(n);
  for (size_t i = 0; i < n; ++i) v.tokens[i].text = tokens[i].text;
  // Damaged vocabularies are the file's fault: FileError rather than InputError.
  auto file_error = [&](const InputError& e) { return FileError(str(origin, ": ", e.what())); };
  auto per_token = [&](const char* key,
                       io::GgufValueType type) -> const std::vector<io::GgufValue>* {
    if (file.find(key) == nullptr) return nullptr;
    const auto& values = file.require_array(key, type).elements;
    if (values.size() != n) {
      throw FileError(str(origin, ": ", key, " has ", values.size(), " entries but ", kTokensKey,
                          " has ", n, "; the file is damaged"));
    }
    return &values;
  };
  if (const auto* scores = per_token(kScoresKey, io::GgufValueType::float32)) {
    for (size_t i = 0; i < n; ++i) v.tokens[i].score = static_cast<float>((*scores)[i].number);
  }
  if (const auto* types = per_token(kTokenTypeKey, io::GgufValueType::int32)) {
    for (size_t i = 0; i < n; ++i) {
      const auto type = static_cast<int32_t>((*types)[i].integer);
      if (type < 1 || type > 6) {
        throw FileError(str(origin, ": ", kTokenTypeKey, "[", i, "] is ", type,
                            "; expected 1 (normal) to 6 (byte)"));
      }
      v.tokens[i].type = static_cast<TokenType>(type);
    }
  }
  try {
    v.index_tokens();
  } catch (const InputError& e) {
    throw file_error(e);
  }

  auto special_id = [&](const char* key, int32_t absent) {
    if (file.find(key) == nullptr) return absent;
    const uint32_t id = file.get_u32(key);
    // llama.cpp treats an out-of-range id as absent only for padding; anything else is damage.
    if (id >= n) {
      throw FileError(
          str(origin, ": ", key, " is ", id, ", outside the vocabulary of ", n, " tokens"));
    }
    return static_cast<int32_t>(id);
  };
  auto flag = [&](const char* key, bool absent) {
    return file.find(key) == nullptr ? absent : file.get_bool(key);
  };

  if (model == "llama") {
    LlamaVocabData data;
    data.tokens = std::move(v.tokens);
    data.unk_id = special_id(kUnknownKey, 0);
    data.bos_id = special_id(kBosKey, 1);
    data.eos_id = special_id(kEosKey, 2);
    data.pad_id = special_id(kPaddingKey, -1);
    data.add_bos = flag(kAddBosKey, true);
    data.add_eos = flag(kAddEosKey, false);
    data.add_space_prefix = flag(kAddSpacePrefixKey, true);
    Vocab vocab = from_llama_vocab(std::move(data), file.path().string());
    vocab.impl_->origin = file.path().string();
    return vocab;
  } else {
    v.algorithm = "byte-level-bpe";
    v.invalid_utf8 = InvalidUtf8Rule::llama_cpp_lenient;
    // Special tokens found in the raw text: control and unknown tokens when special tokens are
    // parsed, user-defined tokens always (llama.cpp's tokenizer_st_partition).
    std::vector<AddedToken> specials;
    for (size_t id = 0; id < n; ++id) {
      const TokenType type = v.tokens[id].type;
      if (type == TokenType::control || type == TokenType::user_defined ||
          type == TokenType::unknown) {
        AddedToken token;
        token.content = v.tokens[id].text;
        token.id = static_cast<int32_t>(id);
        token.special = type != TokenType::user_defined;
        specials.push_back(token);
      }
    }
    v.raw_tokens = AddedTokenMatcher(specials, false);
    const std::string pre = file.find(kPreKey) == nullptr ? "" : file.get_string(kPreKey);
    const auto& variants = pre_variants();
    const auto variant = std::find_if(variants.begin(), variants.end(),
                                      [&](const PreVariant& p) { return pre == p.name; });
    if (variant == variants.end()) {
      throw InputError(str(origin, ": ", kPreKey, " is '", pre,
                           "', a split edgedistill does not implement (known: ", known_pre_names(),
                           "); refusing rather than tokenizing differently"));
    }
    v.gguf_pre = pre;
    for (const PreTokenizerStep::Kind kind : variant->steps) {
      PreTokenizerStep step{};
      step.kind = kind;
      step.pattern = variant->pattern;
      step.individual_digits = true;
      v.pre_tokenizers.push_back(step);
    }
    v.unk = special_id(kUnknownKey, -1);
    v.bos = special_id(kBosKey, -1);
    v.eos = special_id(kEosKey, -1);
    v.pad = special_id(kPaddingKey, -1);
    v.add_bos = flag(kAddBosKey, variant->add_bos);
    v.add_eos = flag(kAddEosKey, false);

    BpeOptions options;
    options.byte_level = true;
    options.ignore_merges = variant->ignore_merges;
    std::vector<std::pair<std::string, int32_t>> bpe_vocab;
    bpe_vocab.reserve(n);
    v.surface.assign(n, std::string());
    std::string raw;
    for (size_t id = 0; id < n; ++id) {
      const VocabToken& token = v.tokens[id];
      if (token.type == TokenType::normal || token.type == TokenType::byte) {
        if (!byte_level_bytes(token.text, raw)) {
          throw FileError(str(origin, ": token ", id, " '", token.text,
                              "' is not spelled in the byte-level alphabet of a gpt2 vocabulary"));
        }
        bpe_vocab.emplace_back(raw, static_cast<int32_t>(id));
        v.surface[id] = raw;
      } else if (token.type != TokenType::control && token.type != TokenType::unused) {
        v.surface[id] = token.text;  // user-defined and unknown tokens read as they are spelled
      }
    }
    const auto& merge_lines = file.require_array(kMergesKey, io::GgufValueType::string).elements;
    std::unordered_map<std::string_view, int32_t> spelled_ids;
    spelled_ids.reserve(n);
    for (const auto& [text, id] : bpe_vocab)
      spelled_ids.emplace(v.tokens[static_cast<size_t>(id)].text, id);
    std::vector<std::pair<int32_t, int32_t>> merges;
    merges.reserve(merge_lines.size());
    for (size_t rank = 0; rank < merge_lines.size(); ++rank) {
      const std::string& line = merge_lines[rank].text;
      const size_t space = line.find(' ', 1);
      const auto left = spelled_ids.find(std::string_view(line).substr(0, space));
      const auto right = space == std::string::npos
                             ? spelled_ids.end()
                             : spelled_ids.find(std::string_view(line).substr(space + 1));
      if (left == spelled_ids.end() || right == spelled_ids.end()) {
        throw FileError(str(origin, ": ", kMergesKey, "[", rank, "] '", line,
                            "' is not two tokens of the vocabulary separated by a space"));
      }
      merges.emplace_back(left->second, right->second);
    }
    v.bpe = std::make_unique<BpeModel>(bpe_vocab, merges, options, origin);
    v.round_trips = true;
  }
  v.check_special_ids();
  return Vocab(std::move(impl));
}

std::string Vocab::gguf_model(std::string* why_not) const {
  const Impl& v = *impl_;
  auto refuse = [&](const std::string& reason) {
    if (why_not != nullptr) *why_not = reason;
    return std::string();
  };
  if (v.sentencepiece) return "llama";
  if (v.bpe && v.bpe->options().byte_level) {
    if (v.gguf_pre.empty()) {
      return refuse(
          "its normalizer and pre-tokenizers match none of llama.cpp's tokenizer.ggml.pre splits "
          "(gpt-2, llama-bpe, qwen2, smollm)");
    }
    return "gpt2";
  }
  return refuse(
      "a BPE vocabulary that is not byte-level has no GGUF form llama.cpp reads the same way; use "
      "the model's tokenizer.model instead");
}

void Vocab::write_gguf(io::GgufWriter& writer) const {
  using io::GgufValue;
  std::string why_not;
  const std::string model = gguf_model(&why_not);
  if (model.empty()) {
    throw InputError(
        str("the vocabulary of ", impl_->origin, " cannot be written to GGUF: ", why_not));
  }
  const Impl& v = *impl_;
  const size_t n = v.tokens.size();
  std::vector<std::string> texts(n);
  std::vector<float> scores(n);
  std::vector<int32_t> types(n);
  for (size_t i = 0; i < n; ++i) {
    texts[i] = v.tokens[i].text;
    scores[i] = v.tokens[i].score;
    types[i] = static_cast<int32_t>(v.tokens[i].type);
  }
  writer.set(kModelKey, GgufValue::string(model));
  if (model == "gpt2") writer.set(kPreKey, GgufValue::string(v.gguf_pre));
  writer.set(kTokensKey, GgufValue::strings(texts));
  if (model == "llama") writer.set(kScoresKey, GgufValue::f32_array(scores));
  writer.set(kTokenTypeKey, GgufValue::i32_array(types));
  if (model == "gpt2") {
    std::vector<std::string> merges;
    merges.reserve(v.bpe->merges().size());
    for (const auto& [left, right] : v.bpe->merges()) {
      merges.push_back(v.tokens[static_cast<size_t>(left)].text + " " +
                       v.tokens[static_cast<size_t>(right)].text);
    }
    writer.set(kMergesKey, GgufValue::strings(merges));
  }
  const std::pair<const char*, int32_t> ids[] = {
      {kBosKey, v.bos}, {kEosKey, v.eos}, {kUnknownKey, v.unk}, {kPaddingKey, v.pad}};
  for (const auto& [key, id] : ids) {
    if (id >= 0) writer.set(key, GgufValue::u32(static_cast<uint32_t>(id)));
  }
  writer.set(kAddBosKey, GgufValue::boolean(v.add_bos));
  writer.set(kAddEosKey, GgufValue::boolean(v.add_eos));
  if (model == "llama" && !v.add_space_prefix) {
    writer.set(kAddSpacePrefixKey, GgufValue::boolean(false));
  }
}

}  // namespace edgedistill::tok
