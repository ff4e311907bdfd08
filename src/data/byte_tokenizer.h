// The byte tokenizer: every byte is its own token. No training, exact round trip for any bytes,
// and a vocabulary that exports as a GGUF "llama" tokenizer (259 pieces).
//
//   id 0 <unk> (unknown), 1 <s> (control), 2 </s> (control), 3 + b: byte b as "<0xNN>" (byte).
#pragma once

#include <string>

#include "data/tokenizer.h"

namespace edgedistill::data {

class ByteTokenizer final : public Tokenizer {
 public:
  static constexpr int32_t kFirstByteId = 3;
  static constexpr int32_t kVocabSize = kFirstByteId + 256;

  ByteTokenizer();

  std::vector<int32_t> encode(std::string_view text) const override;
  // <unk> decodes to U+FFFD (it never comes out of encode).
  std::string decode(const std::vector<int32_t>& ids) const override;
  int32_t vocab_size() const override { return kVocabSize; }
  std::string piece(int32_t id) const override;
  // Every piece scores 0: there is nothing to rank.
  float score(int32_t id) const override;
  TokenType type(int32_t id) const override;
  std::string kind() const override { return "byte"; }
  const std::string& hash() const override { return hash_; }
  nlohmann::ordered_json save_model_files(const fs::path& dir) const override;

 private:
  void check_id(int32_t id) const;

  std::string hash_;
};

}  // namespace edgedistill::data
