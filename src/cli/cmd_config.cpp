// edgedistill config: print the merged configuration, or the reference of every key.
#include "cli/command.h"
#include "cli/pipeline_config.h"
#include "core/config.h"
#include "core/files.h"
#include "data/data_config.h"
#include "distill/distill_config.h"
#include "model/model_config.h"
#include "train/train_config.h"

namespace edgedistill::cli {
namespace {

struct ConfigCommandOptions {
  ConfigOptions config;
  std::string kind = "auto";
  bool keys = false;
  bool markdown = false;
};

// Which config a file holds, from its top-level keys.
std::string detect_kind(const std::string& file) {
  if (file.empty()) return "recipe";
  const auto json = core::read_config_json(file);
  if (looks_like_pipeline(json)) return "pipeline";
  if (json.is_object()) {
    if (json.contains("distill") || json.contains("teacher") || json.contains("teacher_cache") ||
        json.contains("student")) {
      return "distill";
    }
    if (json.contains("train") || json.contains("model")) return "recipe";
    if (json.contains("arch")) return "model";
    if (json.contains("sources") || json.contains("tokenizer") || json.contains("images") ||
        json.contains("split")) {
      return "data";
    }
  }
  throw ConfigError(str("cannot tell what kind of config '", file,
                        "' is; pass --kind pipeline, recipe, distill, data or model"));
}

// Text for a Markdown table cell: '|' would end the cell and '<...>' would read as HTML.
std::string markdown_cell(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '|') {
      out += "\\|";
    } else if (c == '<') {
      out += "&lt;";
    } else if (c == '>') {
      out += "&gt;";
    } else {
      out += c;
    }
  }
  return out;
}

// A key section that another kind documents in full (a pipeline's nested recipes): listed as one
// row pointing there.
struct Collapsed {
  std::string prefix;  // "teacher.recipe."
  std::string type;
  std::string help;
};

template <class Config>
void print_keys(const std::string& prefix, bool markdown,
                const std::vector<Collapsed>& collapsed = {}) {
  std::vector<core::KeyDoc> keys;
  std::vector<bool> shown(collapsed.size(), false);
  for (auto& key : core::list_keys<Config>(prefix)) {
    size_t c = 0;
    while (c < collapsed.size() && key.path.rfind(collapsed[c].prefix, 0) != 0) ++c;
    if (c == collapsed.size()) {
      keys.push_back(std::move(key));
    } else if (!shown[c]) {
      shown[c] = true;
      keys.push_back({collapsed[c].prefix + "*", collapsed[c].type, "", collapsed[c].help, ""});
    }
  }
  if (markdown) {
    std::printf("| key | type | default | meaning |\n|---|---|---|---|\n");
    for (const auto& key : keys) {
      std::string help = key.help;
      if (!key.condition.empty()) help += " (" + key.condition + ")";
      const std::string value = key.default_value.empty() ? "" : "`" + key.default_value + "`";
      std::printf("| `%s` | %s | %s | %s |\n", key.path.c_str(), markdown_cell(key.type).c_str(),
                  value.c_str(), markdown_cell(help).c_str());
    }
    return;
  }
  for (const auto& key : keys) {
    std::printf("%-34s %-28s %-12s %s%s\n", key.path.c_str(), key.type.c_str(),
                key.default_value.c_str(), key.help.c_str(),
                key.condition.empty() ? "" : (" (" + key.condition + ")").c_str());
  }
}

// The pipeline's nested data config and recipes have their own sections in docs/config.md.
void print_pipeline_keys(bool markdown) {
  print_keys<PipelineRecipe>(
      "", markdown,
      {{"data.", "data config", "the keys of a data config (Data configs)"},
       {"teacher.recipe.", "training recipe", "the keys of a training recipe (Training recipes)"},
       {"distill.recipe.", "distillation recipe",
        "the keys of a distillation recipe (Distillation recipes)"},
       {"prune.heal.recipe.", "distillation recipe",
        "the keys of a distillation recipe (Distillation recipes)"}});
}

template <class Config>
void print_merged(const ConfigOptions& options) {
  const auto config = core::load_config<Config>(options.file, options.overrides);
  std::printf("%s\n", core::to_json(config).dump(2).c_str());
}

int run_config(const ConfigCommandOptions& options) {
  const std::string kind = options.kind == "auto" ? detect_kind(options.config.file) : options.kind;
  if (options.keys) {
    if (kind == "pipeline") print_pipeline_keys(options.markdown);
    if (kind == "recipe") print_keys<train::TrainRecipe>("", options.markdown);
    if (kind == "distill") print_keys<distill::DistillRecipe>("", options.markdown);
    if (kind == "data") print_keys<data::DataConfig>("", options.markdown);
    if (kind == "model") print_keys<model::ModelConfig>("", options.markdown);
    return 0;
  }
  if (kind == "pipeline") print_merged<PipelineRecipe>(options.config);
  if (kind == "recipe") print_merged<train::TrainRecipe>(options.config);
  if (kind == "distill") print_merged<distill::DistillRecipe>(options.config);
  if (kind == "data") print_merged<data::DataConfig>(options.config);
  if (kind == "model") print_merged<model::ModelConfig>(options.config);
  return 0;
}

}  // namespace

void add_config_command(CLI::App& app, int& exit_code) {
  auto options = std::make_shared<ConfigCommandOptions>();
  auto* command = app.add_subcommand(
      "config", "Print the merged config (defaults < file < --set), or every key with --keys");
  add_config_options(
      command, options->config,
      "config file (pipeline recipe, training recipe, distill recipe, data or model)",
      "train.steps=100", false);
  command->add_option("--kind", options->kind, "what the config is (default: from its keys)")
      ->check(CLI::IsMember({"auto", "pipeline", "recipe", "distill", "data", "model"}));
  command->add_flag("--keys", options->keys, "list every key with its type, default and meaning");
  command->add_flag("--markdown", options->markdown, "with --keys: a Markdown table");
  command->callback([options, &exit_code] { exit_code = run_config(*options); });
}

}  // namespace edgedistill::cli
