// A SentencePiece model file (tokenizer.model) as a tok::Vocab: the libsentencepiece pipeline of
// SentencePieceCodec, with the model's special ids.
#include "core/error.h"
#include "tokenizer/vocab_impl.h"

namespace edgedistill::tok {

Vocab Vocab::from_sentencepiece(std::string model_bytes, const std::string& origin) {
  SentencePieceModel model = parse_sentencepiece_model(model_bytes, origin);
  auto impl = std::make_unique<Impl>();
  Impl& v = *impl;
  v.source = VocabSource::sentencepiece;
  v.origin = origin;
  v.invalid_utf8 = InvalidUtf8Rule::sentencepiece;
  // libsentencepiece never reads control pieces out of a text; asked to, the control pieces are
  // cut out first and the text between them encoded as separate texts.
  v.parse_special_default = false;
  v.algorithm = "sentencepiece-" + model.model_type;
  v.tokens.reserve(model.pieces.size());
  for (const auto& piece : model.pieces) v.tokens.push_back({piece.text, piece.score, piece.type});
  v.index_tokens();
  const auto n = static_cast<int32_t>(v.tokens.size());
  auto id_or_none = [&](int32_t id) { return id >= 0 && id < n ? id : -1; };
  v.unk = id_or_none(model.unk_id);
  v.bos = id_or_none(model.bos_id);
  v.eos = id_or_none(model.eos_id);
  v.pad = id_or_none(model.pad_id);
  v.add_bos = v.bos >= 0;  // SentencePiece-vocabulary models (Llama 2, Mistral) start with <s>
  v.add_space_prefix = model.add_dummy_prefix;
  const bool identity = model.normalizer_name == "identity" || model.precompiled_charsmap.empty();
  v.round_trips = identity && model.byte_fallback && !model.remove_extra_whitespaces;
  std::vector<AddedToken> controls;
  for (int32_t id = 0; id < n; ++id) {
    if (v.tokens[static_cast<size_t>(id)].type == TokenType::control) {
      controls.push_back({v.tokens[static_cast<size_t>(id)].text, id, true});
    }
  }
  v.raw_tokens = AddedTokenMatcher(controls, false);
  v.sentencepiece = std::make_unique<SentencePieceCodec>(std::move(model), origin);
  v.check_special_ids();
  return Vocab(std::move(impl));
}

}  // namespace edgedistill::tok

namespace edgedistill::tok {

Vocab Vocab::from_llama_vocab(LlamaVocabData data, const std::string& origin) {
  auto impl = std::make_unique<Impl>();
  Impl& v = *impl;
  v.source = VocabSource::gguf;
  v.origin = origin;
  v.algorithm = "sentencepiece-bpe";
  v.invalid_utf8 = InvalidUtf8Rule::sentencepiece;
  v.parse_special_default = false;
  v.tokens = std::move(data.tokens);
  if (v.tokens.empty()) throw InputError(str("vocabulary of ", origin, ": it has no tokens"));
  v.index_tokens();
  v.bos = data.bos_id;
  v.eos = data.eos_id;
  v.unk = data.unk_id;
  v.pad = data.pad_id;
  v.add_bos = data.add_bos;
  v.add_eos = data.add_eos;
  v.add_space_prefix = data.add_space_prefix;
  v.check_special_ids();
  for (const VocabToken& token : v.tokens) {
    const auto type = static_cast<int32_t>(token.type);
    if (type < 1 || type > 6) {
      throw InputError(str("vocabulary of ", origin, ": token '", token.text, "' has type ", type,
                           "; expected 1 (normal) to 6 (byte)"));
    }
  }
  // SentencePiece's encoder falls back to the unk piece, which must be the unknown-type token.
  if (v.unk >= 0 && v.tokens[static_cast<size_t>(v.unk)].type != TokenType::unknown) {
    throw InputError(str("vocabulary of ", origin, ": the unk id ", v.unk, " is '",
                         v.tokens[static_cast<size_t>(v.unk)].text, "', a token of type ",
                         token_type_name(v.tokens[static_cast<size_t>(v.unk)].type),
                         "; it must name the unknown-type token"));
  }
  v.use_llama_codec();
  return Vocab(std::move(impl));
}

void Vocab::Impl::use_llama_codec() {
  // What llama.cpp's "llama" tokenizer does is SentencePiece's BPE over the identity-normalized
  // text: a dummy prefix (add_space_prefix), spaces as U+2581, no other normalization.
  SentencePieceModel model;
  model.model_type = "bpe";
  bool has_bytes = false;
  model.pieces.reserve(tokens.size());
  for (const VocabToken& token : tokens) {
    model.pieces.push_back({token.text, token.score, token.type});
    has_bytes = has_bytes || token.type == TokenType::byte;
  }
  model.byte_fallback = has_bytes;
  model.unk_id = unk;
  model.bos_id = bos;
  model.eos_id = eos;
  model.pad_id = pad;
  model.normalizer_name = "identity";
  model.add_dummy_prefix = add_space_prefix;
  model.remove_extra_whitespaces = false;
  model.escape_whitespaces = true;
  round_trips = has_bytes;
  std::vector<AddedToken> controls;
  for (size_t id = 0; id < tokens.size(); ++id) {
    if (tokens[id].type == TokenType::control || tokens[id].type == TokenType::unknown) {
      controls.push_back({tokens[id].text, static_cast<int32_t>(id), true});
    }
  }
  raw_tokens = AddedTokenMatcher(controls, false);
  sentencepiece = std::make_unique<SentencePieceCodec>(
      SentencePieceCodec::for_vocabulary(std::move(model), origin));
}

}  // namespace edgedistill::tok
