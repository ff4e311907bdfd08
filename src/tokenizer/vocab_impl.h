// The inside of tok::Vocab, shared by its loaders (vocab_hugging_face.cpp, vocab_gguf.cpp,
// vocab_sentencepiece.cpp) and the encoder (vocab.cpp). Not for other layers.
#pragma once

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "tokenizer/added_tokens.h"
#include "tokenizer/bpe_model.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/spm_encoder.h"
#include "tokenizer/vocab.h"

namespace edgedistill::tok {

// How ill-formed UTF-8 in a text is made well-formed before encoding, as each reference does.
enum class InvalidUtf8Rule {
  // Each maximal subpart becomes U+FFFD: Python's bytes.decode("utf-8", "replace"), which is how a
  // text with bad bytes reaches Hugging Face tokenizers.
  replace_maximal_subparts,
  // llama.cpp's unicode_cpts_from_utf8: a byte that does not start a sequence with the right
  // number of continuation bytes becomes U+FFFD; overlong forms decode to their code point.
  llama_cpp_lenient,
  // The SentencePiece codec applies libsentencepiece's own rule (spm_normalizer.h).
  sentencepiece,
};

struct NormalizerStep {
  enum class Kind { nfc, nfd, nfkc, nfkd, prepend, replace, strip };
  Kind kind;
  std::string text;                  // prepend: what; replace: the pattern
  std::string replacement;           // replace: the content
  bool left = false, right = false;  // strip
};

struct PreTokenizerStep {
  enum class Kind { split, byte_level, digits, metaspace };
  Kind kind;
  SplitPattern pattern = SplitPattern::gpt2;  // split; byte_level with use_regex
  bool use_regex = false;                     // byte_level
  bool add_prefix_space = false;              // byte_level
  bool individual_digits = false;             // digits
  std::string replacement;                    // metaspace
  enum class Prepend { always, first, never } prepend = Prepend::always;  // metaspace
  bool split_on_replacement = false;                                      // metaspace
};

struct DecoderStep {
  enum class Kind { byte_level, metaspace, replace, byte_fallback, fuse, strip };
  Kind kind;
  std::string pattern, content;  // replace; metaspace: content is the replacement
  bool prepend_first = true;     // metaspace: prepend scheme is not "never"
  std::string strip_content;     // strip: the character
  int strip_start = 0, strip_stop = 0;
};

struct Vocab::Impl {
  VocabSource source = VocabSource::gguf;
  std::string algorithm;  // see Vocab::algorithm
  std::string origin;

  std::vector<VocabToken> tokens;
  std::unordered_map<std::string_view, int32_t> ids;  // views into tokens[i].text
  std::vector<uint8_t> is_special;                    // per id: left out by decode(skip_special)
  std::vector<std::string> surface;                   // per id: the bytes the token decodes to

  int32_t bos = -1, eos = -1, unk = -1, pad = -1;
  bool add_bos = false, add_eos = false;
  bool parse_special_default = true;
  bool round_trips = true;
  InvalidUtf8Rule invalid_utf8 = InvalidUtf8Rule::replace_maximal_subparts;

  // Tokens cut out of the raw text (added / special tokens) and, for tokenizer.json, out of the
  // normalized text.
  AddedTokenMatcher raw_tokens;
  AddedTokenMatcher normalized_tokens;

  // BPE by rank (tokenizer.json, GGUF "gpt2").
  std::unique_ptr<BpeModel> bpe;
  std::vector<NormalizerStep> normalizers;
  std::vector<PreTokenizerStep> pre_tokenizers;
  bool has_decoder = false;
  std::vector<DecoderStep> decoders;
  std::string gguf_pre;  // tokenizer.ggml.pre of a byte-level vocabulary; "" when it has none

  // SentencePiece models and GGUF "llama" vocabularies: the libsentencepiece pipeline (a GGUF
  // vocabulary is a BPE model with the identity normalizer).
  std::unique_ptr<SentencePieceCodec> sentencepiece;
  bool add_space_prefix = true;  // add_dummy_prefix; GGUF tokenizer.ggml.add_space_prefix

  // The SentencePiece codec of a "llama" vocabulary held in `tokens` (GGUF, or made in memory).
  void use_llama_codec();
  // Fills `ids`, `is_special` (default: control tokens) and `surface` (default: the text) from
  // `tokens`; InputError on duplicate token strings.
  void index_tokens();
  void check_special_ids() const;

  void encode_fragment(std::string_view text, bool at_text_start, std::vector<int32_t>& out) const;
  void encode_bpe(std::string_view text, bool at_text_start, std::vector<int32_t>& out) const;
};

}  // namespace edgedistill::tok
