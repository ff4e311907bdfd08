#include "tokenizer/token_type.h"

namespace edgedistill::tok {

const char* token_type_name(TokenType type) {
  switch (type) {
    case TokenType::normal:
      return "normal";
    case TokenType::unknown:
      return "unknown";
    case TokenType::control:
      return "control";
    case TokenType::user_defined:
      return "user_defined";
    case TokenType::unused:
      return "unused";
    case TokenType::byte:
      return "byte";
  }
  return "invalid";
}

}  // namespace edgedistill::tok
