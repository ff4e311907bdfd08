// Runs the independent Python references in tests/python/ (Debian's /usr/bin/python3 with
// python3-sentencepiece, python3-regex and python3-numpy, installed by scripts/setup.sh).
#pragma once

#include <string>
#include <vector>

namespace edgedistill::test {

// Runs `/usr/bin/python3 tests/python/SCRIPT ARGS...` and returns its standard output. Throws
// std::runtime_error with the script's standard error (and the install hint) when it fails, so
// the test fails instead of passing without its reference.
std::string run_python(const std::string& script, const std::vector<std::string>& args);

}  // namespace edgedistill::test
