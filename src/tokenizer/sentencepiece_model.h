// A dependency-free reader of SentencePiece model files (the serialized ModelProto of
// sentencepiece_model.proto), and SentencePiece's decoding rule.
//
// Why our own: Debian 12's libsentencepiece carries a private protobuf 3.14 runtime whose exported
// symbols collide with the protobuf 3.21 that LibTorch loads, so libsentencepiece cannot be loaded
// into a process that uses LibTorch (it crashes during library initialisation). This reader, the
// normalizer (spm_normalizer.h) and the encoder (spm_encoder.h) replace it.
//
// Wire format (protobuf): each field is a varint key (field_number << 3 | wire_type) then its
// value: wire type 0 varint, 1 fixed 64-bit, 2 length-delimited bytes, 5 fixed 32-bit. A message
// field that occurs twice is merged (later fields win), as protobuf does.
//   ModelProto     { repeated SentencePiece pieces = 1; TrainerSpec trainer_spec = 2;
//                    NormalizerSpec normalizer_spec = 3; NormalizerSpec denormalizer_spec = 5; }
//   SentencePiece  { string piece = 1; float score = 2; Type type = 3 [default NORMAL]; }
//                  Type: NORMAL 1, UNKNOWN 2, CONTROL 3, USER_DEFINED 4, UNUSED 5, BYTE 6
//   TrainerSpec    { ModelType model_type = 3 [default UNIGRAM]; int32 vocab_size = 4;
//                    bool treat_whitespace_as_suffix = 24; bool byte_fallback = 35;
//                    int32 unk_id = 40 [0]; bos_id = 41 [1]; eos_id = 42 [2]; pad_id = 43 [-1];
//                    string unk_surface = 44 [" \u2047 "]; }
//                  ModelType: UNIGRAM 1, BPE 2, WORD 3, CHAR 4
//   NormalizerSpec { string name = 1; bytes precompiled_charsmap = 2;
//                    bool add_dummy_prefix = 3 [true]; bool remove_extra_whitespaces = 4 [true];
//                    bool escape_whitespaces = 5 [true]; }
// (sentencepiece_model.proto of SentencePiece 0.1.97.)
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/token_type.h"

namespace edgedistill::tok {

class SpmNormalizer;

// NormalizerSpec: how text is normalized before encoding (or, as the denormalizer, after decoding).
struct SentencePieceNormalizerSpec {
  std::string name;
  // The compiled normalization rules (spm_normalizer.h has the layout); empty: no character
  // mapping (the "identity" rule).
  std::string precompiled_charsmap;
  bool add_dummy_prefix = true;
  bool remove_extra_whitespaces = true;
  bool escape_whitespaces = true;
};

struct SentencePieceModel {
  struct Piece {
    std::string text;
    float score = 0;
    TokenType type = TokenType::normal;
  };
  std::vector<Piece> pieces;
  std::string model_type = "unigram";  // "unigram", "bpe", "word" or "char"
  bool byte_fallback = false;
  int32_t unk_id = 0, bos_id = 1, eos_id = 2, pad_id = -1;
  std::string normalizer_name;
  bool add_dummy_prefix = true;
  bool remove_extra_whitespaces = true;
  bool escape_whitespaces = true;
  std::string precompiled_charsmap;            // NormalizerSpec.precompiled_charsmap
  bool treat_whitespace_as_suffix = false;     // TrainerSpec: the space marker ends words instead
  std::string unk_surface = " \xE2\x81\x87 ";  // how decoding spells <unk>: " \u2047 "
  // ModelProto.denormalizer_spec; SentencePiece applies it to decoded text only when its charsmap
  // is not empty (models trained with denormalization_rule_tsv).
  SentencePieceNormalizerSpec denormalizer;

  // normalizer_spec as one value (normalizer_name ... precompiled_charsmap).
  SentencePieceNormalizerSpec normalizer() const {
    return {normalizer_name, precompiled_charsmap, add_dummy_prefix, remove_extra_whitespaces,
            escape_whitespaces};
  }
};

// Parses a serialized ModelProto. Every read is bounds-checked; a truncated or malformed file is a
// FileError naming `origin` and the field. Unknown fields are skipped, as protobuf does.
SentencePieceModel parse_sentencepiece_model(std::string_view bytes, const std::string& origin);

// SentencePiece 0.1.97's decoding (SentencePieceProcessor::Decode): control pieces vanish;
// <unk> reads unk_surface; each run of byte pieces becomes its bytes, except that every byte that
// does not begin a well-formed UTF-8 character there becomes U+FFFD; U+2581 becomes a space; at
// the start, the first piece that begins with U+2581 loses it when add_dummy_prefix or
// remove_extra_whitespaces is set (with remove_extra_whitespaces, every such piece until some text
// has appeared); unused pieces read as their text; then the denormalizer, if the model has one.
// An id outside the vocabulary is an InputError. This builds the model's denormalizer on every
// call; SentencePieceCodec::decode (spm_encoder.h) builds it once.
std::string decode_sentencepiece(const SentencePieceModel& model, const std::vector<int32_t>& ids);

// The same with the denormalizer built by the caller from model.denormalizer (nullptr: none).
std::string decode_sentencepiece(const SentencePieceModel& model, const std::vector<int32_t>& ids,
                                 const SpmNormalizer* denormalizer);

}  // namespace edgedistill::tok
