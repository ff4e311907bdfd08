// Error channels (STYLE.md habit 6).
//
// - Typed exceptions for anything a user can cause (a file, a config value, the data). The message
//   names the thing, what was expected, what was found, and the fix. `main` prints it on one line
//   and exits with code 2.
// - GateFailure: a verification gate was not met (exit code 1).
// - ED_CHECK: our own invariants. A failure is a bug in edgedistill (exit code 3).
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace edgedistill {

// Concatenates the arguments with operator<<: str("step ", 12, " of ", n).
template <class... Args>
std::string str(Args&&... args) {
  std::ostringstream out;
  (out << ... << std::forward<Args>(args));
  return out.str();
}

// The first line of an error message (LibTorch's and c10d's carry a backtrace after it).
inline std::string first_line(const std::string& text) {
  return text.substr(0, text.find('\n'));
}

// Something the user can fix. Exit code 2.
class InputError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A config file, key or value is wrong.
class ConfigError : public InputError {
 public:
  using InputError::InputError;
};

// A file is missing, unreadable, unwritable, corrupt, truncated, foreign or from a newer version.
class FileError : public InputError {
 public:
  using InputError::InputError;
};

// The data or the run itself went wrong in a way the user must act on (e.g. a non-finite loss).
class RunError : public InputError {
 public:
  using InputError::InputError;
};

// A verification gate failed. Exit code 1.
class GateFailure : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// An invariant of edgedistill's own code broke. Exit code 3.
class InternalError : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

[[noreturn]] void throw_internal_error(const char* file, int line, const char* condition,
                                       const std::string& detail);

}  // namespace edgedistill

// Checks an invariant of our own code (not user input: use the typed exceptions for that). The
// arguments after the condition describe the state, as for str(): ED_CHECK(n > 0, "n=", n).
#define ED_CHECK(condition, ...)                                            \
  do {                                                                      \
    if (!(condition)) {                                                     \
      ::edgedistill::throw_internal_error(__FILE__, __LINE__, #condition,   \
                                          ::edgedistill::str(__VA_ARGS__)); \
    }                                                                       \
  } while (false)
