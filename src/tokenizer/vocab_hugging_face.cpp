// tokenizer.json (the serialization of Hugging Face tokenizers' Tokenizer) into a tok::Vocab.
//
// What is read (anything else in these sections is refused by name, so a tokenization is never
// silently different):
//   added_tokens     id, content, special, single_word, lstrip, rstrip, normalized
//   normalizer       null, NFC, NFD, NFKC, NFKD, Prepend, Replace (string pattern), Strip,
//                    Sequence of these
//   pre_tokenizer    null, ByteLevel (add_prefix_space, use_regex), Split (a known expression,
//                    behavior Isolated, not inverted), Digits, Metaspace, Sequence of these
//   model            BPE: vocab, merges ("a b" strings or [a, b] pairs), unk_token, fuse_unk,
//                    byte_fallback, ignore_merges (no dropout, no subword prefix or suffix)
//   post_processor   TemplateProcessing, RobertaProcessing, BertProcessing, ByteLevel, Sequence:
//                    only which special tokens a single sequence starts and ends with
//   decoder          ByteLevel, Metaspace, Replace (string pattern), ByteFallback, Fuse, Strip,
//                    Sequence
// tokenizer_config.json (optional) names bos_token, eos_token, unk_token, pad_token and
// add_bos_token / add_eos_token when the post-processor does not say.
#include <algorithm>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tokenizer/vocab_impl.h"

namespace edgedistill::tok {
namespace {

using nlohmann::json;

[[noreturn]] void unsupported(const std::string& origin, const std::string& what) {
  throw InputError(str(origin, ": ", what,
                       " is not implemented by edgedistill's tokenizer (docs/tokenizers.md lists "
                       "what is); refusing rather than tokenizing differently"));
}

[[noreturn]] void malformed(const std::string& origin, const std::string& what) {
  throw FileError(str(origin, ": ", what, "; the tokenizer.json is damaged or not one"));
}

// A JSON member of `object` with the expected type, or the default when absent or null.
template <class T>
T member(const json& object, const char* key, const T& fallback, const std::string& origin,
         const std::string& where) {
  const auto it = object.find(key);
  if (it == object.end() || it->is_null()) return fallback;
  try {
    return it->get<T>();
  } catch (const json::exception&) {
    malformed(origin, str(where, ".", key, " has the wrong type (", it->type_name(), ")"));
  }
}

std::string type_of(const json& object, const std::string& origin, const std::string& where) {
  if (!object.is_object()) malformed(origin, str(where, " is not an object"));
  const std::string type = member<std::string>(object, "type", "", origin, where);
  if (type.empty()) malformed(origin, str(where, " has no \"type\""));
  return type;
}

// A Replace/Split "pattern": {"String": s} is read; {"Regex": r} only as `regex` when wanted.
std::string string_pattern(const json& pattern, const std::string& origin, const std::string& where,
                           std::string* regex = nullptr) {
  if (pattern.is_object() && pattern.contains("String") && pattern["String"].is_string()) {
    return pattern["String"].get<std::string>();
  }
  if (pattern.is_object() && pattern.contains("Regex") && pattern["Regex"].is_string()) {
    if (regex != nullptr) {
      *regex = pattern["Regex"].get<std::string>();
      return "";
    }
    unsupported(origin, str(where, " with the regular expression '",
                            pattern["Regex"].get<std::string>(), "'"));
  }
  malformed(origin, str(where, ".pattern is neither {\"String\": ...} nor {\"Regex\": ...}"));
}

void read_normalizer(const json& node, const std::string& origin, const std::string& where,
                     std::vector<NormalizerStep>& steps) {
  if (node.is_null()) return;
  const std::string type = type_of(node, origin, where);
  using Kind = NormalizerStep::Kind;
  if (type == "Sequence") {
    const auto it = node.find("normalizers");
    if (it == node.end() || !it->is_array()) malformed(origin, where + ".normalizers is missing");
    for (size_t i = 0; i < it->size(); ++i) {
      read_normalizer((*it)[i], origin, str(where, ".normalizers[", i, "]"), steps);
    }
  } else if (type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD") {
    steps.push_back({type == "NFC"    ? Kind::nfc
                     : type == "NFD"  ? Kind::nfd
                     : type == "NFKC" ? Kind::nfkc
                                      : Kind::nfkd,
                     "", ""});
  } else if (type == "Prepend") {
    steps.push_back({Kind::prepend, member<std::string>(node, "prepend", "", origin, where), ""});
  } else if (type == "Replace") {
    const std::string pattern = string_pattern(node.value("pattern", json()), origin, where);
    steps.push_back(
        {Kind::replace, pattern, member<std::string>(node, "content", "", origin, where)});
  } else if (type == "Strip") {
    NormalizerStep step{Kind::strip, "", ""};
    step.left = member<bool>(node, "strip_left", false, origin, where);
    step.right = member<bool>(node, "strip_right", false, origin, where);
    steps.push_back(step);
  } else {
    unsupported(origin, str("the normalizer ", type, " (", where, ")"));
  }
}

void read_pre_tokenizer(const json& node, const std::string& origin, const std::string& where,
                        std::vector<PreTokenizerStep>& steps) {
  if (node.is_null()) return;
  const std::string type = type_of(node, origin, where);
  using Kind = PreTokenizerStep::Kind;
  if (type == "Sequence") {
    const auto it = node.find("pretokenizers");
    if (it == node.end() || !it->is_array()) malformed(origin, where + ".pretokenizers is missing");
    for (size_t i = 0; i < it->size(); ++i) {
      read_pre_tokenizer((*it)[i], origin, str(where, ".pretokenizers[", i, "]"), steps);
    }
    return;
  }
  PreTokenizerStep step{};
  if (type == "ByteLevel") {
    step.kind = Kind::byte_level;
    step.add_prefix_space = member<bool>(node, "add_prefix_space", true, origin, where);
    step.use_regex = member<bool>(node, "use_regex", true, origin, where);
    step.pattern = SplitPattern::gpt2;
  } else if (type == "Split") {
    step.kind = Kind::split;
    std::string regex;
    const std::string text = string_pattern(node.value("pattern", json()), origin, where, &regex);
    if (regex.empty()) unsupported(origin, str(where, ": Split on the string '", text, "'"));
    if (!split_pattern_of_regex(regex, step.pattern)) {
      unsupported(origin, str(where, ": the split expression '", regex,
                              "' (known: the GPT-2, Llama 3 and Qwen2 expressions)"));
    }
    const std::string behavior = member<std::string>(node, "behavior", "Isolated", origin, where);
    if (behavior != "Isolated") unsupported(origin, str(where, ": Split behavior ", behavior));
    if (member<bool>(node, "invert", false, origin, where)) {
      unsupported(origin, str(where, ": an inverted Split"));
    }
  } else if (type == "Digits") {
    step.kind = Kind::digits;
    step.individual_digits = member<bool>(node, "individual_digits", false, origin, where);
  } else if (type == "Metaspace") {
    step.kind = Kind::metaspace;
    step.replacement = member<std::string>(node, "replacement", "\xE2\x96\x81", origin, where);
    // Older files say add_prefix_space (true: always) instead of prepend_scheme.
    std::string scheme = member<std::string>(node, "prepend_scheme", "", origin, where);
    if (scheme.empty()) {
      scheme = member<bool>(node, "add_prefix_space", true, origin, where) ? "always" : "never";
    }
    if (scheme == "always") {
      step.prepend = PreTokenizerStep::Prepend::always;
    } else if (scheme == "first") {
      step.prepend = PreTokenizerStep::Prepend::first;
    } else if (scheme == "never") {
      step.prepend = PreTokenizerStep::Prepend::never;
    } else {
      malformed(origin, str(where, ".prepend_scheme is '", scheme, "'"));
    }
    step.split_on_replacement = member<bool>(node, "split", true, origin, where);
  } else {
    unsupported(origin, str("the pre-tokenizer ", type, " (", where, ")"));
  }
  steps.push_back(step);
}

void read_decoder(const json& node, const std::string& origin, const std::string& where,
                  std::vector<DecoderStep>& steps) {
  const std::string type = type_of(node, origin, where);
  using Kind = DecoderStep::Kind;
  DecoderStep step{};
  if (type == "Sequence") {
    const auto it = node.find("decoders");
    if (it == node.end() || !it->is_array()) malformed(origin, where + ".decoders is missing");
    for (size_t i = 0; i < it->size(); ++i) {
      read_decoder((*it)[i], origin, str(where, ".decoders[", i, "]"), steps);
    }
    return;
  }
  if (type == "ByteLevel") {
    step.kind = Kind::byte_level;
  } else if (type == "Metaspace") {
    step.kind = Kind::metaspace;
    step.content = member<std::string>(node, "replacement", "\xE2\x96\x81", origin, where);
    std::string scheme = member<std::string>(node, "prepend_scheme", "", origin, where);
    if (scheme.empty()) {
      scheme = member<bool>(node, "add_prefix_space", true, origin, where) ? "always" : "never";
    }
    step.prepend_first = scheme != "never";
  } else if (type == "Replace") {
    step.kind = Kind::replace;
    step.pattern = string_pattern(node.value("pattern", json()), origin, where);
    step.content = member<std::string>(node, "content", "", origin, where);
  } else if (type == "ByteFallback") {
    step.kind = Kind::byte_fallback;
  } else if (type == "Fuse") {
    step.kind = Kind::fuse;
  } else if (type == "Strip") {
    step.kind = Kind::strip;
    step.strip_content = member<std::string>(node, "content", " ", origin, where);
    step.strip_start = member<int>(node, "start", 0, origin, where);
    step.strip_stop = member<int>(node, "stop", 0, origin, where);
  } else {
    unsupported(origin, str("the decoder ", type, " (", where, ")"));
  }
  steps.push_back(step);
}

// The special tokens a single sequence gets before and after it (post_processor).
struct Framing {
  std::vector<std::string> before, after;
  bool known = false;  // the post-processor says (possibly: nothing)
};

void read_post_processor(const json& node, const std::string& origin, const std::string& where,
                         Framing& framing) {
  if (node.is_null()) return;
  const std::string type = type_of(node, origin, where);
  if (type == "Sequence") {
    const auto it = node.find("processors");
    if (it == node.end() || !it->is_array()) malformed(origin, where + ".processors is missing");
    for (size_t i = 0; i < it->size(); ++i) {
      read_post_processor((*it)[i], origin, str(where, ".processors[", i, "]"), framing);
    }
  } else if (type == "ByteLevel") {
    framing.known = true;  // offsets only
  } else if (type == "TemplateProcessing") {
    framing.known = true;
    const auto single = node.find("single");
    if (single == node.end() || !single->is_array())
      malformed(origin, where + ".single is missing");
    bool seen_sequence = false;
    for (const json& piece : *single) {
      if (piece.contains("Sequence")) {
        seen_sequence = true;
      } else if (piece.contains("SpecialToken")) {
        const std::string id = piece["SpecialToken"].value("id", "");
        // special_tokens maps the template's name to the token strings it stands for.
        std::vector<std::string> names{id};
        if (const auto specials = node.find("special_tokens"); specials != node.end() &&
                                                               specials->contains(id) &&
                                                               (*specials)[id].contains("tokens")) {
          names = (*specials)[id]["tokens"].get<std::vector<std::string>>();
        }
        auto& side = seen_sequence ? framing.after : framing.before;
        side.insert(side.end(), names.begin(), names.end());
      } else {
        malformed(origin,
                  where + ".single holds an entry that is neither Sequence nor SpecialToken");
      }
    }
  } else if (type == "RobertaProcessing" || type == "BertProcessing") {
    framing.known = true;
    const json cls = node.value("cls", json()), sep = node.value("sep", json());
    if (!cls.is_array() || cls.empty() || !sep.is_array() || sep.empty()) {
      malformed(origin, where + " lacks cls or sep");
    }
    framing.before.push_back(cls[0].get<std::string>());
    framing.after.push_back(sep[0].get<std::string>());
  } else {
    unsupported(origin, str("the post-processor ", type, " (", where, ")"));
  }
}

// tokenizer_config.json's token fields are a string or an AddedToken object with "content".
std::string config_token(const json& config, const char* key) {
  const auto it = config.find(key);
  if (it == config.end()) return "";
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) {
    return (*it)["content"].get<std::string>();
  }
  return "";
}

}  // namespace

Vocab Vocab::from_hugging_face(std::string_view tokenizer_json, std::string_view config_json,
                               const std::string& origin) {
  json root;
  try {
    root = json::parse(tokenizer_json);
  } catch (const json::exception& e) {
    malformed(origin, str("it is not JSON (", e.what(), ")"));
  }
  if (!root.is_object()) malformed(origin, "its top level is not an object");
  json config = json::object();
  if (!config_json.empty()) {
    try {
      config = json::parse(config_json);
    } catch (const json::exception& e) {
      throw FileError(str("the tokenizer_config.json beside ", origin, " is not JSON (", e.what(),
                          "); fix or remove it"));
    }
  }

  auto impl = std::make_unique<Impl>();
  Impl& v = *impl;
  v.source = VocabSource::hugging_face;
  v.origin = origin;
  v.invalid_utf8 = InvalidUtf8Rule::replace_maximal_subparts;
  v.parse_special_default = true;

  // The model.
  const json model = root.value("model", json());
  if (!model.is_object()) malformed(origin, "it has no \"model\" object");
  const std::string model_type = model.contains("type") ? type_of(model, origin, "model") : "BPE";
  if (model_type != "BPE") unsupported(origin, str("the model type ", model_type));
  if (member<double>(model, "dropout", 0.0, origin, "model") > 0) {
    unsupported(origin, "BPE dropout (random merges)");
  }
  if (!member<std::string>(model, "continuing_subword_prefix", "", origin, "model").empty() ||
      !member<std::string>(model, "end_of_word_suffix", "", origin, "model").empty()) {
    unsupported(origin, "a BPE continuing_subword_prefix or end_of_word_suffix");
  }
  // The pipeline first: a part that is not implemented is the first thing to say.
  read_normalizer(root.value("normalizer", json()), origin, "normalizer", v.normalizers);
  read_pre_tokenizer(root.value("pre_tokenizer", json()), origin, "pre_tokenizer",
                     v.pre_tokenizers);
  for (size_t i = 0; i + 1 < v.pre_tokenizers.size(); ++i) {
    if (v.pre_tokenizers[i].kind == PreTokenizerStep::Kind::byte_level) {
      unsupported(origin, "a pre-tokenizer after ByteLevel (it must be the last step)");
    }
  }
  const bool byte_level = std::any_of(
      v.pre_tokenizers.begin(), v.pre_tokenizers.end(),
      [](const PreTokenizerStep& step) { return step.kind == PreTokenizerStep::Kind::byte_level; });
  if (const json decoder = root.value("decoder", json()); !decoder.is_null()) {
    v.has_decoder = true;
    read_decoder(decoder, origin, "decoder", v.decoders);
  }
  Framing framing;
  read_post_processor(root.value("post_processor", json()), origin, "post_processor", framing);

  const json vocab = model.value("vocab", json());
  if (!vocab.is_object()) malformed(origin, "model.vocab is not an object of token: id");

  std::vector<std::pair<std::string, int32_t>> model_tokens;  // file spelling, id
  model_tokens.reserve(vocab.size());
  int32_t max_id = -1;
  for (const auto& [text, id] : vocab.items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX) {
      malformed(origin, str("model.vocab['", text, "'] is not a token id"));
    }
    model_tokens.emplace_back(text, id.get<int32_t>());
    max_id = std::max(max_id, id.get<int32_t>());
  }

  // Added tokens.
  std::vector<AddedToken> added;
  if (const auto list = root.find("added_tokens"); list != root.end() && !list->is_null()) {
    if (!list->is_array()) malformed(origin, "added_tokens is not an array");
    for (size_t i = 0; i < list->size(); ++i) {
      const json& entry = (*list)[i];
      const std::string where = str("added_tokens[", i, "]");
      AddedToken token;
      token.id = member<int32_t>(entry, "id", -1, origin, where);
      token.content = member<std::string>(entry, "content", "", origin, where);
      if (token.id < 0 || token.content.empty()) malformed(origin, where + " lacks id or content");
      token.special = member<bool>(entry, "special", false, origin, where);
      token.single_word = member<bool>(entry, "single_word", false, origin, where);
      token.lstrip = member<bool>(entry, "lstrip", false, origin, where);
      token.rstrip = member<bool>(entry, "rstrip", false, origin, where);
      token.normalized = member<bool>(entry, "normalized", !token.special, origin, where);
      max_id = std::max(max_id, token.id);
      added.push_back(token);
    }
  }

  // Ids run from 0 without gaps, so the largest is below the number of entries; checked before
  // anything that size is allocated (a damaged file must not ask for 2^31 tokens).
  if (max_id < 0) malformed(origin, "it has no tokens (model.vocab and added_tokens are empty)");
  if (static_cast<size_t>(max_id) >= model_tokens.size() + added.size()) {
    unsupported(origin, str("a vocabulary whose ids do not run from 0 without gaps (id ", max_id,
                            " with ", model_tokens.size() + added.size(), " entries)"));
  }
  v.tokens.assign(static_cast<size_t>(max_id + 1), VocabToken{});
  std::vector<uint8_t> filled(v.tokens.size(), 0);
  for (const auto& [text, id] : model_tokens) {
    v.tokens[static_cast<size_t>(id)].text = text;
    filled[static_cast<size_t>(id)] = 1;
  }
  v.is_special.assign(v.tokens.size(), 0);
  for (const AddedToken& token : added) {
    auto& slot = v.tokens[static_cast<size_t>(token.id)];
    if (filled[static_cast<size_t>(token.id)] && slot.text != token.content) {
      malformed(origin, str("added token ", token.id, " '", token.content,
                            "' has the id of the model token '", slot.text, "'"));
    }
    slot.text = token.content;
    slot.type = token.special ? TokenType::control : TokenType::user_defined;
    filled[static_cast<size_t>(token.id)] = 1;
    v.is_special[static_cast<size_t>(token.id)] = token.special ? 1 : 0;
  }
  for (size_t id = 0; id < filled.size(); ++id) {
    if (!filled[id]) {
      unsupported(origin, str("a vocabulary with no token at id ", id,
                              " (ids must run from 0 without gaps)"));
    }
  }

  // The model's tokens as the BPE model sees them: raw bytes for byte-level vocabularies.
  BpeOptions options;
  options.byte_level = byte_level;
  options.ignore_merges = member<bool>(model, "ignore_merges", false, origin, "model");
  options.byte_fallback = member<bool>(model, "byte_fallback", false, origin, "model");
  options.fuse_unk = member<bool>(model, "fuse_unk", false, origin, "model");
  const std::string unk_token = member<std::string>(model, "unk_token", "", origin, "model");
  std::vector<std::pair<std::string, int32_t>> bpe_vocab;
  bpe_vocab.reserve(model_tokens.size());
  v.surface.assign(v.tokens.size(), std::string());
  std::string raw;
  for (const auto& [text, id] : model_tokens) {
    if (byte_level) {
      if (!byte_level_bytes(text, raw)) {
        malformed(origin, str("model token ", id, " '", text,
                              "' is not spelled in the byte-level alphabet of its ByteLevel "
                              "pre-tokenizer"));
      }
      bpe_vocab.emplace_back(raw, id);
      v.surface[static_cast<size_t>(id)] = raw;
    } else {
      bpe_vocab.emplace_back(text, id);
      v.surface[static_cast<size_t>(id)] = text;
    }
  }
  for (const AddedToken& token : added) v.surface[static_cast<size_t>(token.id)] = token.content;
  v.index_tokens();
  if (!unk_token.empty()) {
    options.unk_id = v.ids.count(unk_token) ? v.ids.at(unk_token) : -1;
    if (options.unk_id < 0) malformed(origin, str("model.unk_token '", unk_token, "' is no token"));
    v.unk = options.unk_id;
    if (v.tokens[static_cast<size_t>(v.unk)].type == TokenType::normal) {
      v.tokens[static_cast<size_t>(v.unk)].type = TokenType::unknown;
    }
  }
  if (options.byte_fallback) {
    for (size_t id = 0; id < v.tokens.size(); ++id) {
      VocabToken& token = v.tokens[id];
      if (token.type == TokenType::normal && byte_of_token(token.text) >= 0) {
        token.type = TokenType::byte;
      }
    }
  }

  // Merges: "left right" strings (older files) or [left, right] pairs.
  std::vector<std::pair<int32_t, int32_t>> merges;
  if (const auto list = model.find("merges"); list != model.end() && !list->is_null()) {
    if (!list->is_array()) malformed(origin, "model.merges is not an array");
    merges.reserve(list->size());
    std::unordered_map<std::string_view, int32_t> model_ids;
    model_ids.reserve(model_tokens.size());
    for (const auto& [text, id] : model_tokens) model_ids.emplace(text, id);
    auto id_of = [&](const std::string& text, size_t rank) {
      const auto it = model_ids.find(text);
      if (it == model_ids.end()) {
        malformed(origin, str("merge ", rank, " names '", text, "', which is not in model.vocab"));
      }
      return it->second;
    };
    for (size_t rank = 0; rank < list->size(); ++rank) {
      const json& entry = (*list)[rank];
      if (entry.is_string()) {
        const std::string line = entry.get<std::string>();
        const size_t space = line.find(' ');
        if (space == std::string::npos || line.find(' ', space + 1) != std::string::npos) {
          malformed(origin, str("merge ", rank, " '", line, "' is not two tokens and one space"));
        }
        merges.emplace_back(id_of(line.substr(0, space), rank),
                            id_of(line.substr(space + 1), rank));
      } else if (entry.is_array() && entry.size() == 2 && entry[0].is_string() &&
                 entry[1].is_string()) {
        merges.emplace_back(id_of(entry[0].get<std::string>(), rank),
                            id_of(entry[1].get<std::string>(), rank));
      } else {
        malformed(origin, str("merge ", rank, " is neither \"a b\" nor [\"a\", \"b\"]"));
      }
    }
  }
  v.bpe = std::make_unique<BpeModel>(bpe_vocab, merges, options, origin);
  v.algorithm = byte_level ? "byte-level-bpe" : "bpe";
  v.raw_tokens = AddedTokenMatcher(added, false);
  v.normalized_tokens = AddedTokenMatcher(added, true);

  // Special ids: the post-processor's framing first, then tokenizer_config.json, then the names
  // the families use.
  auto find_id = [&](const std::string& text) {
    return text.empty() ? -1 : v.ids.count(text) ? v.ids.at(text) : -1;
  };
  if (!framing.before.empty()) v.bos = find_id(framing.before.front());
  if (!framing.after.empty()) v.eos = find_id(framing.after.back());
  v.add_bos = !framing.before.empty();
  v.add_eos = !framing.after.empty();
  if (v.bos < 0) v.bos = find_id(config_token(config, "bos_token"));
  if (v.eos < 0) v.eos = find_id(config_token(config, "eos_token"));
  if (v.unk < 0) v.unk = find_id(config_token(config, "unk_token"));
  v.pad = find_id(config_token(config, "pad_token"));
  if (!framing.known) {
    v.add_bos = config.value("add_bos_token", false) && v.bos >= 0;
    v.add_eos = config.value("add_eos_token", false) && v.eos >= 0;
  }
  for (const char* name : {"<|begin_of_text|>", "<s>", "<bos>", "<|startoftext|>"}) {
    if (v.bos < 0) v.bos = find_id(name);
  }
  for (const char* name : {"<|end_of_text|>", "<|endoftext|>", "</s>", "<eos>"}) {
    if (v.eos < 0) v.eos = find_id(name);
  }
  // GPT-2's only special token starts and ends its texts.
  if (v.bos < 0 && v.eos >= 0 && v.tokens[static_cast<size_t>(v.eos)].text == "<|endoftext|>") {
    v.bos = v.eos;
  }
  v.check_special_ids();

  // decode(encode(text)) == text unless a normalizer changes text or a character can be lost.
  const bool lossless_model = byte_level || options.byte_fallback;
  const bool normalizes =
      std::any_of(v.normalizers.begin(), v.normalizers.end(), [](const NormalizerStep& step) {
        return step.kind != NormalizerStep::Kind::prepend &&
               step.kind != NormalizerStep::Kind::replace;
      });
  v.round_trips = lossless_model && !normalizes;

  // The GGUF "pre" of a byte-level vocabulary: which llama.cpp split reproduces this one. Qwen2's
  // NFC normalizer has no GGUF form (llama.cpp does not normalize), but changes only text that is
  // not already NFC, so it does not keep the vocabulary from being written.
  const bool only_nfc =
      v.normalizers.size() == 1 && v.normalizers[0].kind == NormalizerStep::Kind::nfc;
  if (byte_level && (v.normalizers.empty() || only_nfc)) {
    std::vector<std::string> shape;
    for (const PreTokenizerStep& step : v.pre_tokenizers) {
      switch (step.kind) {
        case PreTokenizerStep::Kind::split:
          shape.push_back(str("split:", split_pattern_name(step.pattern)));
          break;
        case PreTokenizerStep::Kind::byte_level:
          shape.push_back(step.add_prefix_space ? "prefix" : "");
          if (step.use_regex) shape.push_back("split:gpt2");
          break;
        case PreTokenizerStep::Kind::digits:
          shape.push_back(step.individual_digits ? "digits" : "digit-runs");
          break;
        case PreTokenizerStep::Kind::metaspace:
          shape.push_back("metaspace");
          break;
      }
    }
    shape.erase(std::remove(shape.begin(), shape.end(), ""), shape.end());
    const auto is = [&](std::initializer_list<const char*> wanted) {
      return shape == std::vector<std::string>(wanted.begin(), wanted.end());
    };
    if (is({"split:gpt2"})) v.gguf_pre = "gpt-2";
    if (is({"split:llama3"}) && options.ignore_merges) v.gguf_pre = "llama-bpe";
    if (is({"split:qwen2"}) && !options.ignore_merges) v.gguf_pre = "qwen2";
    if (is({"digits", "split:gpt2"})) v.gguf_pre = "smollm";
  }
  return Vocab(std::move(impl));
}

}  // namespace edgedistill::tok
