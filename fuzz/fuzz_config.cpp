// The config binding every recipe goes through (core/config.h): a JSON file, then `--set`
// overrides (the lines after the first NUL byte), then validation, on a config with each kind of
// field a recipe has (numbers, strings, paths, flags, a nested section, a list of sections).
// Bad input may only end in InputError; a config that loads must survive the to_json round trip
// a run's config.json takes on resume.
#include <sstream>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/error.h"
#include "fuzz_input.h"

namespace {

using namespace edgedistill;

struct Source {
  std::string kind = "text_file";
  std::filesystem::path path;
  double weight = 1.0;

  template <class V>
  void visit(V& v) {
    v.field("kind", kind, "source kind");
    v.field("path", path, "a file");
    v.field("weight", weight, "sampling weight");
  }
  void validate(const std::string& at) const {
    if (!(weight >= 0)) throw ConfigError(at + ".weight must be >= 0");
  }
};

struct Section {
  int64_t steps = 10;
  int batch_size = 4;
  double lr = 1e-3;
  bool flag = false;

  template <class V>
  void visit(V& v) {
    v.field("steps", steps, "steps");
    v.field("batch_size", batch_size, "batch");
    v.field("lr", lr, "learning rate");
    v.field("flag", flag, "a flag");
  }
  void validate(const std::string& at) const {
    if (steps < 1 || batch_size < 1) throw ConfigError(at + ": steps and batch_size must be >= 1");
  }
};

struct Recipe {
  std::string name = "fuzz";
  int64_t seed = 1;
  Section train;
  std::vector<Source> sources{Source{}};

  template <class V>
  void visit(V& v) {
    v.field("name", name, "name");
    v.field("seed", seed, "seed");
    v.field("train", train, "training");
    v.field("sources", sources, "sources");
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  const size_t nul = input.find('\0');
  const std::string json = input.substr(0, nul);
  std::vector<std::string> overrides;
  if (nul != std::string::npos) {
    std::istringstream lines(input.substr(nul + 1));
    for (std::string line; std::getline(lines, line);) overrides.push_back(line);
  }
  const auto file =
      fuzz::input_file(reinterpret_cast<const uint8_t*>(json.data()), json.size(), ".json");
  Recipe recipe;
  try {
    recipe = core::load_config<Recipe>(file, overrides);
  } catch (const InputError&) {
    return 0;
  }
  // What loaded must load again from its own JSON, unchanged.
  const auto saved = core::to_json(recipe);
  const auto again = core::config_from_saved_json<Recipe>(saved, file);
  if (core::to_json(again) != saved) std::abort();
  return 0;
}
