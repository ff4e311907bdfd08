#include "python_reference.h"

#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "test_util.h"

namespace edgedistill::test {

std::string run_python(const std::string& script, const std::vector<std::string>& args) {
  const std::filesystem::path path =
      std::filesystem::path(EDGEDISTILL_SOURCE_DIR) / "tests" / "python" / script;
  TempDir scratch;
  const std::filesystem::path stderr_file = scratch.path() / "stderr.txt";
  std::string command = "/usr/bin/python3 " + shell_quote(path.string());
  for (const auto& arg : args) command += " " + shell_quote(arg);
  command += " 2> " + shell_quote(stderr_file.string());
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) throw std::runtime_error("cannot start /usr/bin/python3");
  std::string out;
  char buffer[1 << 16];
  size_t got = 0;
  while ((got = std::fread(buffer, 1, sizeof(buffer), pipe)) > 0) out.append(buffer, got);
  const int status = ::pclose(pipe);
  if (status != 0) {
    std::ifstream in(stderr_file);
    std::stringstream err;
    err << in.rdbuf();
    throw std::runtime_error("python reference " + script + " failed (status " +
                             std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : -1) + "):\n" +
                             err.str() +
                             "\n(scripts/setup.sh installs python3-sentencepiece, python3-regex "
                             "and python3-numpy)");
  }
  return out;
}

std::vector<float> hf_reference_logits(const std::string& folder, const std::vector<int32_t>& ids) {
  std::string list;
  for (const int32_t id : ids) list += (list.empty() ? "" : ",") + std::to_string(id);
  const auto json = nlohmann::json::parse(run_python("hf_model.py", {"forward", folder, list}));
  std::vector<float> out;
  for (const auto& row : json.at("logits")) {
    for (const auto& v : row) out.push_back(v.get<float>());
  }
  return out;
}

}  // namespace edgedistill::test
