#include "data/byte_tokenizer.h"

#include "core/error.h"
#include "core/sha256.h"

namespace edgedistill::data {

ByteTokenizer::ByteTokenizer() {
  // The hash covers a canonical listing of the vocabulary (id, piece, type), so a change to the
  // byte layout would give another hash and shards made with the old one would be refused.
  std::string description = "edgedistill byte tokenizer\n";
  for (int32_t id = 0; id < kVocabSize; ++id) {
    description += str(id, "\t", piece(id), "\t", static_cast<int>(type(id)), "\n");
  }
  hash_ = core::sha256_hex(description);
}

std::vector<int32_t> ByteTokenizer::encode(std::string_view text) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size());
  for (const char c : text) ids.push_back(kFirstByteId + static_cast<uint8_t>(c));
  return ids;
}

std::string ByteTokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string text;
  text.reserve(ids.size());
  for (const int32_t id : ids) {
    check_id(id);
    if (id >= kFirstByteId) {
      text.push_back(static_cast<char>(id - kFirstByteId));
    } else if (id == kUnkId) {
      text += "\xEF\xBF\xBD";  // U+FFFD REPLACEMENT CHARACTER
    }
  }
  return text;
}

std::string ByteTokenizer::piece(int32_t id) const {
  check_id(id);
  switch (id) {
    case kUnkId:
      return "<unk>";
    case kBosId:
      return "<s>";
    case kEosId:
      return "</s>";
    default:
      return byte_piece(static_cast<uint8_t>(id - kFirstByteId));
  }
}

float ByteTokenizer::score(int32_t id) const {
  check_id(id);
  return 0.0f;
}

TokenType ByteTokenizer::type(int32_t id) const {
  check_id(id);
  if (id == kUnkId) return TokenType::unknown;
  if (id < kFirstByteId) return TokenType::control;
  return TokenType::byte;
}

nlohmann::ordered_json ByteTokenizer::save_model_files(const fs::path& /*dir*/) const {
  return nlohmann::ordered_json::object();
}

void ByteTokenizer::check_id(int32_t id) const {
  if (id < 0 || id >= kVocabSize) {
    throw InputError(str("token id ", id, " is outside the byte tokenizer's vocabulary (0..",
                         kVocabSize - 1, "); was the model trained with another tokenizer?"));
  }
}

}  // namespace edgedistill::data
