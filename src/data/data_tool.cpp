#include "data/data_tool.h"

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "core/files.h"
#include "core/log.h"

extern char** environ;

namespace edgedistill::data {

namespace fs = std::filesystem;

inline constexpr int kToolExitBadInput = 2;  // the tool's exit code for a user-fixable error

fs::path data_tool_path() {
  if (const char* forced = std::getenv("EDGEDISTILL_DATA_TOOL"); forced != nullptr && *forced) {
    if (::access(forced, X_OK) != 0) {
      throw InputError(str("EDGEDISTILL_DATA_TOOL='", forced,
                           "' is not an executable file; point it at the edgedistill-data program "
                           "or unset it"));
    }
    return forced;
  }
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  const fs::path beside = self.parent_path() / "edgedistill-data";
  if (!ec && ::access(beside.c_str(), X_OK) == 0) return beside;
  throw InputError(
      str("preparing SentencePiece data needs the edgedistill-data program, which is "
          "not beside ",
          self.string(), "; build it (scripts/setup.sh builds both) or set EDGEDISTILL_DATA_TOOL"));
}

bool needs_sentencepiece(const DataConfig& config) {
  // Only training a tokenizer needs it: encoding is tok::Vocab's.
  return config.kind == "text" && config.tokenizer.from.empty() &&
         config.tokenizer.kind == "sentencepiece";
}

void prepare_data_in_tool(const DataConfig& config, const fs::path& out_dir) {
  const fs::path tool = data_tool_path();
  const fs::path parent = fs::absolute(out_dir).parent_path();
  core::create_directories(parent, "data directory");
  const std::string stem = str(".edgedistill-data-", ::getpid());
  const fs::path config_file = parent / (stem + ".config.json");
  const fs::path error_file = parent / (stem + ".error");
  struct Cleanup {
    fs::path a, b;
    ~Cleanup() {
      std::error_code ignored;
      fs::remove(a, ignored);
      fs::remove(b, ignored);
    }
  } cleanup{config_file, error_file};
  core::write_file_atomic(config_file, core::to_json(config).dump(2) + "\n");

  std::vector<std::string> arguments = {
      tool.string(), "prepare",        "--config",     config_file.string(),
      "--out",       out_dir.string(), "--error-file", error_file.string()};
  if (core::log_level() == core::LogLevel::quiet) arguments.emplace_back("--quiet");
  std::vector<char*> argv;
  for (auto& argument : arguments) argv.push_back(argument.data());
  argv.push_back(nullptr);
  core::debug("running ", tool.string(), " to prepare the data");
  pid_t child = 0;
  const int spawn_error =
      ::posix_spawn(&child, tool.c_str(), nullptr, nullptr, argv.data(), environ);
  if (spawn_error != 0) {
    throw InputError(str("cannot run '", tool.string(), "': ", std::strerror(spawn_error)));
  }
  int status = 0;
  while (::waitpid(child, &status, 0) < 0) {
    if (errno != EINTR) throw InternalError(str("waitpid failed: ", std::strerror(errno)));
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return;
  std::error_code ec;
  if (WIFEXITED(status) && WEXITSTATUS(status) == kToolExitBadInput && fs::exists(error_file, ec)) {
    throw InputError(core::read_file(error_file, "data tool error"));
  }
  if (WIFSIGNALED(status)) {
    throw RunError(
        str("data preparation ('", tool.string(), "') was stopped by signal ", WTERMSIG(status)));
  }
  throw RunError(str("data preparation ('", tool.string(), "') failed with exit status ",
                     WEXITSTATUS(status), "; its messages are above"));
}

}  // namespace edgedistill::data
