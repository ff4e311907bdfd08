// The token types of a vocabulary, numbered as SentencePiece's ModelProto and GGUF's
// tokenizer.ggml.token_type number them (llama.cpp reads the same numbers).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace edgedistill::tok {

enum class TokenType : int32_t {
  normal = 1,
  unknown = 2,
  control = 3,
  user_defined = 4,
  unused = 5,
  byte = 6,
};

// "normal", "unknown", ...
const char* token_type_name(TokenType type);

// The byte a byte token spelled "<0xNN>" (uppercase hex, as SentencePiece, Hugging Face's byte
// fallback and GGUF spell them) stands for, or -1 for any other text.
int byte_of_token(std::string_view text);
// "<0x0A>" for byte 10.
std::string byte_token(uint8_t byte);

}  // namespace edgedistill::tok
