// Helpers shared by the test executables.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/files.h"

namespace edgedistill::test {

// A fresh directory under the system temp directory, removed at scope exit.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "edgedistill-test-XXXXXX");
    char* made = ::mkdtemp(pattern.data());
    ED_CHECK(made != nullptr, "mkdtemp failed");
    path_ = made;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// Sets (or, with nullptr, unsets) an environment variable for the scope, restoring it after.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value != nullptr) {
      ::setenv(name, value, 1);
    } else {
      ::unsetenv(name);
    }
  }
  ~ScopedEnv() {
    if (old_) {
      ::setenv(name_, old_->c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  std::optional<std::string> old_;
};

inline std::filesystem::path source_dir() {
  return EDGEDISTILL_SOURCE_DIR;
}
inline std::filesystem::path binary_dir() {
  return EDGEDISTILL_BINARY_DIR;
}

// `text` in single quotes for /bin/sh.
inline std::string shell_quote(const std::string& text) {
  std::string quoted = "'";
  for (char c : text) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

struct CommandResult {
  int exit_code = -1;
  std::string out, err;
};

// Runs `program` with `arguments` (after `environment`, e.g. "WORLD_SIZE=2 RANK=0"), capturing
// stdout and stderr in files under `scratch`.
inline CommandResult run_program(const std::filesystem::path& program,
                                 const std::vector<std::string>& arguments,
                                 const std::filesystem::path& scratch,
                                 const std::string& environment = "") {
  std::string command = environment.empty() ? "" : environment + " ";
  command += shell_quote(program.string());
  for (const auto& argument : arguments) command += " " + shell_quote(argument);
  const std::filesystem::path out = scratch / "stdout.txt", err = scratch / "stderr.txt";
  command += " >" + shell_quote(out.string()) + " 2>" + shell_quote(err.string());
  const int status = std::system(command.c_str());
  CommandResult result;
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  result.out = core::read_file(out, "stdout");
  result.err = core::read_file(err, "stderr");
  return result;
}

inline std::filesystem::path edgedistill_program() {
  return binary_dir() / "bin" / "edgedistill";
}

// Runs bin/edgedistill (see run_program).
inline CommandResult run_edgedistill(const std::vector<std::string>& arguments,
                                     const std::filesystem::path& scratch,
                                     const std::string& environment = "") {
  return run_program(edgedistill_program(), arguments, scratch, environment);
}

}  // namespace edgedistill::test
