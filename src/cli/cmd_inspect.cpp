// edgedistill inspect: a summary of any file or directory edgedistill writes.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>

#include "cli/command.h"
#include "convert/hf_config.h"
#include "convert/import_model.h"
#include "core/files.h"
#include "data/prepare.h"
#include "data/tokenizer.h"
#include "io/gguf.h"
#include "io/hf_weights.h"
#include "io/safetensors.h"
#include "model/model_meta.h"

namespace edgedistill::cli {
namespace {

namespace fs = std::filesystem;

nlohmann::ordered_json describe_safetensors(const fs::path& path) {
  const io::SafetensorsFile file(path);
  nlohmann::ordered_json out;
  out["kind"] = "safetensors";
  out["path"] = path.string();
  out["bytes"] = fs::file_size(path);
  int64_t parameters = 0;
  nlohmann::ordered_json tensors = nlohmann::ordered_json::array();
  for (const auto& tensor : file.tensors()) {
    parameters += tensor.numel();
    tensors.push_back(str(tensor.name, " ", io::dtype_name(tensor.dtype), " ",
                          nlohmann::json(tensor.shape).dump()));
  }
  out["tensor_count"] = file.tensors().size();
  out["elements"] = parameters;
  out["metadata"] = file.metadata();
  out["tensors"] = tensors;
  return out;
}

// A metadata value as JSON; long arrays (a vocabulary) show their length and first elements.
nlohmann::ordered_json gguf_value_json(const io::GgufValue& value) {
  using io::GgufValueType;
  switch (value.type) {
    case GgufValueType::string:
      return value.text;
    case GgufValueType::boolean:
      return value.integer != 0;
    case GgufValueType::float32:
    case GgufValueType::float64:
      return value.number;
    case GgufValueType::int8:
    case GgufValueType::int16:
    case GgufValueType::int32:
    case GgufValueType::int64:
      return static_cast<int64_t>(value.integer);
    case GgufValueType::array: {
      constexpr size_t kShown = 8;
      nlohmann::ordered_json items = nlohmann::ordered_json::array();
      for (size_t i = 0; i < std::min(kShown, value.elements.size()); ++i) {
        items.push_back(gguf_value_json(value.elements[i]));
      }
      if (value.elements.size() <= kShown) return items;
      nlohmann::ordered_json out;
      out["array"] = io::gguf_value_type_name(value.element_type);
      out["count"] = value.elements.size();
      out["first"] = items;
      return out;
    }
    default:
      return value.integer;
  }
}

nlohmann::ordered_json describe_gguf(const fs::path& path) {
  const io::GgufReader file(path);
  nlohmann::ordered_json out;
  out["kind"] = "gguf";
  out["path"] = path.string();
  out["bytes"] = file.file_bytes();
  out["version"] = file.version();
  out["alignment"] = file.alignment();
  nlohmann::ordered_json metadata;
  for (const auto& [key, value] : file.metadata()) {
    metadata[key] = {{"type", io::gguf_value_type_name(value.type)},
                     {"value", gguf_value_json(value)}};
  }
  out["metadata"] = metadata;
  uint64_t elements = 0;
  std::map<std::string, uint64_t> bytes_by_type;
  nlohmann::ordered_json tensors = nlohmann::ordered_json::array();
  for (const auto& tensor : file.tensors()) {
    const std::string type(io::ggml_type_traits(tensor.type).name);
    elements += tensor.elements();
    bytes_by_type[type] += tensor.nbytes;
    tensors.push_back(str(tensor.name, " ", type, " ", nlohmann::json(tensor.dims).dump(),
                          " offset ", tensor.offset, " bytes ", tensor.nbytes));
  }
  out["tensor_count"] = file.tensors().size();
  out["elements"] = elements;
  out["bytes_by_type"] = bytes_by_type;
  out["tensors"] = tensors;
  return out;
}

// A Hugging Face model folder as edgedistill would import it (convert/import_model.h).
nlohmann::ordered_json describe_hf_folder(const fs::path& dir) {
  const convert::HfModelConfig hf = convert::read_hf_config(dir / convert::kHfConfigFile);
  const io::HfWeights weights(dir);
  nlohmann::ordered_json out;
  out["kind"] = "Hugging Face model folder";
  out["path"] = dir.string();
  out["architecture"] = hf.architecture;
  model::ModelConfig config;
  config.llama = hf.llama;
  out["model"] = core::to_json(config);
  const auto counts = model::count_parameters(hf.llama);
  out["parameters"] = counts.total;
  out["non_embedding_parameters"] = counts.non_embedding;
  nlohmann::ordered_json files = nlohmann::ordered_json::array();
  for (const fs::path& file : weights.files()) files.push_back(file.filename().string());
  out["weight_files"] = files;
  std::map<std::string, int64_t> dtypes;
  for (const std::string& name : weights.names()) {
    ++dtypes[std::string(io::dtype_name(weights.at(name).dtype))];
  }
  out["tensors"] = weights.names().size();
  out["tensor_dtypes"] = dtypes;
  out["tokenizer"] = data::open_tokenizer(dir)->description();
  return out;
}

nlohmann::ordered_json describe_model_dir(const fs::path& dir) {
  const auto meta = model::read_model_meta(dir);
  nlohmann::ordered_json out;
  out["kind"] = "model checkpoint";
  out["path"] = dir.string();
  out["model"] = core::to_json(meta.config);
  if (meta.config.arch == "llama") {
    const auto counts = model::count_parameters(meta.config.llama);
    out["parameters"] = counts.total;
    out["non_embedding_parameters"] = counts.non_embedding;
  }
  out["step"] = meta.step;
  if (!meta.tokenizer_hash.empty()) out["tokenizer_hash"] = meta.tokenizer_hash;
  if (!meta.data_dir.empty()) out["data_dir"] = meta.data_dir.string();
  out["weights"] = describe_safetensors(dir / model::kWeightsFileName);
  return out;
}

nlohmann::ordered_json describe_run_dir(const fs::path& dir) {
  nlohmann::ordered_json out;
  out["kind"] = "run directory";
  out["path"] = dir.string();
  const auto config = core::read_json_file(dir / "config.json", "run config");
  out["name"] = config.value("name", "");
  if (fs::exists(dir / "run.json"))
    out["run"] = core::read_json_file(dir / "run.json", "run record");
  if (fs::exists(dir / "result.json")) {
    out["result"] = core::read_json_file(dir / "result.json", "run result");
  }
  nlohmann::ordered_json checkpoints = nlohmann::ordered_json::array();
  if (fs::is_directory(dir / "checkpoints")) {
    for (const auto& entry : fs::directory_iterator(dir / "checkpoints")) {
      if (fs::exists(entry.path() / "trainer.json"))
        checkpoints.push_back(entry.path().filename().string());
    }
  }
  out["checkpoints"] = checkpoints;
  if (fs::exists(dir / "metrics.jsonl")) {
    // The last record of each kind: the latest training log and the latest evaluation.
    const std::string text = core::read_file(dir / "metrics.jsonl", "metrics log");
    nlohmann::json last_train, last_eval;
    size_t start = 0;
    while (start < text.size()) {
      const size_t end = text.find('\n', start);
      const auto record = nlohmann::json::parse(text.substr(start, end - start), nullptr, false);
      if (!record.is_discarded()) (record.contains("loss") ? last_train : last_eval) = record;
      if (end == std::string::npos) break;
      start = end + 1;
    }
    out["last_train_record"] = last_train;
    out["last_eval_record"] = last_eval;
  }
  return out;
}

int run_inspect(const std::string& path_text) {
  const fs::path path(path_text);
  std::error_code ec;
  if (!fs::exists(path, ec)) throw FileError(str("'", path_text, "' does not exist"));
  nlohmann::ordered_json summary;
  if (fs::is_directory(path) && fs::exists(path / model::kModelFileName)) {
    summary = describe_model_dir(path);
  } else if (fs::is_directory(path) && fs::exists(path / "config.json") &&
             (fs::exists(path / "metrics.jsonl") || fs::exists(path / "run.json"))) {
    summary = describe_run_dir(path);
  } else if (convert::model_source_kind(path) == convert::ModelSourceKind::hf_folder) {
    summary = describe_hf_folder(path);
  } else if (path.extension() == ".gguf" || io::is_gguf_file(path)) {
    summary = describe_gguf(path);
  } else if (path.extension() == ".safetensors") {
    summary = describe_safetensors(path);
  } else {
    summary = data::describe_path(path);
  }
  if (summary.empty()) {
    throw InputError(str("'", path_text,
                         "' is not something edgedistill can inspect: expected a "
                         "token shard (.bin), a tokenizer or prepared-data directory, a model "
                         "checkpoint directory, a run directory, a Hugging Face model folder, a "
                         ".safetensors or a .gguf file"));
  }
  std::printf("%s\n", summary.dump(2).c_str());
  return 0;
}

}  // namespace

void add_inspect_command(CLI::App& app, int& exit_code) {
  auto path = std::make_shared<std::string>();
  auto* command = app.add_subcommand(
      "inspect",
      "Summarise a token shard, tokenizer, prepared data, checkpoint, run, Hugging Face model "
      "folder, safetensors or GGUF file");
  command->add_option("path", *path, "what to inspect")->required();
  command->callback([path, &exit_code] { exit_code = run_inspect(*path); });
}

}  // namespace edgedistill::cli
