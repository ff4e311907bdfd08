// The edgedistill executables end to end: exit codes, one-line errors, data preparation through
// edgedistill-data, training with stop/resume, inspect, bench, and every shipped config.
#include "torch_catch.h"

#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>

#include "cli/pipeline_config.h"
#include "core/files.h"
#include "data/data_config.h"
#include "distill/distill_config.h"
#include "model/model_config.h"
#include "python_reference.h"
#include "quantize/quant_plan.h"
#include "runtime/gates.h"
#include "runtime/llama_session.h"
#include "test_util.h"
#include "tiny_recipe.h"
#include "train/train_config.h"

using namespace edgedistill;
namespace fs = std::filesystem;

namespace {

using Result = test::CommandResult;
using test::run_edgedistill;

// The lines of `text` that are errors (progress and info lines are not).
std::vector<std::string> error_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.find("error") != std::string::npos) lines.push_back(line);
  }
  return lines;
}

// Bad input: exit 2 and exactly one error line, which names `fragment`.
void require_input_error(const Result& result, const std::string& fragment) {
  INFO(fragment << ": " << result.err);
  CHECK(result.exit_code == 2);
  const auto errors = error_lines(result.err);
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].find(fragment) != std::string::npos);
}

fs::path tiny_recipe(const fs::path& dir, int steps) {
  return test::tiny_recipe_file(dir, steps, 4);
}

}  // namespace

TEST_CASE("--help and usage errors") {
  test::TempDir dir;
  const auto help = run_edgedistill({"--help"}, dir.path());
  CHECK(help.exit_code == 0);
  for (const char* command : {"data", "train", "config", "inspect", "bench"}) {
    CHECK(help.out.find(command) != std::string::npos);
  }
  CHECK(run_edgedistill({"no-such-command"}, dir.path()).exit_code == 2);
  CHECK(run_edgedistill({"train"}, dir.path()).exit_code == 2);  // --config and --run-dir missing
  const auto version = run_edgedistill({"--version"}, dir.path());
  CHECK(version.exit_code == 0);
  CHECK(version.out.find("edgedistill") != std::string::npos);
}

TEST_CASE("config prints the merged recipe with --set applied") {
  test::TempDir dir;
  const auto recipe = (test::source_dir() / "configs" / "recipes" / "teacher-kjv.json").string();
  const auto result =
      run_edgedistill({"config", "--config", recipe, "--set", "train.lr=0.5"}, dir.path());
  REQUIRE(result.exit_code == 0);
  const auto merged = nlohmann::json::parse(result.out);
  CHECK(merged["train"]["lr"] == 0.5);
  CHECK(merged["model"]["dim"] == 256);                      // from ../models/teacher-s.json
  CHECK(merged["data"]["tokenizer"]["vocab_size"] == 4096);  // from ../data/kjv.json
  const auto keys = run_edgedistill({"config", "--keys"}, dir.path());
  CHECK(keys.exit_code == 0);
  CHECK(keys.out.find("train.lr") != std::string::npos);
  CHECK(keys.out.find("model.hidden") != std::string::npos);  // the mlp keys are listed too
}

TEST_CASE("config errors exit 2 with one line naming the key, the type or the file") {
  test::TempDir dir;
  const auto recipe = (test::source_dir() / "configs" / "recipes" / "teacher-kjv.json").string();
  struct Case {
    std::vector<std::string> arguments;
    std::vector<std::string> expected;
  };
  core::write_file_atomic(dir.path() / "unknown.json", R"({"train": {"stepz": 3}})");
  core::write_file_atomic(dir.path() / "typed.json", R"({"model": {"dim": "wide"}})");
  const std::vector<Case> cases = {
      {{"config", "--config", recipe, "--set", "train.lrr=1"},
       {"train.lrr", "did you mean 'train.lr'"}},
      {{"config", "--config", recipe, "--set", "train.steps=abc"},
       {"train.steps", "expects an integer"}},
      {{"config", "--config", (dir.path() / "missing.json").string()},
       {"missing.json", "does not exist"}},
      {{"config", "--config", (dir.path() / "unknown.json").string(), "--kind", "recipe"},
       {"train.stepz", "train.steps"}},
      {{"config", "--config", (dir.path() / "typed.json").string(), "--kind", "recipe"},
       {"model.dim", "expects an integer", "\"wide\""}},
      {{"config", "--config", recipe, "--set", "model.dim=250"}, {"model.dim", "multiple of 32"}},
      {{"train", "--config", (dir.path() / "missing.json").string(), "--run-dir",
        dir.path().string()},
       {"missing.json"}},
  };
  for (const auto& c : cases) {
    INFO(c.arguments.back());
    const auto result = run_edgedistill(c.arguments, dir.path());
    CHECK(result.exit_code == 2);
    const auto errors = error_lines(result.err);
    REQUIRE(errors.size() == 1);
    for (const auto& expected : c.expected) CHECK(errors[0].find(expected) != std::string::npos);
    CHECK(result.err.find("terminate") == std::string::npos);  // no crash or stack trace
  }
}

TEST_CASE("a deterministic CLI run stopped and resumed ends with byte-identical weights") {
  test::TempDir dir;
  const auto recipe = tiny_recipe(dir.path(), 10).string();
  const std::string cache = (dir.path() / "cache").string();
  auto train = [&](const std::string& run, std::vector<std::string> extra) {
    std::vector<std::string> arguments = {
        "train",           "--config",     recipe, "--run-dir", (dir.path() / run).string(),
        "--deterministic", "--data-cache", cache};
    arguments.insert(arguments.end(), extra.begin(), extra.end());
    return run_edgedistill(arguments, dir.path());
  };
  const auto whole = train("whole", {});
  INFO(whole.err);
  REQUIRE(whole.exit_code == 0);
  CHECK(whole.out.find("perplexity: valid") != std::string::npos);
  const auto stopped = train("split", {"--stop-at-step", "5"});
  REQUIRE(stopped.exit_code == 0);
  CHECK(fs::exists(dir.path() / "split" / "checkpoints" / "step-5" / "trainer.json"));
  CHECK_FALSE(fs::exists(dir.path() / "split" / "final"));
  // Without --resume the run directory is protected.
  const auto refused = train("split", {});
  CHECK(refused.exit_code == 2);
  CHECK(refused.err.find("--resume") != std::string::npos);
  REQUIRE(train("split", {"--resume"}).exit_code == 0);
  CHECK(core::read_file(dir.path() / "whole" / "final" / "weights.safetensors", "weights") ==
        core::read_file(dir.path() / "split" / "final" / "weights.safetensors", "weights"));
  // metrics.jsonl of the resumed run has each step once, like the uninterrupted run's.
  auto steps_logged = [&](const std::string& run) {
    std::vector<int64_t> steps;
    std::ifstream in(dir.path() / run / "metrics.jsonl");
    std::string line;
    while (std::getline(in, line)) {
      const auto record = nlohmann::json::parse(line);
      if (record.contains("loss")) steps.push_back(record["step"]);
    }
    return steps;
  };
  CHECK(steps_logged("split") == steps_logged("whole"));
  // A finished run resumed again does nothing and succeeds.
  CHECK(train("split", {"--resume"}).exit_code == 0);

  // inspect reads every artifact of the run.
  for (const auto& [path, kind] : std::vector<std::pair<fs::path, std::string>>{
           {dir.path() / "whole", "run directory"},
           {dir.path() / "whole" / "final", "model checkpoint"},
           {dir.path() / "whole" / "final" / "weights.safetensors", "safetensors"}}) {
    const auto inspected = run_edgedistill({"inspect", path.string()}, dir.path());
    INFO(path);
    CHECK(inspected.exit_code == 0);
    CHECK(nlohmann::json::parse(inspected.out)["kind"] == kind);
  }
  CHECK(run_edgedistill({"inspect", (dir.path() / "nothing").string()}, dir.path()).exit_code == 2);
}

TEST_CASE("a diverging run stops with exit 2 naming the step, keeping the last checkpoint") {
  test::TempDir dir;
  const auto recipe = tiny_recipe(dir.path(), 10).string();
  const auto result =
      run_edgedistill({"train", "--config", recipe, "--run-dir", (dir.path() / "run").string(),
                       "--data-cache", (dir.path() / "cache").string(), "--set", "train.lr=1e12",
                       "--set", "train.grad_clip=0", "--set", "train.warmup_steps=0"},
                      dir.path());
  INFO(result.err);
  CHECK(result.exit_code == 2);
  CHECK(result.err.find("diverged") != std::string::npos);
  CHECK(std::regex_search(result.err, std::regex("at step [0-9]+")));
}

TEST_CASE("data runs SentencePiece in edgedistill-data and relays its errors") {
  test::TempDir dir;
  std::string text;
  for (int i = 0; i < 400; ++i) {
    text += "In the beginning number " + std::to_string(i) + " was the word, and the word was " +
            (i % 2 ? "good" : "plain") + ".\n\n";
  }
  core::write_file_atomic(dir.path() / "corpus.txt", text);
  core::write_file_atomic(dir.path() / "sp.json", R"({
    "name": "sp", "sources": [{"kind": "text_file", "path": "corpus.txt"}],
    "tokenizer": {"kind": "sentencepiece", "vocab_size": 300}})");
  const auto out = dir.path() / "prepared";
  const auto result = run_edgedistill(
      {"data", "--config", (dir.path() / "sp.json").string(), "--out", out.string()}, dir.path());
  INFO(result.err);
  REQUIRE(result.exit_code == 0);
  CHECK(fs::exists(out / "tokenizer" / "tokenizer.model"));
  const auto shard =
      run_edgedistill({"inspect", (out / "shards" / "train.bin").string()}, dir.path());
  CHECK(shard.exit_code == 0);
  CHECK(shard.out.find("token shard") != std::string::npos);

  core::write_file_atomic(dir.path() / "bad.json", R"({
    "name": "bad", "sources": [{"kind": "text_file", "path": "no-such-corpus.txt"}],
    "tokenizer": {"kind": "sentencepiece", "vocab_size": 300}})");
  const auto failed = run_edgedistill({"data", "--config", (dir.path() / "bad.json").string(),
                                       "--out", (dir.path() / "b").string()},
                                      dir.path());
  CHECK(failed.exit_code == 2);
  const auto errors = error_lines(failed.err);
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].find("no-such-corpus.txt") != std::string::npos);
}

TEST_CASE("bench measures a tiny recipe and reports MFU") {
  test::TempDir dir;
  const auto recipe = tiny_recipe(dir.path(), 10).string();
  const auto json = dir.path() / "bench.json";
  const auto result =
      run_edgedistill({"bench", "--train-config", recipe, "--steps", "2", "--warmup", "1",
                       "--gemm-size", "256", "--report", json.string()},
                      dir.path());
  INFO(result.err);
  REQUIRE(result.exit_code == 0);
  CHECK(result.out.find("MFU") != std::string::npos);
  const auto report = core::read_json_file(json, "bench report");
  CHECK(report["tokens_per_s"].get<double>() > 0);
  CHECK(report["mfu"].get<double>() > 0);
}

TEST_CASE("every shipped config loads and validates") {
  // configs/data, configs/models and configs/recipes hold data, model and recipe configs.
  int loaded = 0, pipelines = 0;
  for (const auto& entry : fs::recursive_directory_iterator(test::source_dir() / "configs")) {
    if (entry.path().extension() != ".json") continue;
    const std::string kind = entry.path().parent_path().filename().string();
    INFO(entry.path());
    if (kind == "data") {
      CHECK_NOTHROW(core::load_config<data::DataConfig>(entry.path(), {}));
    } else if (kind == "models") {
      CHECK_NOTHROW(core::load_config<model::ModelConfig>(entry.path(), {}));
    } else if (kind == "recipes" &&
               cli::looks_like_pipeline(core::read_config_json(entry.path()))) {
      CHECK_NOTHROW(core::load_config<cli::PipelineRecipe>(entry.path(), {}));
      ++pipelines;
    } else if (kind == "recipes" && (entry.path().filename().string().rfind("distill-", 0) == 0 ||
                                     entry.path().filename().string().rfind("heal-", 0) == 0)) {
      CHECK_NOTHROW(core::load_config<distill::DistillRecipe>(entry.path(), {}));
    } else if (kind == "recipes") {
      CHECK_NOTHROW(core::load_config<train::TrainRecipe>(entry.path(), {}));
    } else if (kind == "gates") {
      CHECK(!runtime::read_gates(entry.path()).empty());
    } else if (kind == "quant") {
      // Plans resolve against the shipped teacher (every pattern must match one of its matrices).
      const auto teacher = core::load_config<model::ModelConfig>(
          test::source_dir() / "configs" / "models" / "teacher-s.json", {});
      const auto plan = quant::read_plan(entry.path());
      CHECK(!plan.rules.empty());
      CHECK_NOTHROW(quant::resolve_plan(plan, io::GgmlType::q4_0, teacher.llama));
    } else {
      FAIL(
          "a config outside configs/data, configs/models, configs/recipes, configs/gates and "
          "configs/quant: "
          << entry.path());
    }
    ++loaded;
  }
  CHECK(loaded >= 9);
  CHECK(pipelines >= 2);  // quickstart.json and a CI recipe
}

TEST_CASE("the shipped model sizes are the ones the README states") {
  // README "Configs": teacher-s 7.99M parameters (the issue asks for ~6-8M), student-xs 3.18M,
  // ~40 % of it; the vocabulary is KJV's 4,096 SentencePiece pieces.
  auto count = [](const char* name) {
    auto config = core::load_config<model::ModelConfig>(
        test::source_dir() / "configs" / "models" / (std::string(name) + ".json"), {});
    config.llama.vocab_size = 4096;
    return model::count_parameters(config.llama).total;
  };
  CHECK(count("teacher-s") == 7'998'720);
  CHECK(count("student-xs") == 3'184'704);
  const double ratio = static_cast<double>(count("student-xs")) / count("teacher-s");
  CHECK((ratio > 0.38 && ratio < 0.42));
}

TEST_CASE("docs/config.md lists every key as the code declares it") {
  // docs/config.md is generated by scripts/make_config_docs.sh from `edgedistill config --keys`;
  // this fails when a key is added or changed without regenerating it.
  test::TempDir dir;
  const std::string docs = core::read_file(test::source_dir() / "docs" / "config.md", "docs");
  for (const char* kind : {"pipeline", "recipe", "distill", "data", "model"}) {
    const auto table =
        run_edgedistill({"config", "--keys", "--markdown", "--kind", kind}, dir.path());
    REQUIRE(table.exit_code == 0);
    INFO(kind << " keys; regenerate with scripts/make_config_docs.sh");
    CHECK(docs.find(table.out) != std::string::npos);
  }
}

TEST_CASE("a trained model is exported then inspected and run and benchmarked and verified") {
  test::TempDir dir;
  const auto recipe = tiny_recipe(dir.path(), 60).string();
  const auto run = dir.path() / "run";
  REQUIRE(run_edgedistill({"train", "--config", recipe, "--run-dir", run.string()}, dir.path())
              .exit_code == 0);
  auto gguf = [&](const std::string& type) { return (dir.path() / (type + ".gguf")).string(); };
  for (const std::string type : {"f32", "q8_0", "q4_0"}) {
    const auto exported = run_edgedistill(
        {"export", "--model", run.string(), "--type", type, "--out", gguf(type)}, dir.path());
    INFO(exported.err);
    REQUIRE(exported.exit_code == 0);
    REQUIRE(exported.out.find("exported") != std::string::npos);
  }

  const auto inspected = run_edgedistill({"inspect", gguf("q4_0")}, dir.path());
  REQUIRE(inspected.exit_code == 0);
  const auto summary = nlohmann::json::parse(inspected.out);
  CHECK(summary["kind"] == "gguf");
  CHECK(summary["metadata"]["general.architecture"]["value"] == "llama");
  CHECK(summary["metadata"]["llama.block_count"]["type"] == "UINT32");
  CHECK(summary["tensor_count"] == 21);

  const auto generated = run_edgedistill(
      {"run", "--model", gguf("q8_0"), "--prompt", "the cat", "-n", "12", "--temp", "0"},
      dir.path());
  INFO(generated.err);
  REQUIRE(generated.exit_code == 0);
  CHECK(generated.out.rfind("the cat", 0) == 0);
  CHECK(generated.out.size() > std::string("the cat").size());

  const auto bench = run_edgedistill(
      {"bench", "--model", gguf("q4_0"), "-p", "16", "-n", "8", "-r", "2", "--json"}, dir.path());
  INFO(bench.err);
  REQUIRE(bench.exit_code == 0);
  const auto speed = nlohmann::json::parse(bench.out);
  CHECK(speed["prefill_tokens_per_s"].get<double>() > 0);
  CHECK(speed["decode_tokens_per_s"].get<double>() > 0);
  CHECK(speed["decode_ms_per_token"].get<double>() ==
        Approx(1000.0 / speed["decode_tokens_per_s"].get<double>()));
  CHECK(speed["file_bytes"].get<uint64_t>() == fs::file_size(gguf("q4_0")));
  CHECK(speed["peak_rss_bytes"].get<uint64_t>() > 0);

  // Q8_0 against the float model on the held-out split: the issue's bar is 99 % top-1 agreement.
  const auto gates = dir.path() / "gates.json";
  core::write_file_atomic(gates, R"({"min_top1_agreement": 0.99, "max_ppl_increase_pct": 1})");
  const auto report_path = dir.path() / "verify.json";
  const auto verified =
      run_edgedistill({"verify", "--model", gguf("q8_0"), "--reference", run.string(), "--ctx",
                       "32", "--gates", gates.string(), "--report", report_path.string()},
                      dir.path());
  INFO(verified.out << verified.err);
  REQUIRE(verified.exit_code == 0);
  const auto report = core::read_json_file(report_path, "report");
  CHECK(report["split"] == "test");
  CHECK(report["metrics"]["top1_agreement"].get<double>() >= 0.99);
  CHECK(report["metrics"]["positions"].get<double>() > 100);
  CHECK(report["passed"] == true);
  CHECK(report["gates"].size() == 2);

  // eval scores the float model in training's batched windows; verify's reference pass scores the
  // same windows one at a time through its own log-softmax, so the perplexities agree.
  const auto eval_report = dir.path() / "eval.json";
  const auto evaluated = run_edgedistill({"eval", "--model", run.string(), "--ctx", "32",
                                          "--report", eval_report.string(), "--batch-size", "3"},
                                         dir.path());
  INFO(evaluated.err);
  REQUIRE(evaluated.exit_code == 0);
  CHECK(evaluated.out.find("perplexity") != std::string::npos);
  const auto scored = core::read_json_file(eval_report, "eval report");
  CHECK(scored["split"] == "test");
  CHECK(scored["tokens"].get<double>() == report["metrics"]["positions"].get<double>());
  CHECK(scored["perplexity"].get<double>() ==
        Approx(report["metrics"]["reference_perplexity"].get<double>()).epsilon(1e-4));
  const auto limited = run_edgedistill(
      {"eval", "--model", run.string(), "--ctx", "32", "--max-tokens", "64", "--json"}, dir.path());
  REQUIRE(limited.exit_code == 0);
  CHECK(nlohmann::json::parse(limited.out)["tokens"] == 64);
  const auto no_data = run_edgedistill(
      {"eval", "--model", run.string(), "--data", (dir.path() / "nowhere").string()}, dir.path());
  CHECK(no_data.exit_code == 2);
  CHECK(no_data.err.find("nowhere") != std::string::npos);

  // A gate that fails: exit 1, the report and the message name it and say by how much.
  core::write_file_atomic(gates, R"({"max_file_mb": 0.001})");
  const auto failed = run_edgedistill(
      {"verify", "--model", gguf("q4_0"), "--reference", run.string(), "--ctx", "32", "--no-bench",
       "--gates", gates.string(), "--report", report_path.string()},
      dir.path());
  CHECK(failed.exit_code == 1);
  CHECK(failed.err.find("gate failed: max_file_mb") != std::string::npos);
  const auto failed_report = core::read_json_file(report_path, "report");
  CHECK(failed_report["passed"] == false);
  CHECK(failed_report["gates"][0]["key"] == "max_file_mb");
  CHECK(failed_report["gates"][0]["passed"] == false);

  // A misspelt gate is bad input (exit 2) naming the key and the nearest one, before any work.
  core::write_file_atomic(gates, R"({"min_top1_agrement": 0.9})");
  const auto misspelt = run_edgedistill(
      {"verify", "--model", gguf("q4_0"), "--reference", run.string(), "--gates", gates.string()},
      dir.path());
  CHECK(misspelt.exit_code == 2);
  CHECK(misspelt.err.find("min_top1_agrement") != std::string::npos);
  CHECK(misspelt.err.find("min_top1_agreement") != std::string::npos);
}

TEST_CASE("a trained model is quantized with GPTQ then run and verified and bad input exits 2") {
  test::TempDir dir;
  const auto recipe = tiny_recipe(dir.path(), 60).string();
  const auto run = dir.path() / "run";
  REQUIRE(run_edgedistill({"train", "--config", recipe, "--run-dir", run.string()}, dir.path())
              .exit_code == 0);
  const fs::path out = dir.path() / "gptq.gguf";
  const auto quantized = run_edgedistill(
      {"quantize", "--model", run.string(), "--method", "gptq", "--type", "q4_0", "--baseline",
       "--calib-tokens", "1024", "--calib-ctx", "32", "--eval-ctx", "32", "--out", out.string()},
      dir.path());
  INFO(quantized.out << quantized.err);
  REQUIRE(quantized.exit_code == 0);
  REQUIRE(fs::exists(out));
  const fs::path report_path = dir.path() / "gptq.quant.json";
  REQUIRE(fs::exists(report_path));
  // The round-to-nearest baseline was scored from a temporary file, removed afterwards.
  int gguf_files = 0;
  for (const auto& entry : fs::directory_iterator(dir.path())) {
    gguf_files += entry.path().extension() == ".gguf";
  }
  CHECK(gguf_files == 1);

  const auto report = core::read_json_file(report_path, "report");
  CHECK(report["method"] == "gptq");
  CHECK(report["calibration"]["tokens"].get<int64_t>() == 1024);
  // Every block matrix (2 blocks x 7) rounded by GPTQ, the embedding and output at q8_0 by the
  // default plan.
  int gptq_layers = 0;
  for (const auto& layer : report["layers"]) {
    INFO(layer.dump());
    const std::string name = layer["name"];
    if (name.rfind("blk.", 0) == 0) {
      CHECK(layer["rounding"] == "gptq");
      CHECK(layer["type"] == "q4_0");
      CHECK(layer["error"]["output"].is_number());
      gptq_layers += layer["rounding"] == "gptq";
    } else {
      CHECK(layer["type"] == "q8_0");
    }
  }
  CHECK(gptq_layers == 14);
  const auto& models = report["evaluation"]["models"];
  REQUIRE(models.contains("rtn q4_0"));
  REQUIRE(models.contains("gptq q4_0"));
  for (const auto& [label, scores] : models.items()) {
    INFO(label);
    CHECK(scores["positions"].get<double>() > 100);
    CHECK(std::isfinite(scores["perplexity"].get<double>()));
    CHECK(scores["top1_agreement"].get<double>() > 0.5);
  }

  const auto generated = run_edgedistill(
      {"run", "--model", out.string(), "--prompt", "the cat", "-n", "8", "--temp", "0"},
      dir.path());
  INFO(generated.err);
  CHECK(generated.exit_code == 0);
  CHECK(generated.out.rfind("the cat", 0) == 0);
  const auto verified = run_edgedistill(
      {"verify", "--model", out.string(), "--reference", run.string(), "--ctx", "32", "--no-bench"},
      dir.path());
  INFO(verified.out << verified.err);
  CHECK(verified.exit_code == 0);

  // Bad input: exit 2 and one error line naming the thing, before any calibration.
  auto plan = [&](const std::string& name, const std::string& text) {
    core::write_file_atomic(dir.path() / name, text);
    return (dir.path() / name).string();
  };
  struct Bad {
    std::vector<std::string> arguments;
    std::string fragment;
  };
  const std::vector<std::string> base = {"quantize", "--no-eval", "--out",
                                         (dir.path() / "bad.gguf").string()};
  for (const auto& bad : std::vector<Bad>{
           {{"--model", run.string(), "--plan",
             plan("stray.json",
                  R"({"tensors": [{"pattern": "blk.9.attn_q.weight", "type": "q8_0"}]})")},
            "blk.9.attn_q.weight"},
           {{"--model", run.string(), "--plan",
             plan("q3k.json", R"({"tensors": [{"pattern": "output.weight", "type": "q3_k"}]})")},
            "q3_k"},
           {{"--model", run.string(), "--plan",
             plan("key.json", R"({"tensors": [], "precision": "q4_0"})")},
            "precision"},
           {{"--model", (dir.path() / "no-such-run").string()}, "no-such-run"}}) {
    auto arguments = base;
    arguments.insert(arguments.end(), bad.arguments.begin(), bad.arguments.end());
    require_input_error(run_edgedistill(arguments, dir.path()), bad.fragment);
  }
  // A value outside an option's choices is a usage error from CLI11: one error line naming the
  // option, the value and the help to read.
  auto arguments = base;
  arguments.insert(arguments.end(), {"--model", run.string(), "--method", "bogus"});
  const auto usage = run_edgedistill(arguments, dir.path());
  INFO(usage.err);
  CHECK(usage.exit_code == 2);
  const auto usage_errors = error_lines(usage.err);
  REQUIRE(usage_errors.size() == 1);
  CHECK(usage_errors[0].find("--method") != std::string::npos);
  CHECK(usage_errors[0].find("bogus") != std::string::npos);
  CHECK(usage_errors[0].find("edgedistill quantize --help") != std::string::npos);
  CHECK_FALSE(fs::exists(dir.path() / "bad.gguf"));
}

TEST_CASE(
    "an importance matrix weights quantize's K-quants, GPTQ rounds a K-quant mix, and a "
    "mismatched imatrix exits 2") {
  test::TempDir dir;
  const auto recipe = tiny_recipe(dir.path(), 12).string();
  const auto run = dir.path() / "run";
  // Rows of 256: whole K-quant super-blocks in every matrix.
  REQUIRE(run_edgedistill({"train", "--config", recipe, "--run-dir", run.string(), "--set",
                           "model.dim=256", "--set", "model.ffn_dim=256", "--set",
                           "model.n_heads=4", "--set", "model.n_kv_heads=2"},
                          dir.path())
              .exit_code == 0);
  const fs::path gguf_imatrix = dir.path() / "m.imatrix.gguf", dat = dir.path() / "m.dat";
  for (const auto& out : {gguf_imatrix, dat}) {
    const auto made = run_edgedistill({"imatrix", "--model", run.string(), "--calib-tokens", "1024",
                                       "--calib-ctx", "32", "--out", out.string()},
                                      dir.path());
    INFO(made.out << made.err);
    REQUIRE(made.exit_code == 0);
    CHECK(made.out.find("blk.1.ffn_down.weight") != std::string::npos);
    CHECK(made.out.find(out.extension() == ".dat" ? "legacy .dat" : "GGUF") != std::string::npos);
  }
  // Both formats give the same importances (the .dat stores mean x ncall).
  const auto from_gguf = nlohmann::json::parse(
      test::run_python("imatrix_reference.py", {"read", gguf_imatrix.string()}));
  const auto from_dat =
      nlohmann::json::parse(test::run_python("imatrix_reference.py", {"read", dat.string()}));
  REQUIRE(from_gguf["importance"].size() == 15);  // 2 x 7 block matrices and the head
  for (const auto& [name, values] : from_gguf["importance"].items()) {
    INFO(name);
    REQUIRE(from_dat["importance"].contains(name));
    for (size_t i = 0; i < values.size(); ++i) {
      CHECK(values[i].get<double>() ==
            Approx(from_dat["importance"][name][i].get<double>()).epsilon(1e-6));
    }
  }

  for (const auto& imatrix : {gguf_imatrix, dat}) {
    const fs::path out = dir.path() / "q4_k_m.gguf";
    const auto quantized = run_edgedistill(
        {"quantize", "--model", run.string(), "--method", "rtn", "--type", "q4_k_m", "--imatrix",
         imatrix.string(), "--calib-tokens", "0", "--eval-ctx", "32", "--out", out.string()},
        dir.path());
    INFO(quantized.out << quantized.err);
    REQUIRE(quantized.exit_code == 0);
    const auto report = core::read_json_file(dir.path() / "q4_k_m.quant.json", "report");
    CHECK(report["imatrix"]["format"] == (imatrix == dat ? "dat" : "gguf"));
    CHECK(report["imatrix"]["entries"] == 15);
    int weighted = 0;
    for (const auto& layer : report["layers"]) {
      const std::string type = layer["type"];
      const std::string name = layer["name"];
      // token_embd is a lookup with no entry; every other matrix is a K-quant with one.
      if (name == "token_embd.weight") {
        CHECK(layer["rounding"] == "rtn");
      } else {
        CHECK(layer["rounding"] == "rtn+imatrix");
        weighted += 1;
      }
      CHECK((type == "q4_k" || type == "q6_k"));
    }
    CHECK(weighted == 15);
    CHECK(report["imatrix"]["weighted_matrices"] == 15);
    CHECK(report["evaluation"]["models"]["rtn q4_k_m"]["top1_agreement"].get<double>() > 0.5);
  }

  // GPTQ into the mix's K-quants, then run in the runtime.
  const fs::path gptq = dir.path() / "gptq-q4_k_m.gguf";
  const auto rounded = run_edgedistill(
      {"quantize", "--model", run.string(), "--method", "gptq", "--type", "q4_k_m", "--baseline",
       "--calib-tokens", "1024", "--calib-ctx", "32", "--eval-ctx", "32", "--out", gptq.string()},
      dir.path());
  INFO(rounded.out << rounded.err);
  REQUIRE(rounded.exit_code == 0);
  const auto report = core::read_json_file(dir.path() / "gptq-q4_k_m.quant.json", "report");
  for (const auto& layer : report["layers"]) {
    if (layer["name"] != "token_embd.weight") CHECK(layer["rounding"] == "gptq");
  }
  const auto& models = report["evaluation"]["models"];
  CHECK(models["gptq q4_k_m"]["mean_kl"].get<double>() <
        models["rtn q4_k_m"]["mean_kl"].get<double>());
  CHECK(run_edgedistill({"verify", "--model", gptq.string(), "--reference", run.string(), "--ctx",
                         "32", "--no-bench"},
                        dir.path())
            .exit_code == 0);

  // Bad input: exit 2, one line naming the file and the fault.
  nlohmann::json spec = {{"datasets", {"x"}}, {"chunk_count", 1}, {"chunk_size", 32}};
  spec["entries"]["blk.0.attn_q.weight"] = {{"sums", {1.0, 2.0, 3.0}}, {"counts", {1.0}}};
  core::write_file_atomic(dir.path() / "spec.json", spec.dump());
  const fs::path other = dir.path() / "other.imatrix.gguf";
  test::run_python("imatrix_reference.py",
                   {"write-gguf", other.string(), (dir.path() / "spec.json").string()});
  const std::vector<std::string> base = {
      "quantize", "--model",   run.string(), "--type",
      "q4_k_m",   "--no-eval", "--out",      (dir.path() / "bad.gguf").string()};
  auto with = [&](std::vector<std::string> extra) {
    auto arguments = base;
    arguments.insert(arguments.end(), extra.begin(), extra.end());
    return run_edgedistill(arguments, dir.path());
  };
  require_input_error(with({"--method", "rtn", "--imatrix", other.string()}),
                      "'blk.0.attn_q.weight' has 3 columns; the model's matrix has 256");
  require_input_error(with({"--method", "rtn", "--imatrix", (dir.path() / "none.dat").string()}),
                      "no such importance matrix");
  require_input_error(with({"--method", "gptq", "--imatrix", gguf_imatrix.string()}),
                      "use --method rtn");
  core::write_file_atomic(dir.path() / "junk.dat", "junk");
  require_input_error(with({"--method", "rtn", "--imatrix", (dir.path() / "junk.dat").string()}),
                      "junk.dat");
  CHECK_FALSE(fs::exists(dir.path() / "bad.gguf"));
}

TEST_CASE("a trained model is pruned then healed and exported and bad prune input exits 2") {
  test::TempDir dir;
  const auto recipe = tiny_recipe(dir.path(), 40).string();
  const auto run = dir.path() / "run";
  REQUIRE(run_edgedistill({"train", "--config", recipe, "--run-dir", run.string()}, dir.path())
              .exit_code == 0);

  // Wanda 2:4: the same shape, half of every block matrix zero, masks beside the weights.
  const auto wanda = dir.path() / "wanda";
  const auto pruned = run_edgedistill(
      {"prune", "--model", run.string(), "--method", "wanda", "--pattern", "2:4", "--calib-tokens",
       "2048", "--calib-ctx", "32", "--eval-ctx", "32", "--out", wanda.string()},
      dir.path());
  INFO(pruned.out << pruned.err);
  REQUIRE(pruned.exit_code == 0);
  CHECK(fs::exists(wanda / "mask.safetensors"));
  auto report = core::read_json_file(wanda / "prune.json", "report");
  CHECK(report["layers"].size() == 14);
  for (const auto& layer : report["layers"]) CHECK(layer["sparsity"].get<double>() == 0.5);
  CHECK(report["parameters"]["after"] == report["parameters"]["before"]);
  CHECK(report["evaluation"]["perplexity_after"].get<double>() >
        report["evaluation"]["perplexity_before"].get<double>());

  // Structured: FFN 96 -> 64 channels and one of the two blocks: really smaller.
  const auto small = dir.path() / "small";
  const auto shrunk = run_edgedistill(
      {"prune", "--model", run.string(), "--method", "structured", "--ffn", "0.25", "--layers", "1",
       "--calib-tokens", "2048", "--calib-ctx", "32", "--eval-ctx", "32", "--out", small.string()},
      dir.path());
  INFO(shrunk.out << shrunk.err);
  REQUIRE(shrunk.exit_code == 0);
  report = core::read_json_file(small / "prune.json", "report");
  CHECK(report["config"]["ffn_dim"] == 64);
  CHECK(report["config"]["n_layers"] == 1);
  CHECK(report["parameters"]["after"].get<int64_t>() <
        report["parameters"]["before"].get<int64_t>());
  CHECK(report["weights_bytes"]["after"].get<int64_t>() <
        report["weights_bytes"]["before"].get<int64_t>());

  // Healing: distil the masked model from the unpruned one; the zeros stay.
  const auto healed = dir.path() / "healed";
  const auto heal = run_edgedistill(
      {"distill", "--config", recipe, "--teacher", run.string(), "--student", wanda.string(),
       "--set", "train.steps=4", "--set", "train.eval_every=0", "--run-dir", healed.string()},
      dir.path());
  INFO(heal.out << heal.err);
  REQUIRE(heal.exit_code == 0);
  CHECK(fs::exists(healed / "final" / "mask.safetensors"));

  // Both export and run.
  for (const auto& model : {small, healed}) {
    const auto gguf = dir.path() / (model.filename().string() + ".gguf");
    REQUIRE(run_edgedistill(
                {"export", "--model", model.string(), "--type", "q8_0", "--out", gguf.string()},
                dir.path())
                .exit_code == 0);
    const auto generated = run_edgedistill(
        {"run", "--model", gguf.string(), "--prompt", "the cat", "-n", "4", "--temp", "0"},
        dir.path());
    INFO(generated.err);
    CHECK(generated.exit_code == 0);
  }

  struct Bad {
    std::vector<std::string> arguments;
    std::string fragment;
  };
  const auto out = (dir.path() / "bad").string();
  for (const auto& bad : std::vector<Bad>{
           {{"--method", "wanda", "--pattern", "5:4"}, "--pattern"},
           {{"--method", "wanda"}, "--sparsity"},
           {{"--method", "structured", "--sparsity", "0.5"}, "--heads"},
           {{"--method", "structured", "--heads", "0.5"}, "GQA groups"},  // 1 group: all of them
           {{"--method", "structured", "--layers", "2"}, "--layers"},
           {{"--method", "magnitude", "--sparsity", "0.5", "--model", "no-such-run"},
            "no-such-run"}}) {
    std::vector<std::string> arguments = {"prune",       "--no-eval", "--calib-tokens", "512",
                                          "--calib-ctx", "32",        "--out",          out};
    if (std::find(bad.arguments.begin(), bad.arguments.end(), "--model") == bad.arguments.end()) {
      arguments.insert(arguments.end(), {"--model", run.string()});
    }
    arguments.insert(arguments.end(), bad.arguments.begin(), bad.arguments.end());
    require_input_error(run_edgedistill(arguments, dir.path()), bad.fragment);
  }
  CHECK_FALSE(fs::exists(out));
}

TEST_CASE("a damaged GGUF file is bad input with one line naming it") {
  test::TempDir dir;
  // A valid header then nothing: the reader must stop at the missing key/value records.
  auto little_endian = [](uint64_t value, int bytes) {
    std::string out;
    for (int i = 0; i < bytes; ++i) out += static_cast<char>((value >> (8 * i)) & 0xFF);
    return out;
  };
  // magic, version 3, tensor_count 1, kv_count 2, and no records.
  const std::string bytes =
      "GGUF" + little_endian(3, 4) + little_endian(1, 8) + little_endian(2, 8);
  const auto path = dir.path() / "broken.gguf";
  core::write_file_atomic(path, bytes);
  for (const auto& command :
       std::vector<std::vector<std::string>>{{"inspect", path.string()},
                                             {"run", "--model", path.string(), "--prompt", "x"},
                                             {"bench", "--model", path.string()}}) {
    const auto result = run_edgedistill(command, dir.path());
    INFO(command[0] << ": " << result.err);
    CHECK(result.exit_code == 2);
    CHECK(error_lines(result.err).size() == 1);
    CHECK(result.err.find("broken.gguf") != std::string::npos);
  }
  CHECK(run_edgedistill({"export", "--model", "x", "--type", "q3_k", "--out", "y.gguf"}, dir.path())
            .exit_code == 2);
}

namespace {

// sha256sum's digest of a file: an implementation independent of core/sha256.
std::string sha256sum(const fs::path& file, const fs::path& scratch) {
  const fs::path out = scratch / "sha256sum.txt";
  const std::string command =
      "sha256sum " + test::shell_quote(file.string()) + " >" + test::shell_quote(out.string());
  REQUIRE(std::system(command.c_str()) == 0);
  return core::read_file(out, "sha256sum").substr(0, 64);
}

// A pipeline on the tiny recipe: teacher (tiny.json), a one-block student, structured pruning
// with healing, GPTQ q4_0, verify with `gates`.
fs::path tiny_pipeline(const fs::path& dir) {
  tiny_recipe(dir, 20);
  core::write_file_atomic(dir / "gates.json", R"({"max_ppl_increase_pct": 50, "max_file_mb": 10})");
  core::write_file_atomic(dir / "strict.json", R"({"max_file_mb": 0.01})");
  const std::string train = R"({"steps": 4, "batch_size": 4, "seq_len": 32, "lr": 0.003,
      "warmup_steps": 2, "eval_every": 0, "checkpoint_every": 2, "log_every": 1})";
  const std::string pipeline = R"({
    "name": "tiny-pipeline", "threads": 2,
    "data": {"name": "tiny", "sources": [{"kind": "text_file", "path": "corpus.txt"}],
             "split": {"valid": 0.1, "test": 0.1}, "tokenizer": {"kind": "byte"}},
    "teacher": {"recipe": "tiny.json"},
    "distill": {"recipe": {"name": "student", "seed": 7,
        "model": {"arch": "llama", "dim": 64, "n_layers": 1, "n_heads": 2, "n_kv_heads": 1,
                  "ffn_dim": 96, "max_seq_len": 64},
        "train": )" + train + R"(, "distill": {"losses": [{"kind": "forward_kl", "alpha": 0.5}]}}},
    "prune": {"enabled": true, "method": "structured", "ffn": 0.25, "calib_tokens": 2048,
              "calib_context": 32,
              "heal": {"recipe": {"name": "healed", "seed": 7, "train": )" +
                               train + R"(,
                  "distill": {"losses": [{"kind": "forward_kl", "alpha": 1.0}]}}}},
    "quantize": {"method": "gptq", "type": "q4_0", "calib_tokens": 2048, "calib_context": 32},
    "verify": {"gates": "gates.json", "context": 32}
  })";
  core::write_file_atomic(dir / "pipeline.json", pipeline);
  return dir / "pipeline.json";
}

// Stage name -> "ran", "skipped" or "off", from a manifest.
std::map<std::string, std::string> stage_status(const nlohmann::json& manifest) {
  std::map<std::string, std::string> status;
  for (const auto& stage : manifest["stages"]) status[stage["name"]] = stage["status"];
  return status;
}

}  // namespace

TEST_CASE("a pipeline recipe runs its stages then skips them and reruns only what changed") {
  test::TempDir dir;
  const std::string recipe = tiny_pipeline(dir.path()).string();
  const fs::path run = dir.path() / "run";
  const fs::path manifest_file = run / "artifacts" / "manifest.json";
  const std::vector<std::string> stages = {"data", "teacher",  "distill", "prune",
                                           "heal", "quantize", "verify"};
  auto pipeline = [&](std::vector<std::string> extra) {
    std::vector<std::string> arguments = {"recipe", recipe, "--run-dir", run.string()};
    arguments.insert(arguments.end(), extra.begin(), extra.end());
    const auto result = run_edgedistill(arguments, dir.path());
    INFO(result.out << result.err);
    return result;
  };

  // Every stage runs; the artifact, its report and the manifest are in artifacts/.
  REQUIRE(pipeline({}).exit_code == 0);
  auto manifest = core::read_json_file(manifest_file, "manifest");
  for (const auto& stage : stages) CHECK(stage_status(manifest)[stage] == "ran");
  CHECK(manifest["result"]["passed"] == true);
  CHECK(manifest["machine"]["threads"] == 2);
  CHECK(!manifest["machine"]["runtime_isa"].get<std::string>().empty());
  CHECK(manifest["config"]["prune"]["ffn"] == 0.25);
  CHECK(manifest["verify"]["metrics"]["top1_agreement"].get<double>() > 0.5);
  // The pruned model is what was healed, quantized and verified: FFN 96 -> 64.
  const auto healed = core::read_json_file(run / "healed" / "final" / "model.json", "model");
  CHECK(healed["model"]["ffn_dim"] == 64);

  // The manifest's hashes are the files' (checked with sha256sum), inputs and outputs alike.
  int files = 0;
  for (const auto& stage : manifest["stages"]) {
    for (const char* side : {"inputs", "outputs"}) {
      for (const auto& [role, artifact] : stage[side].items()) {
        const fs::path path = artifact["path"].get<std::string>();
        for (const auto& [name, file] : artifact["files"].items()) {
          const fs::path file_path = fs::is_regular_file(path) ? path : path / name;
          INFO(stage["name"] << " " << side << " " << file_path);
          CHECK(file["sha256"] == sha256sum(file_path, dir.path()));
          CHECK(file["bytes"] == fs::file_size(file_path));
          ++files;
        }
      }
    }
  }
  CHECK(files >= 20);
  const fs::path gguf = manifest["artifact"]["path"].get<std::string>();
  CHECK(manifest["artifact"]["sha256"] == sha256sum(gguf, dir.path()));

  // Again: every stage is skipped and the artifact is the same file.
  REQUIRE(pipeline({}).exit_code == 0);
  manifest = core::read_json_file(manifest_file, "manifest");
  for (const auto& stage : stages) CHECK(stage_status(manifest)[stage] == "skipped");
  CHECK(sha256sum(gguf, dir.path()) == manifest["artifact"]["sha256"]);

  // A dry run names what a change would rerun, and runs nothing.
  const auto plan = pipeline({"--set", "distill.recipe.train.steps=6", "--dry-run"});
  CHECK(plan.exit_code == 0);
  CHECK(plan.out.find("distill.recipe.train.steps 4 -> 6") != std::string::npos);
  CHECK(std::regex_search(plan.out, std::regex("teacher +skip")));
  CHECK(std::regex_search(plan.out, std::regex("quantize +run")));
  CHECK(core::read_json_file(manifest_file, "manifest") == manifest);

  // One distillation key changed: distill and every stage after it rerun, data and teacher not.
  REQUIRE(pipeline({"--set", "distill.recipe.train.steps=6"}).exit_code == 0);
  manifest = core::read_json_file(manifest_file, "manifest");
  auto status = stage_status(manifest);
  CHECK(status["data"] == "skipped");
  CHECK(status["teacher"] == "skipped");
  for (const char* stage : {"distill", "prune", "heal", "quantize", "verify"}) {
    CHECK(status[stage] == "ran");
  }
  CHECK(core::read_json_file(run / "student" / "result.json", "result")["step"] == 6);

  // --from reruns that stage and the ones after it.
  REQUIRE(pipeline({"--set", "distill.recipe.train.steps=6", "--from", "quantize"}).exit_code == 0);
  status = stage_status(core::read_json_file(manifest_file, "manifest"));
  CHECK(status["heal"] == "skipped");
  CHECK(status["quantize"] == "ran");
  CHECK(status["verify"] == "ran");

  // A failing gate: exit 1, only verify reruns, and the manifest names the gate.
  const std::string strict = "verify.gates=" + (dir.path() / "strict.json").string();
  const auto failed = pipeline({"--set", "distill.recipe.train.steps=6", "--set", strict});
  CHECK(failed.exit_code == 1);
  CHECK(failed.err.find("max_file_mb") != std::string::npos);
  manifest = core::read_json_file(manifest_file, "manifest");
  status = stage_status(manifest);
  CHECK(status["quantize"] == "skipped");
  CHECK(status["verify"] == "ran");
  CHECK(manifest["result"]["passed"] == false);
  REQUIRE(manifest["result"]["failed_gates"].size() == 1);
  CHECK(manifest["result"]["failed_gates"][0]["key"] == "max_file_mb");
  // Run again unchanged: nothing is measured again, and the verdict stands.
  CHECK(pipeline({"--set", "distill.recipe.train.steps=6", "--set", strict}).exit_code == 1);

  // An existing teacher checkpoint instead of training one, without distillation or pruning:
  // the teacher itself is quantized and verified.
  const fs::path run2 = dir.path() / "run2";
  const auto from_checkpoint =
      run_edgedistill({"recipe", recipe, "--run-dir", run2.string(), "--set",
                       "teacher.checkpoint=" + (run / "teacher").string(), "--set",
                       "distill.enabled=false", "--set", "prune.enabled=false"},
                      dir.path());
  INFO(from_checkpoint.out << from_checkpoint.err);
  REQUIRE(from_checkpoint.exit_code == 0);
  manifest = core::read_json_file(run2 / "artifacts" / "manifest.json", "manifest");
  status = stage_status(manifest);
  CHECK(status["teacher"] == "ran");
  CHECK(status["distill"] == "off");
  CHECK(status["heal"] == "off");
  CHECK(manifest["verify"]["reference"] == (run / "teacher" / "final").string());
  CHECK_FALSE(fs::exists(run2 / "teacher"));

  // Malformed recipes: exit 2 with one line naming the key, and nothing run.
  std::string text = core::read_file(recipe, "recipe");
  text.replace(text.find("\"quantize\""), 10, "\"quantise\"");
  core::write_file_atomic(dir.path() / "typo.json", text);
  require_input_error(run_edgedistill({"recipe", (dir.path() / "typo.json").string(), "--run-dir",
                                       (dir.path() / "typo").string()},
                                      dir.path()),
                      "'quantise'; did you mean 'quantize'");
  require_input_error(pipeline({"--set", "prune.ffn=a lot"}), "prune.ffn");
  require_input_error(pipeline({"--set", "quantize.type=f16"}), "quantize.method");
  require_input_error(pipeline({"--set", "prune.method=wanda"}), "prune.sparsity");
  CHECK_FALSE(fs::exists(dir.path() / "typo"));
}

TEST_CASE(
    "tokenize agrees with the reference, and a model trained on a byte-level BPE tokenizer "
    "exports a gpt2 GGUF that runs and verifies") {
  test::TempDir dir;
  // tests/python/bpe_reference.py: tokenizer.json files written by Python and the ids Python's
  // `regex` split and a slow obvious BPE give (tests/test_tokenizer_bpe.cpp checks tok::Vocab
  // against all of them; here the command line).
  test::run_python("bpe_reference.py", {dir.path().string()});
  const auto expected = core::read_json_file(dir.path() / "expected.json", "expected ids");
  const auto texts = core::read_json_file(dir.path() / "texts.json", "texts");
  const auto llama3 = (dir.path() / "llama3.tokenizer.json").string();
  auto ids_of = [](const std::string& line) {
    std::vector<int32_t> ids;
    std::istringstream in(line);
    for (int32_t id; in >> id;) ids.push_back(id);
    return ids;
  };
  for (size_t i = 0; i < 4; ++i) {
    std::string text;
    const std::string hex = texts[i].get<std::string>();
    for (size_t k = 0; k + 1 < hex.size(); k += 2) {
      text.push_back(static_cast<char>(std::stoi(hex.substr(k, 2), nullptr, 16)));
    }
    const auto text_file = dir.path() / "text.txt";
    core::write_file_atomic(text_file, text);
    const auto encoded =
        run_edgedistill({"tokenize", "--model", llama3, "--file", text_file.string()}, dir.path());
    INFO(encoded.err);
    REQUIRE(encoded.exit_code == 0);
    const auto ids = ids_of(encoded.out);
    CHECK(ids == expected["llama3"][i].get<std::vector<int32_t>>());
    // --decode gives the text back byte for byte; --bos starts with <|begin_of_text|>.
    const auto decoded = run_edgedistill(
        {"tokenize", "--model", llama3, "--decode", "--text", encoded.out}, dir.path());
    REQUIRE(decoded.exit_code == 0);
    CHECK(decoded.out == text);
    const auto with_bos = run_edgedistill(
        {"tokenize", "--model", llama3, "--file", text_file.string(), "--bos"}, dir.path());
    REQUIRE(with_bos.exit_code == 0);
    const auto bos_ids = ids_of(with_bos.out);
    REQUIRE(bos_ids.size() == ids.size() + 1);
    CHECK(std::equal(ids.begin(), ids.end(), bos_ids.begin() + 1));
  }
  require_input_error(
      run_edgedistill({"tokenize", "--model", (dir.path() / "none.json").string(), "--text", "x"},
                      dir.path()),
      "none.json");
  require_input_error(
      run_edgedistill({"tokenize", "--model", llama3, "--decode", "--text", "1 x 2"}, dir.path()),
      "'x'");
  core::write_file_atomic(dir.path() / "lower.json", R"({"model": {"type": "BPE", "vocab": {}},
    "normalizer": {"type": "Lowercase"}})");
  require_input_error(
      run_edgedistill({"tokenize", "--model", (dir.path() / "lower.json").string(), "--text", "x"},
                      dir.path()),
      "Lowercase");

  // bench --tokenizer encodes each line of a file and writes the same ids tokenize gives.
  core::write_file_atomic(dir.path() / "lines.txt", "Hello world!\nNumbers 12345\n\nlast line");
  const auto bench = run_edgedistill(
      {"bench", "--tokenizer", llama3, "--text-file", (dir.path() / "lines.txt").string(), "-r",
       "2", "--json", "--ids-out", (dir.path() / "lines.ids").string()},
      dir.path());
  INFO(bench.err);
  REQUIRE(bench.exit_code == 0);
  const auto speed = nlohmann::json::parse(bench.out);
  CHECK(speed["lines"] == 4);
  CHECK(speed["mb_per_s"].get<double>() > 0);
  std::istringstream listed(core::read_file(dir.path() / "lines.ids", "ids"));
  for (const std::string line : {"Hello world!", "Numbers 12345", "", "last line"}) {
    std::string row;
    REQUIRE(std::getline(listed, row));
    const auto single =
        run_edgedistill({"tokenize", "--model", llama3, "--text", line}, dir.path());
    CHECK(row + "\n" == single.out);
  }

  // Train on the GPT-2-style tokenizer, export, run, verify.
  const auto recipe = tiny_recipe(dir.path(), 30).string();
  const auto gpt2 = (dir.path() / "gpt2.tokenizer.json").string();
  const auto run = dir.path() / "run";
  const auto trained = run_edgedistill(
      {"train", "--config", recipe, "--run-dir", run.string(), "--tokenizer", gpt2}, dir.path());
  INFO(trained.err);
  REQUIRE(trained.exit_code == 0);
  const auto gguf = (dir.path() / "gpt2-f32.gguf").string();
  const auto exported = run_edgedistill(
      {"export", "--model", run.string(), "--type", "f32", "--out", gguf}, dir.path());
  INFO(exported.err);
  REQUIRE(exported.exit_code == 0);
  const auto inspected = run_edgedistill({"inspect", gguf}, dir.path());
  REQUIRE(inspected.exit_code == 0);
  const auto summary = nlohmann::json::parse(inspected.out);
  CHECK(summary["metadata"]["tokenizer.ggml.model"]["value"] == "gpt2");
  CHECK(summary["metadata"]["tokenizer.ggml.pre"]["value"] == "gpt-2");
  // The GGUF's vocabulary tokenizes as the tokenizer.json did (texts without special tokens).
  for (const std::string text : {"the cat sat on the mat, line 7.", "Numbers 123 and  spaces\n"}) {
    const auto from_json =
        run_edgedistill({"tokenize", "--model", gpt2, "--text", text}, dir.path());
    const auto from_gguf =
        run_edgedistill({"tokenize", "--model", gguf, "--text", text}, dir.path());
    REQUIRE(from_json.exit_code == 0);
    REQUIRE(from_gguf.exit_code == 0);
    CHECK(from_json.out == from_gguf.out);
  }
  const auto generated = run_edgedistill(
      {"run", "--model", gguf, "--prompt", "the cat", "-n", "8", "--temp", "0"}, dir.path());
  INFO(generated.err);
  REQUIRE(generated.exit_code == 0);
  CHECK(generated.out.rfind("the cat", 0) == 0);
  // A distillation from this teacher prepares the student's corpus with the teacher's tokenizer
  // without being told (the recipe names the byte tokenizer).
  const std::string distill_recipe = R"({
    "name": "tiny-student", "seed": 3,
    "data": {"name": "tiny", "sources": [{"kind": "text_file", "path": "corpus.txt"}],
             "split": {"valid": 0.1, "test": 0.1}, "tokenizer": {"kind": "byte"}},
    "model": {"arch": "llama", "dim": 32, "n_layers": 1, "n_heads": 1, "n_kv_heads": 1,
              "ffn_dim": 64, "max_seq_len": 64},
    "train": {"steps": 4, "batch_size": 4, "seq_len": 32, "lr": 0.003, "warmup_steps": 1,
              "eval_every": 0, "checkpoint_every": 0, "log_every": 1},
    "distill": {"losses": [{"kind": "forward_kl", "alpha": 0.5}]}
  })";
  core::write_file_atomic(dir.path() / "distill.json", distill_recipe);
  const auto student = dir.path() / "student";
  const auto distilled =
      run_edgedistill({"distill", "--config", (dir.path() / "distill.json").string(), "--teacher",
                       run.string(), "--run-dir", student.string()},
                      dir.path());
  INFO(distilled.err);
  REQUIRE(distilled.exit_code == 0);
  CHECK(distilled.err.find("the teacher's tokenizer") != std::string::npos);
  CHECK(core::read_json_file(student / "final" / "model.json", "student")["tokenizer_hash"] ==
        core::read_json_file(run / "final" / "model.json", "teacher")["tokenizer_hash"]);

  const auto gates = dir.path() / "gates.json";
  core::write_file_atomic(gates, R"({"min_top1_agreement": 0.99, "max_ppl_increase_pct": 0.5})");
  const auto verified = run_edgedistill({"verify", "--model", gguf, "--reference", run.string(),
                                         "--ctx", "32", "--no-bench", "--gates", gates.string()},
                                        dir.path());
  INFO(verified.out << verified.err);
  CHECK(verified.exit_code == 0);
}

TEST_CASE("a Hugging Face teacher and student go through distill, prune, quantize and export") {
  // README "Bring your own teacher", on folders written by the independent writer (no weights can
  // be downloaded here): the teacher and a smaller student of the same family share a tokenizer.
  test::TempDir dir;
  const auto recipe = tiny_recipe(dir.path(), 4).string();
  const fs::path teacher = dir.path() / "teacher-hf", student = dir.path() / "student-hf";
  test::run_python("hf_model.py", {"write", teacher.string(), "llama", "1", "dim=64", "layers=2",
                                   "heads=2", "kv_heads=1", "ffn=96", "context=64"});
  test::run_python("hf_model.py", {"write", student.string(), "llama", "2", "dim=64", "layers=1",
                                   "heads=2", "kv_heads=1", "ffn=64", "context=64", "std=0.05"});
  const test::ScopedEnv cache("EDGEDISTILL_CACHE_DIR", (dir.path() / "cache").c_str());

  const auto imported = run_edgedistill(
      {"import", teacher.string(), "--out", (dir.path() / "teacher").string()}, dir.path());
  INFO(imported.out << imported.err);
  REQUIRE(imported.exit_code == 0);
  CHECK(imported.out.find("LlamaForCausalLM") != std::string::npos);
  require_input_error(
      run_edgedistill({"import", teacher.string(), "--out", (dir.path() / "teacher").string()},
                      dir.path()),
      "--force");

  // The folders themselves are the teacher and the student's start.
  const auto distilled = run_edgedistill(
      {"distill", "--config", recipe, "--teacher", teacher.string(), "--student", student.string(),
       "--set", "train.eval_every=0", "--run-dir", (dir.path() / "distilled").string()},
      dir.path());
  INFO(distilled.out << distilled.err);
  REQUIRE(distilled.exit_code == 0);
  CHECK(distilled.err.find("the teacher's tokenizer") != std::string::npos);
  const auto student_json =
      core::read_json_file(dir.path() / "distilled" / "final" / "model.json", "student");
  CHECK(student_json["model"]["n_layers"] == 1);

  const auto pruned =
      run_edgedistill({"prune", "--model", (dir.path() / "distilled").string(), "--method",
                       "structured", "--ffn", "0.5", "--calib-tokens", "1024", "--calib-ctx", "32",
                       "--eval-ctx", "32", "--out", (dir.path() / "pruned").string()},
                      dir.path());
  INFO(pruned.out << pruned.err);
  REQUIRE(pruned.exit_code == 0);

  // A teacher whose embedding is padded beyond its tokenizer (as Qwen2.5's): the student from
  // scratch takes the padded width, so teacher and student logits line up.
  const fs::path padded = dir.path() / "padded-hf";
  test::run_python("hf_model.py", {"write", padded.string(), "qwen2", "4", "dim=64", "layers=1",
                                   "heads=2", "kv_heads=1", "ffn=64", "vocab=320", "tokens=300"});
  const auto padded_run = run_edgedistill(
      {"distill", "--config", recipe, "--teacher", padded.string(), "--set", "train.steps=2",
       "--set", "train.eval_every=0", "--run-dir", (dir.path() / "from-padded").string()},
      dir.path());
  INFO(padded_run.out << padded_run.err);
  REQUIRE(padded_run.exit_code == 0);
  CHECK(core::read_json_file(dir.path() / "from-padded" / "final" / "model.json",
                             "student")["model"]["vocab_size"] == 320);

  const fs::path gguf = dir.path() / "student-q4_0.gguf";
  const auto quantized =
      run_edgedistill({"quantize", "--model", (dir.path() / "pruned").string(), "--method", "gptq",
                       "--type", "q4_0", "--calib-tokens", "1024", "--calib-ctx", "32",
                       "--eval-ctx", "32", "--out", gguf.string()},
                      dir.path());
  INFO(quantized.out << quantized.err);
  REQUIRE(quantized.exit_code == 0);
  const auto generated = run_edgedistill(
      {"run", "--model", gguf.string(), "--prompt", "the cat", "-n", "4", "--temp", "0"},
      dir.path());
  INFO(generated.err);
  CHECK(generated.exit_code == 0);
  // The runtime commands take the folder too (an f16 GGUF made once in the cache).
  const auto from_folder = run_edgedistill(
      {"run", "--model", teacher.string(), "--prompt", "the cat", "-n", "4", "--temp", "0"},
      dir.path());
  INFO(from_folder.err);
  CHECK(from_folder.exit_code == 0);
  CHECK(from_folder.err.find("f16 GGUF") != std::string::npos);

  // Back to Hugging Face: the independent forward of the exported folder gives the runtime's
  // logits of an f32 export of the same checkpoint.
  const fs::path hf_out = dir.path() / "student-out";
  const auto exported = run_edgedistill({"export", "--model", (dir.path() / "pruned").string(),
                                         "--format", "hf", "--out", hf_out.string()},
                                        dir.path());
  INFO(exported.out << exported.err);
  REQUIRE(exported.exit_code == 0);
  for (const char* file : {"config.json", "model.safetensors", "tokenizer.json"}) {
    CHECK(fs::exists(hf_out / file));
  }
  const auto config = core::read_json_file(hf_out / "config.json", "config");
  CHECK(config["intermediate_size"] == 32);
  CHECK(config["architectures"][0] == "LlamaForCausalLM");
  // The teacher folder, given directly to export, is the same model as the one imported above.
  const fs::path teacher_gguf = dir.path() / "teacher.gguf";
  REQUIRE(run_edgedistill({"export", "--model", teacher.string(), "--type", "f32", "--out",
                           teacher_gguf.string()},
                          dir.path())
              .exit_code == 0);
  const auto tokenized = run_edgedistill(
      {"tokenize", "--model", teacher_gguf.string(), "--text", "the cat sat on the mat"},
      dir.path());
  const auto tokenized_hf = run_edgedistill(
      {"tokenize", "--model", teacher.string(), "--text", "the cat sat on the mat"}, dir.path());
  CHECK(tokenized.exit_code == 0);
  CHECK(tokenized.out == tokenized_hf.out);

  const fs::path student_f32 = dir.path() / "student-f32.gguf";
  REQUIRE(run_edgedistill({"export", "--model", (dir.path() / "pruned").string(), "--type", "f32",
                           "--out", student_f32.string()},
                          dir.path())
              .exit_code == 0);
  const std::vector<int32_t> ids = {5, 300, 17, 250, 99, 3, 64, 318};
  const auto expected = test::hf_reference_logits(hf_out.string(), ids);
  const runtime::LlamaModel model(student_f32);
  runtime::ThreadPool pool(2);
  runtime::LlamaSession session(model, pool, 32, 32);
  const float* logits = session.forward(ids.data(), static_cast<int64_t>(ids.size()), true);
  REQUIRE(expected.size() == ids.size() * static_cast<size_t>(model.hparams().vocab_size));
  double diff = 0, scale = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    diff = std::max(diff, std::fabs(static_cast<double>(logits[i]) - expected[i]));
    scale = std::max(scale, std::fabs(static_cast<double>(expected[i])));
  }
  CHECK(diff / scale < 1e-4);  // f32 through two implementations: summation order only
}
