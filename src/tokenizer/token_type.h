// The token types of a vocabulary, numbered as SentencePiece's ModelProto and GGUF's
// tokenizer.ggml.token_type number them (llama.cpp reads the same numbers).
#pragma once

#include <cstdint>

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

}  // namespace edgedistill::tok
