// Config binding: defaults < file < --set, unknown keys, types, includes, key listing.
#include <catch2/catch.hpp>

#include "core/config.h"
#include "core/files.h"
#include "test_util.h"

using namespace edgedistill;
namespace fs = std::filesystem;

namespace {

struct OptimConfig {
  double lr = 3e-4;
  int64_t steps = 100;
  std::vector<int> milestones{10, 20};
  template <class V>
  void visit(V& v) {
    v.field("lr", lr, "peak learning rate");
    v.field("steps", steps, "optimizer steps");
    v.field("milestones", milestones, "steps at which something happens");
  }
  void validate(const std::string& at) const {
    if (lr <= 0) core::config_fail(core::key_path(at, "lr"), "must be positive");
  }
};

struct MlpSection {
  std::vector<int> hidden{1200, 1200};
  template <class V>
  void visit(V& v) {
    v.field("hidden", hidden, "hidden layer widths");
  }
};

struct LlamaSection {
  int dim = 256;
  template <class V>
  void visit(V& v) {
    v.field("dim", dim, "model width");
  }
};

struct ModelSection {
  std::string arch = "llama";
  LlamaSection llama;
  MlpSection mlp;
  template <class V>
  void visit(V& v) {
    v.choice("arch", arch, {"llama", "mlp"}, "architecture");
    if (arch == "llama") v.field("llama", llama, "decoder settings");
    if (arch == "mlp") v.field("mlp", mlp, "classifier settings");
  }
};

struct SourceSection {
  std::string kind = "kjv";
  fs::path path;
  template <class V>
  void visit(V& v) {
    v.choice("kind", kind, {"kjv", "text"}, "source kind");
    if (kind == "text") v.field("path", path, "text file");
  }
};

struct Recipe {
  std::string name = "demo";
  bool verbose = false;
  OptimConfig optim;
  ModelSection model;
  std::vector<SourceSection> sources{SourceSection{}};
  template <class V>
  void visit(V& v) {
    v.field("name", name, "run name");
    v.field("verbose", verbose, "print more");
    v.field("optim", optim, "optimizer");
    v.field("model", model, "model");
    v.field("sources", sources, "data sources");
  }
};

fs::path write(const fs::path& path, const std::string& text) {
  core::write_file_atomic(path, text);
  return path;
}

}  // namespace

TEST_CASE("defaults, then the file, then --set, in that order") {
  test::TempDir dir;
  const auto file = write(dir.path() / "r.json", R"({"optim": {"lr": 0.01, "steps": 5}})");
  auto recipe = core::load_config<Recipe>(file, {"optim.steps=7", "verbose=true"});
  CHECK(recipe.optim.lr == 0.01);  // file
  CHECK(recipe.optim.steps == 7);  // --set beats the file
  CHECK(recipe.verbose);
  CHECK(recipe.name == "demo");  // default
  CHECK(recipe.optim.milestones == std::vector<int>{10, 20});
  recipe = core::load_config<Recipe>("", {"optim.milestones=1,2,3"});
  CHECK(recipe.optim.milestones == std::vector<int>{1, 2, 3});
  recipe = core::load_config<Recipe>("", {"optim.milestones=[4]"});
  CHECK(recipe.optim.milestones == std::vector<int>{4});
  recipe = core::load_config<Recipe>("", {"optim.steps=1e3"});
  CHECK(recipe.optim.steps == 1000);
}

TEST_CASE("unknown keys name the path and the nearest valid key") {
  test::TempDir dir;
  const auto file = write(dir.path() / "r.json", R"({"optim": {"lrr": 0.01}})");
  CHECK_THROWS_AS(core::load_config<Recipe>(file, {}), ConfigError);
  CHECK_THROWS_WITH(core::load_config<Recipe>(file, {}),
                    Catch::Contains("'optim.lrr'") && Catch::Contains("did you mean 'optim.lr'"));
  CHECK_THROWS_WITH(core::load_config<Recipe>("", {"optim.stpes=3"}),
                    Catch::Contains("optim.stpes") && Catch::Contains("optim.steps"));
  CHECK_THROWS_WITH(core::load_config<Recipe>("", {"optim.lr.x=3"}),
                    Catch::Contains("has no sub-keys"));
  CHECK_THROWS_WITH(core::load_config<Recipe>("", {"zzzzzz=1"}),
                    Catch::Contains("valid keys here: name, verbose, optim, model, sources"));
  // Keys of a section that is not selected are unknown.
  CHECK_THROWS_WITH(core::load_config<Recipe>("", {"model.mlp.hidden=5"}),
                    Catch::Contains("unknown config key 'model.mlp'"));
}

TEST_CASE("wrong types name the expected type") {
  test::TempDir dir;
  CHECK_THROWS_WITH(
      core::load_config<Recipe>(write(dir.path() / "a.json", R"({"optim": {"lr": "fast"}})"), {}),
      Catch::Contains("'optim.lr' expects a number") && Catch::Contains("\"fast\""));
  CHECK_THROWS_WITH(
      core::load_config<Recipe>(write(dir.path() / "b.json", R"({"optim": {"steps": 2.5}})"), {}),
      Catch::Contains("'optim.steps' expects an integer"));
  CHECK_THROWS_WITH(
      core::load_config<Recipe>(write(dir.path() / "c.json", R"({"verbose": 1})"), {}),
      Catch::Contains("'verbose' expects a boolean"));
  CHECK_THROWS_WITH(
      core::load_config<Recipe>("", {"optim.steps=many"}),
      Catch::Contains("'optim.steps' expects an integer") && Catch::Contains("'many'"));
  CHECK_THROWS_WITH(core::load_config<Recipe>(
                        write(dir.path() / "d.json", R"({"optim": {"milestones": [1, "x"]}})"), {}),
                    Catch::Contains("optim.milestones[1]"));
  CHECK_THROWS_WITH(
      core::load_config<Recipe>("", {"model.arch=mpl"}),
      Catch::Contains("must be one of 'llama', 'mlp'") && Catch::Contains("did you mean 'mlp'"));
  CHECK_THROWS_WITH(core::load_config<Recipe>("", {"optim.lr=-1"}),
                    Catch::Contains("optim.lr: must be positive"));
}

TEST_CASE("a missing or malformed config file is a config error naming it") {
  test::TempDir dir;
  CHECK_THROWS_WITH(core::load_config<Recipe>(dir.path() / "nope.json", {}),
                    Catch::Contains("nope.json") && Catch::Contains("does not exist"));
  CHECK_THROWS_AS(core::load_config<Recipe>(write(dir.path() / "bad.json", "{"), {}), ConfigError);
}

TEST_CASE("a choice selects which section exists") {
  test::TempDir dir;
  const auto file =
      write(dir.path() / "m.json", R"({"model": {"arch": "mlp", "mlp": {"hidden": [64]}}})");
  const auto recipe = core::load_config<Recipe>(file, {});
  CHECK(recipe.model.arch == "mlp");
  CHECK(recipe.model.mlp.hidden == std::vector<int>{64});
  const auto printed = core::to_json(recipe);
  CHECK(printed["model"].contains("mlp"));
  CHECK_FALSE(printed["model"].contains("llama"));
  // --set switches the section and then reaches into it.
  const auto switched = core::load_config<Recipe>("", {"model.arch=mlp", "model.mlp.hidden=8,8"});
  CHECK(switched.model.mlp.hidden == std::vector<int>{8, 8});
}

TEST_CASE("a string section is a file included relative to the file naming it") {
  test::TempDir dir;
  core::create_directories(dir.path() / "models", "test");
  core::create_directories(dir.path() / "recipes", "test");
  write(dir.path() / "models" / "small.json", R"({"arch": "llama", "llama": {"dim": 64}})");
  const auto recipe_file =
      write(dir.path() / "recipes" / "r.json",
            R"({"model": "../models/small.json", "sources": [{"kind": "text", "path": "t.txt"}]})");
  const auto recipe = core::load_config<Recipe>(recipe_file, {"model.llama.dim=96"});
  CHECK(recipe.model.llama.dim == 96);  // included, then overridden
  REQUIRE(recipe.sources.size() == 1);
  CHECK(recipe.sources[0].path == (dir.path() / "recipes" / "t.txt").lexically_normal());
  // Indexing a list of sections from --set.
  const auto indexed = core::load_config<Recipe>(recipe_file, {"sources.0.path=/abs/x.txt"});
  CHECK(indexed.sources[0].path == fs::path("/abs/x.txt"));
  const auto bracketed = core::load_config<Recipe>(recipe_file, {"sources[0].path=/abs/y.txt"});
  CHECK(bracketed.sources[0].path == fs::path("/abs/y.txt"));
  CHECK_THROWS_WITH(core::load_config<Recipe>(recipe_file, {"sources.3.kind=kjv"}),
                    Catch::Contains("expected an index from 0 to 0"));
  CHECK_THROWS_WITH(
      core::load_config<Recipe>(
          write(dir.path() / "recipes" / "bad.json", R"({"model": "none.json"})"), {}),
      Catch::Contains("none.json") && Catch::Contains("does not exist"));
}

TEST_CASE("a printed config binds back to the same config") {
  const auto recipe = core::load_config<Recipe>("", {"optim.lr=0.5", "model.llama.dim=32"});
  const auto printed = core::to_json(recipe);
  test::TempDir dir;
  const auto again = core::config_from_saved_json<Recipe>(nlohmann::json::parse(printed.dump()),
                                                          dir.path() / "config.json");
  CHECK(core::to_json(again).dump() == printed.dump());
}

TEST_CASE("the key listing covers every section, including unselected ones") {
  const auto keys = core::list_keys<Recipe>();
  auto find = [&](const std::string& path) -> const core::KeyDoc* {
    for (const auto& key : keys) {
      if (key.path == path) return &key;
    }
    return nullptr;
  };
  REQUIRE(find("optim.lr") != nullptr);
  CHECK(find("optim.lr")->type == "number");
  CHECK(find("optim.lr")->help == "peak learning rate");
  CHECK(find("optim.lr")->default_value == "0.0003");
  REQUIRE(find("model.arch") != nullptr);
  CHECK(find("model.arch")->type == "one of llama|mlp");
  REQUIRE(find("model.llama.dim") != nullptr);
  CHECK(find("model.llama.dim")->condition.empty());
  REQUIRE(find("model.mlp.hidden") != nullptr);
  CHECK(find("model.mlp.hidden")->condition == "when model.arch = mlp");
  REQUIRE(find("sources[].path") != nullptr);
  CHECK(find("sources[].path")->condition == "when sources[].kind = text");
}

TEST_CASE("nearest_name suggests only plausible names") {
  CHECK(core::nearest_name("lrr", {"lr", "steps"}) == "lr");
  CHECK(core::nearest_name("warmup", {"warmup_steps", "lr"}) == "warmup_steps");
  CHECK(core::nearest_name("qqqqqqqq", {"lr", "steps"}).empty());
  CHECK(core::edit_distance("kitten", "sitting") == 3);
}
