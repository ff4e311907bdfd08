#include "cli/pipeline.h"

#include <sys/utsname.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <functional>
#include <iomanip>
#include <thread>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/pipeline_config.h"
#include "core/cpu_features.h"
#include "core/error.h"
#include "core/files.h"
#include "core/log.h"
#include "core/progress.h"
#include "core/sha256.h"
#include "core/timing.h"
#include "core/version.h"
#include "data/describe_path.h"
#include "data/prepare.h"
#include "distill/teacher.h"
#include "model/model_meta.h"
#include "runtime/kernels.h"
#include "train/setup.h"

namespace edgedistill::cli {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

constexpr const char* kStagesDir = "stages";
constexpr const char* kArtifactsDir = "artifacts";
constexpr const char* kFingerprintFile = ".stage-fingerprint";

// A file or directory a stage reads or writes; its content is the sha256 of every regular file
// in it (relative names in sorted order).
struct Artifact {
  std::string role;
  fs::path path;
};

json hash_files(const fs::path& path) {
  json files = json::object();
  std::vector<fs::path> found;
  if (fs::is_regular_file(path)) {
    found.push_back(path);
  } else if (fs::is_directory(path)) {
    for (const auto& entry : fs::recursive_directory_iterator(path)) {
      if (entry.is_regular_file()) found.push_back(entry.path());
    }
  }
  std::sort(found.begin(), found.end());
  for (const auto& file : found) {
    const std::string name =
        file == path ? file.filename().string() : fs::relative(file, path).generic_string();
    files[name] = {{"sha256", core::sha256_file_hex(file)}, {"bytes", fs::file_size(file)}};
  }
  return files;
}

// hash_files, each path hashed once per invocation: a stage's outputs are the next stages'
// inputs, and the data directory is an input of nearly every stage. A stage that runs forgets its
// outputs' hashes.
class FileHashes {
 public:
  const json& files(const fs::path& path) {
    auto it = hashed_.find(path.string());
    if (it == hashed_.end()) it = hashed_.emplace(path.string(), hash_files(path)).first;
    return it->second;
  }
  void forget(const fs::path& path) { hashed_.erase(path.string()); }

  json artifacts(const std::vector<Artifact>& artifacts) {
    json out = json::object();
    for (const auto& artifact : artifacts) {
      out[artifact.role] = {{"path", artifact.path.string()}, {"files", files(artifact.path)}};
    }
    return out;
  }

 private:
  std::map<std::string, json> hashed_;
};

// Only the contents (not where they lie): a run directory moved elsewhere still matches.
json contents(const json& hashed) {
  json out = json::object();
  for (const auto& [role, artifact] : hashed.items()) out[role] = artifact["files"];
  return out;
}

// Equal as JSON values, whatever the order of their keys (a record read back from disk has its
// keys sorted).
bool same(const json& a, const json& b) {
  return nlohmann::json::parse(a.dump()) == nlohmann::json::parse(b.dump());
}

// "a.b.c" -> leaf value, for naming the keys a config change touched.
void flatten(const json& value, const std::string& prefix, std::map<std::string, json>& out) {
  if (value.is_object() && !value.empty()) {
    for (const auto& [key, item] : value.items()) {
      flatten(item, prefix.empty() ? key : prefix + "." + key, out);
    }
  } else if (value.is_array() && !value.empty() && (value[0].is_object() || value[0].is_array())) {
    for (size_t i = 0; i < value.size(); ++i) flatten(value[i], str(prefix, "[", i, "]"), out);
  } else {
    out[prefix] = value;
  }
}

std::string changed_keys(const json& before, const json& after) {
  std::map<std::string, json> a, b;
  flatten(before, "", a);
  flatten(after, "", b);
  std::vector<std::string> changed;
  for (const auto& [key, value] : b) {
    const auto it = a.find(key);
    if (it == a.end()) {
      changed.push_back(key + " (new)");
    } else if (!same(it->second, value)) {
      changed.push_back(str(key, " ", it->second.dump(), " -> ", value.dump()));
    }
  }
  for (const auto& [key, value] : a) {
    if (b.find(key) == b.end()) changed.push_back(key + " (removed)");
  }
  std::string text;
  for (size_t i = 0; i < changed.size() && i < 3; ++i) text += (i ? ", " : "") + changed[i];
  if (changed.size() > 3) text += str(" and ", changed.size() - 3, " more");
  return text;
}

std::string utc_now() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return text;
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0 || line.rfind("Model", 0) == 0) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) return line.substr(line.find_first_not_of(" \t", colon + 1));
    }
  }
  return "unknown";
}

json machine_facts(int threads) {
  utsname system{};
  uname(&system);
  return {{"cpu", cpu_model()},
          {"cores", std::thread::hardware_concurrency()},
          {"cpu_features", core::describe_cpu_features()},
          {"runtime_isa", runtime::runtime_kernels().isa},
          {"threads", threads},
          {"os", str(system.sysname, " ", system.release, " ", system.machine)}};
}

// A training command stopped by a signal: the pipeline stops with its exit code and the partial
// run is resumed next time.
struct StageInterrupted {
  int exit_code;
};

struct Stage {
  std::string name;
  std::string off;  // non-empty: not part of this pipeline, and why
  json config;      // the recipe keys that configure it
  std::vector<Artifact> inputs;
  std::vector<Artifact> outputs;
  std::function<json(const std::string& fingerprint)> run;  // returns the stage's metrics
};

// The pipeline for one recipe and run directory: paths, stages and the commands they call.
class Pipeline {
 public:
  Pipeline(PipelineRecipe recipe, const PipelineOptions& options) : recipe_(std::move(recipe)) {
    run_dir_ = fs::absolute(options.run_dir.empty() ? fs::path("runs") / recipe_.name
                                                    : fs::path(options.run_dir));
    cache_root_ =
        options.data_cache.empty() ? data::default_cache_root() : fs::path(options.data_cache);
    data_dir_ = data::prepared_data_dir(recipe_.data, cache_root_);
    artifacts_ = run_dir_ / kArtifactsDir;
    gguf_ = artifacts_ / "model.gguf";
    report_ = artifacts_ / "report.json";
    build_stages();
  }

  const fs::path& run_dir() const { return run_dir_; }
  const fs::path& artifacts() const { return artifacts_; }
  const fs::path& report() const { return report_; }
  const fs::path& gguf() const { return gguf_; }
  std::vector<Stage>& stages() { return stages_; }
  fs::path record_path(const std::string& stage) const {
    return run_dir_ / kStagesDir / (stage + ".json");
  }

 private:
  RunCommandOptions run_options(const fs::path& config_file, const fs::path& run_dir) const {
    RunCommandOptions run;
    run.config.file = config_file.string();
    run.run_dir = run_dir.string();
    run.resume = true;
    run.threads = recipe_.threads;
    run.data_cache = cache_root_.string();
    return run;
  }

  // Trains into DIR.partial (resuming a partial run of the same fingerprint, starting over
  // otherwise) and swaps it in for DIR when it finished.
  json train_into(const fs::path& dir, const std::string& fingerprint, const json& recipe,
                  const std::function<int(const RunCommandOptions&)>& command) const {
    const fs::path partial = dir.string() + ".partial";
    const fs::path mark = partial / kFingerprintFile;
    if (fs::exists(partial) &&
        (!fs::exists(mark) || core::read_file(mark, "stage fingerprint") != fingerprint)) {
      fs::remove_all(partial);
    }
    core::create_directories(partial, "stage run directory");
    core::write_file_atomic(mark, fingerprint);
    const fs::path config_file = run_dir_ / kStagesDir / (dir.filename().string() + ".recipe.json");
    core::write_json_atomic(config_file, recipe);
    const int code = command(run_options(config_file, partial));
    if (code != 0) throw StageInterrupted{code};
    fs::remove(mark);
    core::replace_directory(partial, dir);
    return core::read_json_file(dir / "result.json", "the stage's result");
  }

  json distill_into(const fs::path& dir, const std::string& fingerprint,
                    const distill::DistillRecipe& recipe) const {
    return train_into(dir, fingerprint, core::to_json(recipe), [](const RunCommandOptions& run) {
      DistillCommandOptions options;
      options.run = run;
      return run_distill(options);
    });
  }

  void build_stages() {
    const fs::path teacher_run = run_dir_ / "teacher";
    fs::path teacher_dir;  // what distill and heal take as --teacher
    fs::path teacher_final;
    {
      Stage stage{"data", "", {{"data", core::to_json(recipe_.data)}}, {}, {}, {}};
      for (const auto& source : recipe_.data.sources) {
        if (source.kind == "text_file") stage.inputs.push_back({"source", source.path});
      }
      stage.outputs = {{"data", data_dir_}};
      stage.run = [this](const std::string&) {
        const fs::path dir = data::ensure_prepared(recipe_.data, cache_root_);
        return json(data::describe_path(dir));
      };
      stages_.push_back(std::move(stage));
    }
    {
      Stage stage{"teacher", "", {{"teacher", core::to_json(recipe_.teacher)}}, {}, {}, {}};
      if (!recipe_.teacher.checkpoint.empty()) {
        teacher_dir = distill::resolve_checkpoint_dir(recipe_.teacher.checkpoint.string(),
                                                      "teacher.checkpoint");
        teacher_final = teacher_dir;
        stage.inputs = {{"checkpoint", teacher_final}};
        stage.outputs = {{"teacher", teacher_final}};
        stage.run = [teacher_final](const std::string&) {
          const auto meta = model::read_model_meta(teacher_final);
          if (meta.config.arch != "llama") {
            throw InputError(str("teacher.checkpoint ", teacher_final.string(), " holds a '",
                                 meta.config.arch, "' model; a pipeline needs a llama model"));
          }
          return json{{"checkpoint", teacher_final.string()}, {"step", meta.step}};
        };
      } else {
        teacher_dir = teacher_run;
        teacher_final = teacher_run / "final";
        stage.inputs = {{"data", data_dir_}};
        stage.outputs = {{"teacher", teacher_final}};
        stage.run = [this, teacher_run](const std::string& fingerprint) {
          return train_into(teacher_run, fingerprint, core::to_json(recipe_.teacher.recipe),
                            [](const RunCommandOptions& run) { return run_train(run); });
        };
      }
      stages_.push_back(std::move(stage));
    }
    fs::path model_dir = teacher_final;  // the model the next stage takes
    {
      Stage stage{"distill", "", {{"distill", core::to_json(recipe_.distill)}}, {}, {}, {}};
      const fs::path student = run_dir_ / "student";
      if (!recipe_.distill.enabled) {
        stage.off = "distill.enabled is false";
      } else {
        stage.inputs = {{"teacher", teacher_final}, {"data", data_dir_}};
        stage.outputs = {{"student", student / "final"}};
        stage.run = [this, student, teacher_dir](const std::string& fingerprint) {
          auto recipe = recipe_.distill.recipe;
          recipe.teacher = teacher_dir;
          return distill_into(student, fingerprint, recipe);
        };
        model_dir = student / "final";
      }
      stages_.push_back(std::move(stage));
    }
    json prune_config = core::to_json(recipe_.prune);
    prune_config.erase("heal");
    {
      Stage stage{"prune", "", {{"prune", prune_config}}, {}, {}, {}};
      const fs::path pruned = run_dir_ / "pruned";
      if (!recipe_.prune.enabled) {
        stage.off = "prune.enabled is false";
      } else {
        stage.inputs = {{"model", model_dir}, {"data", data_dir_}};
        stage.outputs = {{"pruned", pruned}};
        // The prune command's own checks before any stage runs: a typo in prune.pattern should
        // not cost a teacher's training.
        try {
          check_prune_options(prune_options(model_dir, pruned));
        } catch (const InputError& e) {
          throw InputError(str("stage prune: ", e.what()));
        }
        stage.run = [this, pruned, model_dir](const std::string&) {
          run_prune(prune_options(model_dir, pruned));
          const json report = core::read_json_file(pruned / "prune.json", "the prune report");
          json metrics = {{"parameters", report["parameters"]}};
          if (report.contains("evaluation")) metrics["evaluation"] = report["evaluation"];
          if (report.contains("config")) metrics["config"] = report["config"];
          return metrics;
        };
        model_dir = pruned;
      }
      stages_.push_back(std::move(stage));
    }
    {
      Stage stage{"heal", "", {{"prune", {{"heal", core::to_json(recipe_.prune.heal)}}}},
                  {},     {}, {}};
      const fs::path healed = run_dir_ / "healed";
      if (!recipe_.prune.enabled) {
        stage.off = "prune.enabled is false";
      } else if (!recipe_.prune.heal.enabled) {
        stage.off = "prune.heal.enabled is false";
      } else {
        const fs::path pruned = model_dir;
        stage.inputs = {{"pruned", pruned}, {"teacher", teacher_final}, {"data", data_dir_}};
        stage.outputs = {{"healed", healed / "final"}};
        stage.run = [this, healed, pruned, teacher_dir](const std::string& fingerprint) {
          auto recipe = recipe_.prune.heal.recipe;
          recipe.teacher = teacher_dir;
          recipe.student.init = "checkpoint";
          recipe.student.from = pruned.string();
          return distill_into(healed, fingerprint, recipe);
        };
        model_dir = healed / "final";
      }
      stages_.push_back(std::move(stage));
    }
    {
      Stage stage{"quantize",
                  "",
                  {{"name", recipe_.name}, {"quantize", core::to_json(recipe_.quantize)}},
                  {{"model", model_dir}, {"data", data_dir_}},
                  {{"gguf", gguf_}},
                  {}};
      if (!recipe_.quantize.plan.empty()) stage.inputs.push_back({"plan", recipe_.quantize.plan});
      stage.run = [this, model_dir](const std::string&) { return quantize(model_dir); };
      stages_.push_back(std::move(stage));
    }
    {
      Stage stage{"verify",
                  "",
                  {{"verify", core::to_json(recipe_.verify)}},
                  {{"gguf", gguf_}, {"reference", model_dir}, {"data", data_dir_}},
                  {{"report", report_}},
                  {}};
      if (!recipe_.verify.gates.empty()) stage.inputs.push_back({"gates", recipe_.verify.gates});
      stage.run = [this, model_dir](const std::string&) {
        const auto& v = recipe_.verify;
        VerifyOptions options;
        options.model = gguf_.string();
        options.reference = model_dir.string();
        options.data = data_dir_.string();
        options.split = v.split;
        options.context = v.context;
        options.max_tokens = v.max_tokens;
        options.threads = recipe_.threads;
        options.gates = v.gates.string();
        options.report = report_.string();
        options.skip_bench = !v.bench;
        try {
          run_verify(options);
        } catch (const GateFailure&) {
          // Recorded like a pass: the report says which gate failed, and a rerun with the same
          // inputs gives the same answer without measuring again.
        }
        const json report = core::read_json_file(report_, "the verify report");
        return json{{"metrics", report["metrics"]}, {"passed", report["passed"]}};
      };
      stages_.push_back(std::move(stage));
    }
  }

  PruneCliOptions prune_options(const fs::path& model_dir, const fs::path& out) const {
    const auto& p = recipe_.prune;
    PruneCliOptions options;
    options.model = model_dir.string();
    options.method = p.method;
    options.sparsity = p.sparsity;
    options.pattern = p.pattern;
    options.scope = p.scope;
    options.heads = p.heads;
    options.ffn = p.ffn;
    options.layers = p.layers;
    options.params = p.params;
    options.calibration.calib_tokens = p.method == "magnitude" ? 0 : p.calib_tokens;
    options.calibration.calib_context = p.calib_context;
    options.calibration.seed = static_cast<uint64_t>(p.seed);
    options.threads = recipe_.threads;
    options.out = out.string();
    return options;
  }

  json quantize(const fs::path& model_dir) const {
    const auto& q = recipe_.quantize;
    core::create_directories(artifacts_, "artifacts directory");
    if (q.type == "f16" || q.type == "f32") {
      ExportOptions options;
      options.model = model_dir.string();
      options.type = q.type;
      options.name = recipe_.name;
      options.out = gguf_.string();
      run_export(options);
      return json{{"method", "none"}, {"type", q.type}, {"file_bytes", fs::file_size(gguf_)}};
    }
    QuantizeCliOptions options;
    options.model = model_dir.string();
    options.method = q.method;
    options.type = q.type;
    options.plan = q.plan.string();
    options.calibration.calib_tokens = q.method == "rtn" ? 0 : q.calib_tokens;
    options.calibration.calib_context = q.calib_context;
    options.calibration.seed = static_cast<uint64_t>(q.seed);
    options.calibration.no_eval = true;  // the verify stage scores it
    options.act_order = q.act_order;
    options.block_size = q.block_size;
    options.damp = q.damp;
    options.threads = recipe_.threads;
    options.name = recipe_.name;
    options.out = gguf_.string();
    options.report = (artifacts_ / "model.quant.json").string();
    run_quantize(options);
    const json report = core::read_json_file(options.report, "the quantization report");
    json metrics;
    for (const char* key : {"method", "type", "parameters", "file_bytes", "bits_per_parameter",
                            "calibration", "seconds"}) {
      if (report.contains(key)) metrics[key] = report[key];
    }
    return metrics;
  }

  PipelineRecipe recipe_;
  fs::path run_dir_, cache_root_, data_dir_, artifacts_, gguf_, report_;
  std::vector<Stage> stages_;
};

// Loads the recipe and gives every stage the pipeline's data and threads.
PipelineRecipe load_pipeline(const PipelineOptions& options) {
  auto recipe = core::load_config<PipelineRecipe>(options.recipe, options.overrides);
  for (train::TrainRecipe* stage :
       {&recipe.teacher.recipe, &recipe.distill.recipe.base, &recipe.prune.heal.recipe.base}) {
    stage->data = recipe.data;
    stage->threads = recipe.threads;
  }
  return recipe;
}

// Whether a stage runs, and why.
struct Decision {
  bool run = true;
  std::string reason;
};

Decision decide(const Stage& stage, const fs::path& record_file, const json& inputs, bool forced,
                const std::string& forced_reason, FileHashes& hashes) {
  if (forced) return {true, forced_reason};
  if (!fs::exists(record_file)) return {true, "never ran here"};
  const json record = core::read_json_file(record_file, "stage record");
  if (!same(record.value("config", json()), stage.config)) {
    return {true, "config changed: " + changed_keys(record.value("config", json()), stage.config)};
  }
  const json before = contents(record.value("inputs", json::object()));
  const json now = contents(inputs);
  for (const auto& [role, files] : now.items()) {
    if (!before.contains(role) || !same(before[role], files)) {
      return {true,
              str("input changed: ", role, " (", inputs[role]["path"].get<std::string>(), ")")};
    }
  }
  const json outputs = record.value("outputs", json::object());
  for (const auto& [role, artifact] : outputs.items()) {
    const fs::path path = artifact["path"].get<std::string>();
    if (!same(hashes.files(path), artifact["files"])) {
      return {true, str("output missing or changed: ", path.string())};
    }
  }
  return {false, str("up to date (ran ", record.value("finished", std::string("?")), ")")};
}

// One line of what a stage made, for the closing summary.
std::string stage_summary(const std::string& name, const json& m) {
  auto number = [&](const char* key) { return m.contains(key) ? m[key].get<double>() : NAN; };
  if (name == "data" && m.contains("splits")) {
    return str(core::format_count(m["splits"]["train"].value("tokens", int64_t{0})),
               " train tokens");
  }
  if (m.contains("valid_ppl")) {
    return str("valid perplexity ", std::round(number("valid_ppl") * 100) / 100, " after ",
               m.value("step", 0), " steps");
  }
  if (name == "prune") {
    return str("parameters ", core::format_count(m["parameters"].value("before", int64_t{0})),
               " -> ", core::format_count(m["parameters"].value("after", int64_t{0})));
  }
  if (name == "quantize") {
    return str(m.value("method", std::string()), " ", m.value("type", std::string()), ", ",
               core::format_bytes(m.value("file_bytes", uint64_t{0})));
  }
  if (name == "verify") return m.value("passed", false) ? "gates passed" : "a gate FAILED";
  return "";
}

}  // namespace

const std::vector<std::string>& pipeline_stage_names() {
  static const std::vector<std::string> names = {"data", "teacher",  "distill", "prune",
                                                 "heal", "quantize", "verify"};
  return names;
}

int run_pipeline(const PipelineOptions& options) {
  const auto started = std::chrono::steady_clock::now();
  const std::string started_at = utc_now();
  const PipelineRecipe recipe = load_pipeline(options);
  Pipeline pipeline(recipe, options);
  const int threads =
      options.dry_run ? recipe.threads : train::configure_threads(recipe.threads, false);

  std::printf("recipe '%s' (%s) in %s%s\n", recipe.name.c_str(), options.recipe.c_str(),
              pipeline.run_dir().string().c_str(), options.dry_run ? ": plan (--dry-run)" : "");
  bool forced = options.force;
  FileHashes hashes;
  std::vector<fs::path> rebuilt;  // dry run: outputs of the stages planned to run
  json stage_reports = json::array();
  int number = 0;
  const int enabled =
      static_cast<int>(std::count_if(pipeline.stages().begin(), pipeline.stages().end(),
                                     [](const Stage& s) { return s.off.empty(); }));
  for (const Stage& stage : pipeline.stages()) {
    if (stage.name == options.from) forced = true;
    if (!stage.off.empty()) {
      std::printf("  %-9s off   %s\n", stage.name.c_str(), stage.off.c_str());
      stage_reports.push_back({{"name", stage.name}, {"status", "off"}, {"reason", stage.off}});
      continue;
    }
    ++number;
    const std::string forced_reason = options.force ? "--force" : "--from " + options.from;
    const fs::path record_file = pipeline.record_path(stage.name);
    if (options.dry_run) {
      Decision decision;
      const auto from_rebuilt =
          std::find_if(stage.inputs.begin(), stage.inputs.end(), [&](const Artifact& input) {
            return std::find(rebuilt.begin(), rebuilt.end(), input.path) != rebuilt.end();
          });
      if (!forced && from_rebuilt != stage.inputs.end()) {
        decision = {true, str("its input ", from_rebuilt->role, " is rebuilt first")};
      } else {
        decision = decide(stage, record_file, hashes.artifacts(stage.inputs), forced, forced_reason,
                          hashes);
      }
      std::printf("  %-9s %s  %s\n", stage.name.c_str(), decision.run ? "run " : "skip",
                  decision.reason.c_str());
      if (decision.run) {
        for (const auto& output : stage.outputs) rebuilt.push_back(output.path);
      }
      continue;
    }

    const json inputs = hashes.artifacts(stage.inputs);
    const json fingerprint_source = {
        {"stage", stage.name}, {"config", stage.config}, {"inputs", contents(inputs)}};
    const std::string fingerprint = core::sha256_hex(fingerprint_source.dump());
    const Decision decision = decide(stage, record_file, inputs, forced, forced_reason, hashes);
    json record;
    if (decision.run) {
      std::printf("\n== stage %d/%d: %s (%s)\n", number, enabled, stage.name.c_str(),
                  decision.reason.c_str());
      std::fflush(stdout);
      const auto stage_start = std::chrono::steady_clock::now();
      json metrics;
      try {
        metrics = stage.run(fingerprint);
      } catch (const StageInterrupted& interrupted) {
        std::printf("recipe: stage %s stopped; run the recipe again to resume it\n",
                    stage.name.c_str());
        return interrupted.exit_code;
      } catch (const InputError& e) {
        throw InputError(str("stage ", stage.name, ": ", e.what()));
      }
      for (const auto& output : stage.outputs) hashes.forget(output.path);
      record = {{"stage", stage.name},
                {"fingerprint", fingerprint},
                {"config", stage.config},
                {"inputs", inputs},
                {"outputs", hashes.artifacts(stage.outputs)},
                {"metrics", metrics},
                {"wall_s", core::seconds_since(stage_start)},
                {"finished", utc_now()},
                {"edgedistill_version", kVersion},
                {"git_revision", kGitRevision}};
      core::write_json_atomic(record_file, record);
    } else {
      std::printf("  %-9s skip  %s\n", stage.name.c_str(), decision.reason.c_str());
      record = core::read_json_file(record_file, "stage record");
    }
    stage_reports.push_back({{"name", stage.name},
                             {"status", decision.run ? "ran" : "skipped"},
                             {"reason", decision.reason},
                             {"wall_s", record["wall_s"]},
                             {"finished", record["finished"]},
                             {"inputs", record["inputs"]},
                             {"outputs", record["outputs"]},
                             {"metrics", record["metrics"]}});
  }
  if (options.dry_run) return 0;

  // The manifest: what ran, on what, with which result.
  const json report = core::read_json_file(pipeline.report(), "the verify report");
  json failed = json::array();
  for (const auto& gate : report["gates"]) {
    if (!gate["passed"].get<bool>()) {
      failed.push_back({{"key", gate["key"]}, {"detail", gate["detail"]}});
    }
  }
  json manifest;
  manifest["format"] = "edgedistill-manifest";
  manifest["version"] = 1;
  manifest["edgedistill"] = {{"version", kVersion}, {"git_revision", kGitRevision}};
  manifest["recipe"] = {{"file", fs::absolute(options.recipe).string()},
                        {"sha256", core::sha256_file_hex(options.recipe)},
                        {"content", core::read_config_json(options.recipe)},
                        {"overrides", options.overrides}};
  manifest["config"] = core::to_json(recipe);
  manifest["run_dir"] = pipeline.run_dir().string();
  manifest["started"] = started_at;
  manifest["wall_s"] = core::seconds_since(started);
  manifest["machine"] = machine_facts(threads);
  manifest["stages"] = stage_reports;
  const json& gguf = hashes.files(pipeline.gguf()).at(pipeline.gguf().filename().string());
  manifest["artifact"] = {{"path", pipeline.gguf().string()},
                          {"sha256", gguf.at("sha256")},
                          {"bytes", gguf.at("bytes")}};
  manifest["verify"] = report;
  manifest["result"] = {{"passed", failed.empty()}, {"failed_gates", failed}};
  const fs::path manifest_path = pipeline.artifacts() / "manifest.json";
  core::write_json_atomic(manifest_path, manifest);

  std::printf("\nrecipe '%s' done in %s:\n", recipe.name.c_str(),
              core::format_duration(core::seconds_since(started)).c_str());
  for (const auto& stage : stage_reports) {
    const std::string status = stage["status"].get<std::string>();
    const std::string took = status == "off"
                                 ? ""
                                 : str(status == "skipped" ? "(took " : "", std::setw(6),
                                       core::format_duration(stage["wall_s"].get<double>()),
                                       status == "skipped" ? ")" : "");
    std::printf("  %-9s %-8s %-14s %s\n", stage["name"].get<std::string>().c_str(), status.c_str(),
                took.c_str(),
                status == "off" ? "" : stage_summary(stage["name"], stage["metrics"]).c_str());
  }
  const auto& m = report["metrics"];
  std::printf("  artifact  %s (%.2f MB)\n", pipeline.gguf().string().c_str(),
              m.value("file_mb", 0.0));
  std::printf("  verify    perplexity %.3f (float %.3f), KL %.5f, top-1 %.2f %%\n",
              m.value("perplexity", 0.0), m.value("reference_perplexity", 0.0),
              m.value("mean_kl", 0.0), 100 * m.value("top1_agreement", 0.0));
  std::printf("  manifest  %s\n", manifest_path.string().c_str());
  if (!failed.empty()) {
    std::string names;
    for (const auto& gate : failed) {
      names += (names.empty() ? "" : "; ") + gate["key"].get<std::string>() + ": " +
               gate["detail"].get<std::string>();
    }
    throw GateFailure(str(names, " (manifest: ", manifest_path.string(), ")"));
  }
  std::printf("  gates     %s\n", report["gates"].empty() ? "none set" : "all passed");
  return 0;
}

}  // namespace edgedistill::cli
