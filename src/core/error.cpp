#include "core/error.h"

namespace edgedistill {

void throw_internal_error(const char* file, int line, const char* condition,
                          const std::string& detail) {
  std::string message =
      str("internal error at ", file, ":", line, ": check '", condition, "' failed");
  if (!detail.empty()) message += str(" (", detail, ")");
  message += "; this is a bug in edgedistill, please report it with the command you ran";
  throw InternalError(message);
}

}  // namespace edgedistill
