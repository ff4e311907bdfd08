// Runs the independent Python references in tests/python/ (Debian's /usr/bin/python3 with
// python3-sentencepiece, python3-regex and python3-numpy, installed by scripts/setup.sh).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace edgedistill::test {

// Runs `/usr/bin/python3 tests/python/SCRIPT ARGS...` and returns its standard output. Throws
// std::runtime_error with the script's standard error (and the install hint) when it fails, so
// the test fails instead of passing without its reference.
std::string run_python(const std::string& script, const std::vector<std::string>& args);

// The logits [ids.size() * vocab] of a Hugging Face model folder for `ids`, from the independent
// PyTorch-eager forward of tests/python/hf_model.py (float32 values, exact in a float).
std::vector<float> hf_reference_logits(const std::string& folder, const std::vector<int32_t>& ids);

}  // namespace edgedistill::test
