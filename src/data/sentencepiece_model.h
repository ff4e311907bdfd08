// A dependency-free reader of SentencePiece model files (the serialized ModelProto of
// sentencepiece_model.proto), and SentencePiece's decoding rule.
//
// Why our own: Debian 12's libsentencepiece carries a private protobuf 3.14 runtime whose exported
// symbols collide with the protobuf 3.21 that LibTorch loads, so libsentencepiece cannot be loaded
// into a process that uses LibTorch (it crashes during library initialisation). Everything that
// only needs the vocabulary (piece strings, scores, types, decoding, export to GGUF) uses this
// reader; training and encoding run where libsentencepiece may be loaded (sentencepiece_backend.h).
//
// Wire format (protobuf): each field is a varint key (field_number << 3 | wire_type) then its
// value: wire type 0 varint, 1 fixed 64-bit, 2 length-delimited bytes, 5 fixed 32-bit.
//   ModelProto     { repeated SentencePiece pieces = 1; TrainerSpec trainer_spec = 2;
//                    NormalizerSpec normalizer_spec = 3; }
//   SentencePiece  { string piece = 1; float score = 2; Type type = 3 [default NORMAL]; }
//                  Type: NORMAL 1, UNKNOWN 2, CONTROL 3, USER_DEFINED 4, UNUSED 5, BYTE 6
//   TrainerSpec    { ModelType model_type = 3 [default UNIGRAM]; int32 vocab_size = 4;
//                    bool byte_fallback = 35; int32 unk_id = 40 [0]; bos_id = 41 [1];
//                    eos_id = 42 [2]; pad_id = 43 [-1]; }   ModelType: UNIGRAM 1, BPE 2, WORD 3,
//                    CHAR 4
//   NormalizerSpec { string name = 1; bool add_dummy_prefix = 3 [true];
//                    bool remove_extra_whitespaces = 4 [true]; bool escape_whitespaces = 5 [true];
//                    }
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "data/tokenizer.h"

namespace edgedistill::data {

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
};

// Parses a serialized ModelProto. Every read is bounds-checked; a truncated or malformed file is a
// FileError naming `origin` and the field. Unknown fields are skipped, as protobuf does.
SentencePieceModel parse_sentencepiece_model(std::string_view bytes, const std::string& origin);

// SentencePiece's decoding: control pieces vanish, <unk> reads " \u2047 ", runs of byte pieces
// become their bytes, U+2581 becomes a space, and the space the encoder prefixed to the text
// (add_dummy_prefix) is removed from the start. Ids must be in range (checked by the caller).
std::string decode_sentencepiece(const SentencePieceModel& model, const std::vector<int32_t>& ids);

}  // namespace edgedistill::data
