// Human-readable messages on stderr. Machine-readable records go to metrics.jsonl instead.
#pragma once

#include <string>

#include "core/error.h"

namespace edgedistill::core {

enum class LogLevel { quiet = 0, info = 1, debug = 2 };

void set_log_level(LogLevel level);
LogLevel log_level();

// Prints one line to stderr (clearing a progress line first, if one is showing), after the prefix.
void log_line(const std::string& line);

// Starts every later log line (e.g. "rank 1: " in a data-parallel run); empty by default.
void set_log_prefix(const std::string& prefix);

template <class... Args>
void info(Args&&... args) {
  if (log_level() >= LogLevel::info) log_line(str(std::forward<Args>(args)...));
}

template <class... Args>
void debug(Args&&... args) {
  if (log_level() >= LogLevel::debug) log_line(str(std::forward<Args>(args)...));
}

template <class... Args>
void warn(Args&&... args) {
  log_line(str("warning: ", std::forward<Args>(args)...));
}

}  // namespace edgedistill::core
