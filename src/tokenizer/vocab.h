// A vocabulary and the rules that turn text into its token ids and back: the one tokenizer that
// data preparation, distillation and the runtime all use, so ids cannot drift between them.
//
// Three sources, each encoded the way its reference implementation encodes it:
//   SentencePiece model (tokenizer.model)  libsentencepiece 0.1.97: normalization, BPE by piece
//                                          score or unigram Viterbi, byte fallback
//   Hugging Face tokenizer.json            the tokenizers library: added tokens, normalizers,
//                                          pre-tokenizers, BPE by merge rank, decoders
//   GGUF tokenizer.ggml.*                  llama.cpp: model "llama" (SentencePiece-style BPE by
//                                          score) or "gpt2" (byte-level BPE, tokenizer.ggml.pre)
// docs/tokenizers.md lists what each source supports and where the references disagree.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/token_type.h"

namespace edgedistill::io {
class GgufReader;
class GgufWriter;
}  // namespace edgedistill::io

namespace edgedistill::tok {

enum class VocabSource { sentencepiece, hugging_face, gguf };

// "SentencePiece model", "tokenizer.json", "GGUF".
const char* vocab_source_name(VocabSource source);

struct VocabToken {
  std::string text;  // as the vocabulary spells it (GGUF tokenizer.ggml.tokens)
  float score = 0;   // SentencePiece log probability or merge score; 0 for BPE by rank
  TokenType type = TokenType::normal;
};

// A "llama" vocabulary given directly: what GGUF's tokenizer.ggml.* hold for model "llama", with
// llama.cpp's defaults.
struct LlamaVocabData {
  std::vector<VocabToken> tokens;
  int32_t bos_id = 1, eos_id = 2, unk_id = 0, pad_id = -1;  // -1: none
  bool add_bos = true, add_eos = false;
  bool add_space_prefix = true;  // tokenizer.ggml.add_space_prefix
};

class Vocab {
 public:
  // A SentencePiece model file's bytes; `origin` names it in errors (FileError when malformed,
  // InputError when it uses something not implemented).
  static Vocab from_sentencepiece(std::string model_bytes, const std::string& origin);
  // A tokenizer.json and, when not empty, the tokenizer_config.json beside it (special tokens,
  // add_bos_token). Anything the file uses that is not implemented (a normalizer, pre-tokenizer,
  // model or decoder type, an unknown split expression) is an InputError naming it.
  static Vocab from_hugging_face(std::string_view tokenizer_json, std::string_view config_json,
                                 const std::string& origin);
  // The tokenizer.ggml.* keys of a GGUF file (model "llama" or "gpt2").
  static Vocab from_gguf(const io::GgufReader& file);
  // A "llama" vocabulary (SentencePiece BPE by score, identity normalization, byte fallback when
  // it has the <0xNN> tokens), encoded as libsentencepiece encodes such a model. InputError naming
  // `origin` when the data is inconsistent (duplicate tokens, special ids outside it, byte tokens
  // not spelled <0xNN>).
  static Vocab from_llama_vocab(LlamaVocabData data, const std::string& origin);

  Vocab(Vocab&&) noexcept;
  Vocab& operator=(Vocab&&) noexcept;
  ~Vocab();

  VocabSource source() const;
  // "sentencepiece-bpe", "sentencepiece-unigram", "bpe" or "byte-level-bpe".
  const std::string& algorithm() const;
  // One line for people: algorithm, size, split, source.
  std::string description() const;

  int32_t size() const;
  const VocabToken& token(int32_t id) const;   // id checked: InputError outside the vocabulary
  int32_t id_of(std::string_view text) const;  // the id of a token spelled `text`, or -1

  // Special ids, -1 when the vocabulary has none.
  int32_t bos_id() const;
  int32_t eos_id() const;
  int32_t unk_id() const;
  int32_t pad_id() const;
  // Whether the model family starts a sequence with BOS / ends it with EOS (GGUF add_bos_token,
  // tokenizer.json's post-processor, a SentencePiece model's bos id).
  bool add_bos() const;
  bool add_eos() const;

  // Whether special (control) tokens spelled in a text are read as those tokens when the caller
  // does not say: yes for tokenizer.json and GGUF (their references do), no for SentencePiece
  // models (libsentencepiece never does).
  bool parses_special_by_default() const;
  // Whether decode(encode(text)) gives back every well-formed UTF-8 text: no normalization that
  // changes text and no character without a token.
  bool round_trips() const;

  // Token ids of `text`, without BOS/EOS. Ill-formed UTF-8 is treated as the reference does
  // (docs/tokenizers.md).
  std::vector<int32_t> encode(std::string_view text, bool parse_special) const;
  std::vector<int32_t> encode(std::string_view text) const {
    return encode(text, parses_special_by_default());
  }
  // The text of `ids` as the reference decodes it; special tokens are left out when
  // `skip_special` (control tokens of SentencePiece and GGUF vocabularies always are). An id
  // outside the vocabulary is an InputError.
  std::string decode(const std::vector<int32_t>& ids, bool skip_special) const;
  std::string decode(const std::vector<int32_t>& ids) const;
  // The bytes one token adds to a text being generated (raw bytes, possibly part of a UTF-8
  // character; empty for control tokens).
  std::string piece(int32_t id) const;

  // SHA-256 (hex) of everything that decides encoding and decoding (tokens, scores, types, merges,
  // special ids, normalization, splits, options), in a canonical form: two vocabularies with the
  // same fingerprint give the same ids for every text, whichever file they came from.
  std::string fingerprint() const;

  // The GGUF tokenizer model this vocabulary is written as ("llama" or "gpt2"), or "" with the
  // reason in `why_not`.
  std::string gguf_model(std::string* why_not = nullptr) const;
  // Writes tokenizer.ggml.* (model, tokens, scores, token types, merges, pre, special ids,
  // add_bos/add_eos). InputError when gguf_model() is "".
  void write_gguf(io::GgufWriter& writer) const;

  struct Impl;

 private:
  explicit Vocab(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace edgedistill::tok
