#include "tokenizer/sentencepiece_model.h"

#include <cctype>
#include <cstring>

#include "core/error.h"
#include "tokenizer/spm_normalizer.h"
#include "tokenizer/utf8.h"

namespace edgedistill::tok {
namespace {

enum WireType : uint32_t { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };

// The U+2581 "lower one eighth block" SentencePiece writes for a space.
constexpr std::string_view kSpaceMarker = "\xE2\x96\x81";

class WireReader {
 public:
  WireReader(std::string_view bytes, const std::string& origin, const char* message)
      : bytes_(bytes), origin_(origin), message_(message) {}

  bool done() const { return position_ >= bytes_.size(); }

  uint64_t varint() {
    uint64_t value = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (done()) fail("a varint runs past the end");
      const auto byte = static_cast<uint8_t>(bytes_[position_++]);
      value |= static_cast<uint64_t>(byte & 0x7F) << shift;
      if ((byte & 0x80) == 0) return value;
    }
    fail("a varint is longer than 10 bytes");
  }

  // Returns {field number, wire type}.
  std::pair<uint32_t, uint32_t> key() {
    const uint64_t key = varint();
    const uint64_t field = key >> 3;
    if (field == 0 || field > (uint64_t{1} << 29)) fail(str("field number ", field, " is invalid"));
    return {static_cast<uint32_t>(field), static_cast<uint32_t>(key & 7)};
  }

  std::string_view length_delimited() {
    const uint64_t length = varint();
    if (length > bytes_.size() - position_) {
      fail(str("a field of ", length, " bytes runs past the end (", bytes_.size() - position_,
               " bytes left)"));
    }
    const std::string_view value = bytes_.substr(position_, static_cast<size_t>(length));
    position_ += static_cast<size_t>(length);
    return value;
  }

  float fixed32_float() {
    if (bytes_.size() - position_ < 4) fail("a 32-bit field runs past the end");
    float value;
    std::memcpy(&value, bytes_.data() + position_, 4);  // little-endian, as is this host
    position_ += 4;
    return value;
  }

  void skip(uint32_t wire_type) {
    switch (wire_type) {
      case kVarint:
        varint();
        return;
      case kLengthDelimited:
        length_delimited();
        return;
      case kFixed32:
        if (bytes_.size() - position_ < 4) fail("a 32-bit field runs past the end");
        position_ += 4;
        return;
      case kFixed64:
        if (bytes_.size() - position_ < 8) fail("a 64-bit field runs past the end");
        position_ += 8;
        return;
      default:
        fail(str("wire type ", wire_type, " is not supported (groups are deprecated)"));
    }
  }

  void expect(uint32_t wire_type, uint32_t expected, const char* field) {
    if (wire_type != expected) {
      fail(str("field '", field, "' has wire type ", wire_type, ", expected ", expected));
    }
  }

  [[noreturn]] void fail(const std::string& what) const {
    throw FileError(str("SentencePiece model ", origin_, " is malformed: in ", message_, ", ", what,
                        "; it is not a SentencePiece model or it is damaged; re-run "
                        "`edgedistill data`"));
  }

 private:
  std::string_view bytes_;
  const std::string& origin_;
  const char* message_;
  size_t position_ = 0;
};

TokenType piece_type(uint64_t value, WireReader& reader) {
  switch (value) {
    case 1:
      return TokenType::normal;
    case 2:
      return TokenType::unknown;
    case 3:
      return TokenType::control;
    case 4:
      return TokenType::user_defined;
    case 5:
      return TokenType::unused;
    case 6:
      return TokenType::byte;
    default:
      reader.fail(str("piece type ", value, " is unknown"));
  }
}

SentencePieceModel::Piece parse_piece(std::string_view bytes, const std::string& origin) {
  WireReader reader(bytes, origin, "a piece");
  SentencePieceModel::Piece piece;
  bool has_text = false;
  while (!reader.done()) {
    const auto [field, wire] = reader.key();
    if (field == 1) {
      reader.expect(wire, kLengthDelimited, "piece");
      piece.text = std::string(reader.length_delimited());
      has_text = true;
    } else if (field == 2) {
      reader.expect(wire, kFixed32, "score");
      piece.score = reader.fixed32_float();
    } else if (field == 3) {
      reader.expect(wire, kVarint, "type");
      piece.type = piece_type(reader.varint(), reader);
    } else {
      reader.skip(wire);
    }
  }
  if (!has_text) reader.fail("a piece has no text");
  return piece;
}

void parse_trainer_spec(std::string_view bytes, const std::string& origin,
                        SentencePieceModel& model) {
  WireReader reader(bytes, origin, "trainer_spec");
  while (!reader.done()) {
    const auto [field, wire_type] = reader.key();
    const auto wire = wire_type;  // a lambda may not capture a structured binding before C++20
    // int32 fields are varints of the 64-bit two's complement (a negative id takes 10 bytes).
    auto int32_value = [&](const char* name) {
      reader.expect(wire, kVarint, name);
      return static_cast<int32_t>(static_cast<int64_t>(reader.varint()));
    };
    switch (field) {
      case 3: {
        const int32_t type = int32_value("model_type");
        static const char* kNames[] = {"", "unigram", "bpe", "word", "char"};
        if (type < 1 || type > 4) reader.fail(str("model_type ", type, " is unknown"));
        model.model_type = kNames[type];
        break;
      }
      case 24:
        model.treat_whitespace_as_suffix = int32_value("treat_whitespace_as_suffix") != 0;
        break;
      case 35:
        model.byte_fallback = int32_value("byte_fallback") != 0;
        break;
      case 44:
        reader.expect(wire, kLengthDelimited, "unk_surface");
        model.unk_surface = std::string(reader.length_delimited());
        break;
      case 40:
        model.unk_id = int32_value("unk_id");
        break;
      case 41:
        model.bos_id = int32_value("bos_id");
        break;
      case 42:
        model.eos_id = int32_value("eos_id");
        break;
      case 43:
        model.pad_id = int32_value("pad_id");
        break;
      default:
        reader.skip(wire);
    }
  }
}

void parse_normalizer_spec(std::string_view bytes, const std::string& origin, const char* message,
                           SentencePieceNormalizerSpec& spec) {
  WireReader reader(bytes, origin, message);
  while (!reader.done()) {
    const auto [field, wire] = reader.key();
    if (field == 1) {
      reader.expect(wire, kLengthDelimited, "name");
      spec.name = std::string(reader.length_delimited());
    } else if (field == 2) {
      reader.expect(wire, kLengthDelimited, "precompiled_charsmap");
      spec.precompiled_charsmap = std::string(reader.length_delimited());
    } else if (field == 3 || field == 4 || field == 5) {
      reader.expect(wire, kVarint, "a flag");
      const bool value = reader.varint() != 0;
      (field == 3   ? spec.add_dummy_prefix
       : field == 4 ? spec.remove_extra_whitespaces
                    : spec.escape_whitespaces) = value;
    } else {
      reader.skip(wire);
    }
  }
}

}  // namespace

SentencePieceModel parse_sentencepiece_model(std::string_view bytes, const std::string& origin) {
  SentencePieceModel model;
  SentencePieceNormalizerSpec normalizer;
  WireReader reader(bytes, origin, "the model");
  bool has_trainer_spec = false;
  while (!reader.done()) {
    const auto [field, wire] = reader.key();
    if (field == 1) {
      reader.expect(wire, kLengthDelimited, "pieces");
      model.pieces.push_back(parse_piece(reader.length_delimited(), origin));
    } else if (field == 2) {
      reader.expect(wire, kLengthDelimited, "trainer_spec");
      parse_trainer_spec(reader.length_delimited(), origin, model);
      has_trainer_spec = true;
    } else if (field == 3) {
      reader.expect(wire, kLengthDelimited, "normalizer_spec");
      parse_normalizer_spec(reader.length_delimited(), origin, "normalizer_spec", normalizer);
    } else if (field == 5) {
      reader.expect(wire, kLengthDelimited, "denormalizer_spec");
      parse_normalizer_spec(reader.length_delimited(), origin, "denormalizer_spec",
                            model.denormalizer);
    } else {
      reader.skip(wire);
    }
  }
  model.normalizer_name = std::move(normalizer.name);
  model.precompiled_charsmap = std::move(normalizer.precompiled_charsmap);
  model.add_dummy_prefix = normalizer.add_dummy_prefix;
  model.remove_extra_whitespaces = normalizer.remove_extra_whitespaces;
  model.escape_whitespaces = normalizer.escape_whitespaces;
  if (model.pieces.empty() || !has_trainer_spec) {
    reader.fail(model.pieces.empty() ? "there are no pieces" : "there is no trainer_spec");
  }
  for (const auto& piece : model.pieces) {
    if (piece.type == TokenType::byte && byte_of_token(piece.text) < 0) {
      reader.fail(str("the byte piece '", piece.text, "' is not spelled <0xNN>"));
    }
  }
  return model;
}

std::string decode_sentencepiece(const SentencePieceModel& model, const std::vector<int32_t>& ids) {
  if (model.denormalizer.precompiled_charsmap.empty()) {
    return decode_sentencepiece(model, ids, nullptr);
  }
  const SpmNormalizer denormalizer(model.denormalizer, false, "the denormalizer of a model");
  return decode_sentencepiece(model, ids, &denormalizer);
}

std::string decode_sentencepiece(const SentencePieceModel& model, const std::vector<int32_t>& ids,
                                 const SpmNormalizer* denormalizer) {
  std::string text;
  std::string byte_run;  // the bytes of consecutive byte pieces, written out when the run ends
  // Each byte that does not begin a well-formed UTF-8 character in the run becomes U+FFFD and the
  // run goes on with the next byte (IsValidDecodeUTF8 consumes one byte of a malformed sequence:
  // SentencePiece 0.1.97 sentencepiece_processor.cc, ProcessBytePieces; util.cc, DecodeUTF8).
  auto flush_byte_run = [&]() {
    for (size_t i = 0; i < byte_run.size();) {
      uint32_t code = 0;
      const size_t length = utf8_decode(byte_run, i, code);
      if (length == 0) {
        utf8_append(text, kReplacementCharacter);
        ++i;
      } else {
        text.append(byte_run, i, length);
        i += length;
      }
    }
    byte_run.clear();
  };
  // Whether the next piece may still lose a leading U+2581 (the dummy prefix), and whether the
  // last piece did lose one: SentencePiece stops stripping once some text was written or one
  // prefix was stripped, except that with remove_extra_whitespaces it strips from every piece
  // while the text is still empty.
  bool at_start = true;
  bool prefix_stripped = false;
  const bool strip_prefix = model.add_dummy_prefix || model.remove_extra_whitespaces;
  const auto vocab_size = static_cast<int64_t>(model.pieces.size());
  for (const int32_t id : ids) {
    if (id < 0 || id >= vocab_size) {
      throw InputError(str("token id ", id, " is outside the SentencePiece vocabulary of ",
                           vocab_size, " pieces; the ids were made with another vocabulary"));
    }
    const auto& piece = model.pieces[static_cast<size_t>(id)];
    if (piece.type == TokenType::byte) {
      byte_run.push_back(static_cast<char>(byte_of_token(piece.text)));
      continue;
    }
    flush_byte_run();
    if (prefix_stripped || !text.empty()) at_start = false;
    prefix_stripped = false;
    if (piece.type == TokenType::control) continue;
    if (piece.type == TokenType::unknown) {
      text += model.unk_surface;
      continue;
    }
    std::string_view surface = piece.text;
    if (at_start && strip_prefix && surface.substr(0, kSpaceMarker.size()) == kSpaceMarker) {
      surface.remove_prefix(kSpaceMarker.size());
      prefix_stripped = !model.remove_extra_whitespaces;
    }
    for (size_t i = 0; i < surface.size();) {
      if (surface.compare(i, kSpaceMarker.size(), kSpaceMarker) == 0) {
        text.push_back(' ');
        i += kSpaceMarker.size();
      } else {
        text.push_back(surface[i++]);
      }
    }
  }
  flush_byte_run();
  return denormalizer != nullptr ? denormalizer->normalize(text) : text;
}

}  // namespace edgedistill::tok
