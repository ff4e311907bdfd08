#include "tokenizer/vocab.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "core/sha256.h"
#include "tokenizer/unicode.h"
#include "tokenizer/utf8.h"
#include "tokenizer/vocab_impl.h"

namespace edgedistill::tok {
namespace {

constexpr std::string_view kSpaceMarker = "\xE2\x96\x81";  // U+2581, SentencePiece's space

void replace_all(std::string& text, std::string_view pattern, std::string_view replacement) {
  if (pattern.empty() || text.find(pattern) == std::string::npos) return;
  std::string out;
  out.reserve(text.size() + text.size() / 4);
  size_t from = 0;
  for (size_t at; (at = text.find(pattern, from)) != std::string::npos;
       from = at + pattern.size()) {
    out.append(text, from, at - from);
    out.append(replacement);
  }
  out.append(text, from, std::string::npos);
  text.swap(out);
}

bool is_whitespace_at(std::string_view text, size_t i, size_t& length) {
  uint32_t code = 0;
  length = utf8_decode(text, i, code);
  return length > 0 && (codepoint_flags(code) & kWhitespace) != 0;
}

// llama.cpp's lenient decoding (unicode_cpts_from_utf8) re-encoded: a lead byte followed by the
// right number of continuation bytes is a character whatever its value (overlong forms become
// the code point's shortest form); anything else is one U+FFFD per byte. Surrogate code points,
// which llama.cpp passes on, become U+FFFD here (they have no UTF-8 form).
std::string llama_cpp_lenient_utf8(std::string_view text) {
  std::string out;
  out.reserve(text.size() + 8);
  for (size_t i = 0; i < text.size();) {
    const auto lead = static_cast<uint8_t>(text[i]);
    size_t length = lead < 0x80   ? 1
                    : lead < 0xC0 ? 0
                    : lead < 0xE0 ? 2
                    : lead < 0xF0 ? 3
                    : lead < 0xF8 ? 4
                                  : 0;
    for (size_t k = 1; length > 1 && k < length; ++k) {
      if (i + k >= text.size() || (static_cast<uint8_t>(text[i + k]) & 0xC0) != 0x80) length = 0;
    }
    if (length == 0) {
      utf8_append(out, kReplacementCharacter);
      ++i;
      continue;
    }
    uint32_t code = length == 1 ? lead : lead & (0x7Fu >> length);
    for (size_t k = 1; k < length; ++k)
      code = (code << 6) | (static_cast<uint8_t>(text[i + k]) & 0x3F);
    if ((code >= 0xD800 && code <= 0xDFFF) || code > 0x10FFFF) code = kReplacementCharacter;
    utf8_append(out, code);
    i += length;
  }
  return out;
}

std::string normalized_text(const std::vector<NormalizerStep>& steps, std::string_view input) {
  std::string text(input);
  for (const NormalizerStep& step : steps) {
    switch (step.kind) {
      case NormalizerStep::Kind::nfc:
        text = normalize_nfc(text);
        break;
      case NormalizerStep::Kind::nfd:
        text = normalize_nfd(text);
        break;
      case NormalizerStep::Kind::nfkc:
        text = normalize_nfkc(text);
        break;
      case NormalizerStep::Kind::nfkd:
        text = normalize_nfkd(text);
        break;
      case NormalizerStep::Kind::prepend:
        // Hugging Face's Prepend leaves an empty text empty.
        if (!text.empty()) text.insert(0, step.text);
        break;
      case NormalizerStep::Kind::replace:
        replace_all(text, step.text, step.replacement);
        break;
      case NormalizerStep::Kind::strip: {
        size_t begin = 0, end = text.size(), length = 0;
        if (step.left) {
          while (begin < end && is_whitespace_at(text, begin, length)) begin += length;
        }
        if (step.right) {
          while (end > begin) {
            size_t start = end - 1;
            while (start > begin && (static_cast<uint8_t>(text[start]) & 0xC0) == 0x80) --start;
            if (!is_whitespace_at(text, start, length)) break;
            end = start;
          }
        }
        text = text.substr(begin, end - begin);
        break;
      }
    }
  }
  return text;
}

// A piece of the text being pre-tokenized: bytes [begin, begin + length) of the working buffer;
// `at_origin`: it starts where the whole text starts (Metaspace's "first" prepend scheme).
struct Piece {
  size_t begin, length;
  bool at_origin;
};

}  // namespace

const char* vocab_source_name(VocabSource source) {
  switch (source) {
    case VocabSource::sentencepiece:
      return "SentencePiece model";
    case VocabSource::hugging_face:
      return "tokenizer.json";
    case VocabSource::gguf:
      return "GGUF";
  }
  return "?";
}

void Vocab::Impl::index_tokens() {
  ids.clear();
  ids.reserve(tokens.size());
  for (size_t id = 0; id < tokens.size(); ++id) {
    const auto [it, inserted] = ids.emplace(tokens[id].text, static_cast<int32_t>(id));
    if (!inserted) {
      throw InputError(str(origin, ": tokens ", it->second, " and ", id, " are both '",
                           tokens[id].text, "'; token strings must be unique"));
    }
  }
  if (is_special.size() != tokens.size()) {
    is_special.assign(tokens.size(), 0);
    for (size_t id = 0; id < tokens.size(); ++id) {
      is_special[id] = tokens[id].type == TokenType::control ? 1 : 0;
    }
  }
  if (surface.size() != tokens.size()) {
    surface.resize(tokens.size());
    for (size_t id = 0; id < tokens.size(); ++id) {
      const VocabToken& token = tokens[id];
      if (token.type == TokenType::byte && byte_of_token(token.text) >= 0) {
        surface[id] = std::string(1, static_cast<char>(byte_of_token(token.text)));
      } else if (token.type == TokenType::control || token.type == TokenType::unused) {
        surface[id].clear();
      } else {
        surface[id] = token.text;
      }
    }
  }
}

void Vocab::Impl::check_special_ids() const {
  const auto n = static_cast<int32_t>(tokens.size());
  const std::pair<const char*, int32_t> specials[] = {
      {"bos", bos}, {"eos", eos}, {"unknown", unk}, {"padding", pad}};
  for (const auto& [name, id] : specials) {
    if (id < -1 || id >= n) {
      throw InputError(str(origin, ": the ", name, " token id ", id,
                           " is outside the vocabulary of ", n, " tokens"));
    }
  }
  if (add_bos && bos < 0) {
    throw InputError(str(origin, ": sequences start with BOS (add_bos) but no BOS token is named"));
  }
}

void Vocab::Impl::encode_bpe(std::string_view text, bool at_text_start,
                             std::vector<int32_t>& out) const {
  // The pre-tokenizers cut the text into pieces; ByteLevel (always the last step) leaves the
  // bytes as they are, since the model works on raw bytes (bpe_model.h).
  std::string buffer(text);
  std::vector<Piece> pieces{{0, buffer.size(), at_text_start}};
  std::vector<TextSpan> spans;
  std::vector<Piece> next;
  for (const PreTokenizerStep& step : pre_tokenizers) {
    const bool transforms =
        step.kind == PreTokenizerStep::Kind::metaspace ||
        (step.kind == PreTokenizerStep::Kind::byte_level && step.add_prefix_space);
    if (transforms) {
      std::string rebuilt;
      rebuilt.reserve(buffer.size() + pieces.size() * 3);
      std::vector<Piece> moved;
      moved.reserve(pieces.size());
      for (const Piece& piece : pieces) {
        std::string part = buffer.substr(piece.begin, piece.length);
        if (step.kind == PreTokenizerStep::Kind::byte_level) {
          if (part.empty() || part[0] != ' ') part.insert(0, " ");
        } else {
          replace_all(part, " ", step.replacement);
          const bool starts = part.compare(0, step.replacement.size(), step.replacement) == 0;
          if (!starts && (step.prepend == PreTokenizerStep::Prepend::always ||
                          (step.prepend == PreTokenizerStep::Prepend::first && piece.at_origin))) {
            part.insert(0, step.replacement);
          }
        }
        moved.push_back({rebuilt.size(), part.size(), piece.at_origin});
        rebuilt += part;
      }
      buffer.swap(rebuilt);
      pieces.swap(moved);
    }
    const bool splits =
        step.kind == PreTokenizerStep::Kind::split || step.kind == PreTokenizerStep::Kind::digits ||
        (step.kind == PreTokenizerStep::Kind::byte_level && step.use_regex) ||
        (step.kind == PreTokenizerStep::Kind::metaspace && step.split_on_replacement);
    if (!splits) continue;
    next.clear();
    for (const Piece& piece : pieces) {
      const std::string_view part(buffer.data() + piece.begin, piece.length);
      spans.clear();
      if (step.kind == PreTokenizerStep::Kind::digits) {
        split_digits(part, piece.begin, step.individual_digits, spans);
      } else if (step.kind == PreTokenizerStep::Kind::metaspace) {
        // Split on the replacement, each one starting the word after it (MergedWithNext).
        size_t start = 0;
        for (size_t at = part.find(step.replacement, 1); at != std::string_view::npos;
             at = part.find(step.replacement, at + step.replacement.size())) {
          spans.push_back({piece.begin + start, at - start});
          start = at;
        }
        if (start < part.size()) spans.push_back({piece.begin + start, part.size() - start});
      } else {
        split_words(step.pattern, part, piece.begin, spans);
      }
      for (const TextSpan& span : spans) {
        next.push_back({span.begin, span.length, piece.at_origin && span.begin == piece.begin});
      }
    }
    pieces.swap(next);
  }
  for (const Piece& piece : pieces) {
    bpe->encode_word(std::string_view(buffer.data() + piece.begin, piece.length), out);
  }
}

void Vocab::Impl::encode_fragment(std::string_view text, bool at_text_start,
                                  std::vector<int32_t>& out) const {
  if (sentencepiece) {
    sentencepiece->encode(text, out);
    return;
  }
  if (normalizers.empty() && normalized_tokens.empty()) {
    encode_bpe(text, at_text_start, out);
    return;
  }
  const std::string normalized = normalized_text(normalizers, text);
  if (normalized_tokens.empty()) {
    encode_bpe(normalized, at_text_start, out);
    return;
  }
  std::vector<TextFragment> fragments;
  normalized_tokens.split(normalized, true, fragments);
  for (const TextFragment& fragment : fragments) {
    if (fragment.token >= 0) {
      out.push_back(fragment.token);
    } else {
      encode_bpe(std::string_view(normalized).substr(fragment.begin, fragment.length),
                 at_text_start && fragment.begin == 0, out);
    }
  }
}

Vocab::Vocab(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Vocab::Vocab(Vocab&&) noexcept = default;
Vocab& Vocab::operator=(Vocab&&) noexcept = default;
Vocab::~Vocab() = default;

VocabSource Vocab::source() const {
  return impl_->source;
}
const std::string& Vocab::algorithm() const {
  return impl_->algorithm;
}

std::string Vocab::description() const {
  std::string text = str(impl_->algorithm, ", ", size(), " tokens");
  if (!impl_->gguf_pre.empty()) text += str(", split ", impl_->gguf_pre);
  return text + str(", from ", vocab_source_name(impl_->source), " ", impl_->origin);
}

int32_t Vocab::size() const {
  return static_cast<int32_t>(impl_->tokens.size());
}

const VocabToken& Vocab::token(int32_t id) const {
  if (id < 0 || id >= size()) {
    throw InputError(str("token id ", id, " is outside the vocabulary of ", size(), " tokens"));
  }
  return impl_->tokens[static_cast<size_t>(id)];
}

int32_t Vocab::id_of(std::string_view text) const {
  const auto it = impl_->ids.find(text);
  return it == impl_->ids.end() ? -1 : it->second;
}

int32_t Vocab::bos_id() const {
  return impl_->bos;
}
int32_t Vocab::eos_id() const {
  return impl_->eos;
}
int32_t Vocab::unk_id() const {
  return impl_->unk;
}
int32_t Vocab::pad_id() const {
  return impl_->pad;
}
bool Vocab::add_bos() const {
  return impl_->add_bos;
}
bool Vocab::add_eos() const {
  return impl_->add_eos;
}
bool Vocab::parses_special_by_default() const {
  return impl_->parse_special_default;
}
bool Vocab::round_trips() const {
  return impl_->round_trips;
}

std::vector<int32_t> Vocab::encode(std::string_view input, bool parse_special) const {
  std::vector<int32_t> ids;
  if (input.empty()) return ids;
  ids.reserve(input.size() / 3 + 4);
  std::string repaired;
  std::string_view text = input;
  if (impl_->invalid_utf8 != InvalidUtf8Rule::sentencepiece && !is_valid_utf8(input)) {
    repaired = impl_->invalid_utf8 == InvalidUtf8Rule::llama_cpp_lenient
                   ? llama_cpp_lenient_utf8(input)
                   : utf8_replace_invalid(input);
    text = repaired;
  }
  if (impl_->raw_tokens.empty()) {
    impl_->encode_fragment(text, true, ids);
    return ids;
  }
  std::vector<TextFragment> fragments;
  impl_->raw_tokens.split(text, parse_special, fragments);
  for (const TextFragment& fragment : fragments) {
    if (fragment.token >= 0) {
      ids.push_back(fragment.token);
    } else {
      impl_->encode_fragment(text.substr(fragment.begin, fragment.length), fragment.begin == 0,
                             ids);
    }
  }
  return ids;
}

std::string Vocab::decode(const std::vector<int32_t>& ids) const {
  return decode(ids, impl_->source != VocabSource::hugging_face);  // the references' defaults
}

std::string Vocab::decode(const std::vector<int32_t>& ids, bool skip_special) const {
  for (const int32_t id : ids) token(id);  // range check
  const Impl& v = *impl_;
  if (v.sentencepiece) return v.sentencepiece->decode(ids);
  if (v.source == VocabSource::hugging_face) {
    // Hugging Face's Tokenizer::decode: the tokens' strings (special ones left out when asked),
    // then the decoder chain; without a decoder they are joined by spaces.
    std::vector<std::string> pieces;
    pieces.reserve(ids.size());
    for (const int32_t id : ids) {
      if (skip_special && v.is_special[static_cast<size_t>(id)]) continue;
      pieces.push_back(v.tokens[static_cast<size_t>(id)].text);
    }
    if (!v.has_decoder) {
      std::string joined;
      for (size_t i = 0; i < pieces.size(); ++i) joined += (i ? " " : "") + pieces[i];
      return joined;
    }
    for (const DecoderStep& step : v.decoders) {
      switch (step.kind) {
        case DecoderStep::Kind::byte_level: {
          // Tokens spelled in the byte-level alphabet become their bytes, others stay as they are;
          // the bytes are read as UTF-8 with U+FFFD for what is ill-formed (from_utf8_lossy).
          std::string bytes, raw;
          for (const std::string& piece : pieces)
            bytes += byte_level_bytes(piece, raw) ? raw : piece;
          pieces.assign(1, utf8_replace_invalid(bytes));
          break;
        }
        case DecoderStep::Kind::metaspace:
          for (size_t i = 0; i < pieces.size(); ++i) {
            // The first token loses every replacement character (Hugging Face's rule), the others
            // turn them into spaces.
            replace_all(pieces[i], step.content, i == 0 && step.prepend_first ? "" : " ");
          }
          break;
        case DecoderStep::Kind::replace:
          for (std::string& piece : pieces) replace_all(piece, step.pattern, step.content);
          break;
        case DecoderStep::Kind::byte_fallback: {
          // Runs of <0xNN> tokens become their bytes when those are well-formed UTF-8, else one
          // U+FFFD per token.
          std::vector<std::string> out;
          std::string run;
          size_t run_tokens = 0;
          auto flush = [&] {
            if (run_tokens == 0) return;
            if (is_valid_utf8(run)) {
              out.push_back(run);
            } else {
              for (size_t k = 0; k < run_tokens; ++k) out.emplace_back("\xEF\xBF\xBD");
            }
            run.clear();
            run_tokens = 0;
          };
          for (std::string& piece : pieces) {
            const int byte = byte_of_token(piece);
            if (byte >= 0) {
              run.push_back(static_cast<char>(byte));
              ++run_tokens;
            } else {
              flush();
              out.push_back(std::move(piece));
            }
          }
          flush();
          pieces.swap(out);
          break;
        }
        case DecoderStep::Kind::fuse: {
          std::string joined;
          for (const std::string& piece : pieces) joined += piece;
          pieces.assign(1, joined);
          break;
        }
        case DecoderStep::Kind::strip:
          for (std::string& piece : pieces) {
            const std::string& c = step.strip_content;
            for (int k = 0; k < step.strip_start && piece.compare(0, c.size(), c) == 0; ++k) {
              piece.erase(0, c.size());
            }
            for (int k = 0; k < step.strip_stop && piece.size() >= c.size() &&
                            piece.compare(piece.size() - c.size(), c.size(), c) == 0;
                 ++k) {
              piece.erase(piece.size() - c.size());
            }
          }
          break;
      }
    }
    std::string text;
    for (const std::string& piece : pieces) text += piece;
    return text;
  }
  // GGUF "gpt2" (llama.cpp's token_to_piece): each token's bytes; control tokens are left out.
  std::string text;
  for (const int32_t id : ids) {
    const VocabToken& t = v.tokens[static_cast<size_t>(id)];
    if (t.type != TokenType::control) text += v.surface[static_cast<size_t>(id)];
  }
  return text;
}

std::string Vocab::piece(int32_t id) const {
  const VocabToken& t = token(id);
  const Impl& v = *impl_;
  if (t.type == TokenType::control || t.type == TokenType::unused) return "";
  if (v.sentencepiece) {
    if (t.type == TokenType::unknown) return " \xE2\x81\x87 ";
    if (t.type == TokenType::byte) return v.surface[static_cast<size_t>(id)];
    std::string text = t.text;
    replace_all(text, kSpaceMarker, " ");
    return text;
  }
  return v.surface[static_cast<size_t>(id)];
}

std::string Vocab::fingerprint() const {
  const Impl& v = *impl_;
  core::Sha256 hash;
  // Every field is length-prefixed, so no two different vocabularies serialize alike.
  auto text = [&](std::string_view bytes) {
    const uint64_t size = bytes.size();
    hash.update(&size, sizeof(size));
    hash.update(bytes);
  };
  auto number = [&](int64_t value) { hash.update(&value, sizeof(value)); };
  text("edgedistill-vocab-fingerprint 1");
  text(v.algorithm);
  number(static_cast<int64_t>(v.source == VocabSource::hugging_face));
  number(static_cast<int64_t>(v.tokens.size()));
  for (size_t id = 0; id < v.tokens.size(); ++id) {
    const VocabToken& t = v.tokens[id];
    text(t.text);
    uint32_t score_bits = 0;
    static_assert(sizeof(score_bits) == sizeof(t.score));
    std::memcpy(&score_bits, &t.score, sizeof(score_bits));
    number(score_bits);
    number(static_cast<int64_t>(t.type));
    number(v.is_special[id]);
    text(v.surface[id]);
  }
  for (const int64_t value : {int64_t{v.bos}, int64_t{v.eos}, int64_t{v.unk}, int64_t{v.pad},
                              int64_t{v.add_bos}, int64_t{v.add_eos}, int64_t{v.add_space_prefix},
                              static_cast<int64_t>(v.invalid_utf8), int64_t{v.has_decoder}}) {
    number(value);
  }
  if (v.bpe) {
    const BpeOptions& o = v.bpe->options();
    for (const int64_t value : {int64_t{o.byte_level}, int64_t{o.ignore_merges},
                                int64_t{o.byte_fallback}, int64_t{o.unk_id}, int64_t{o.fuse_unk}}) {
      number(value);
    }
    number(static_cast<int64_t>(v.bpe->merges().size()));
    for (const auto& [left, right] : v.bpe->merges()) {
      number(left);
      number(right);
    }
  }
  text(v.gguf_pre);
  for (const NormalizerStep& step : v.normalizers) {
    number(static_cast<int64_t>(step.kind));
    text(step.text);
    text(step.replacement);
    number(step.left);
    number(step.right);
  }
  for (const PreTokenizerStep& step : v.pre_tokenizers) {
    number(static_cast<int64_t>(step.kind));
    number(static_cast<int64_t>(step.pattern));
    number(step.use_regex);
    number(step.add_prefix_space);
    number(step.individual_digits);
    text(step.replacement);
    number(static_cast<int64_t>(step.prepend));
    number(step.split_on_replacement);
  }
  for (const DecoderStep& step : v.decoders) {
    number(static_cast<int64_t>(step.kind));
    text(step.pattern);
    text(step.content);
    number(step.prepend_first);
    text(step.strip_content);
    number(step.strip_start);
    number(step.strip_stop);
  }
  for (const AddedTokenMatcher* matcher : {&v.raw_tokens, &v.normalized_tokens}) {
    const auto& tokens = matcher->tokens();
    number(static_cast<int64_t>(tokens.size()));
    for (const AddedToken& token : tokens) {
      text(token.content);
      number(token.id);
      for (const bool flag : {token.special, token.single_word, token.lstrip, token.rstrip}) {
        number(flag);
      }
    }
  }
  if (v.sentencepiece) {
    const SentencePieceModel& model = v.sentencepiece->model();
    const SentencePieceNormalizerSpec spec = model.normalizer();
    text(model.model_type);
    text(spec.name);
    text(spec.precompiled_charsmap);
    for (const bool flag :
         {model.byte_fallback, spec.add_dummy_prefix, spec.remove_extra_whitespaces,
          spec.escape_whitespaces, model.treat_whitespace_as_suffix}) {
      number(flag);
    }
    text(model.denormalizer.precompiled_charsmap);
  }
  return core::to_hex(hash.finish());
}

}  // namespace edgedistill::tok
