// edgedistill export: a trained llama checkpoint -> a GGUF file llama.cpp runs unchanged
// (quantize/gguf_export.h), with round-to-nearest quantization for the block types and
// llama.cpp's named K-quant mixes (quantize/quant_plan.h).
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>

#include "cli/command.h"
#include "cli/commands.h"
#include "convert/hf_export.h"
#include "core/error.h"
#include "core/log.h"
#include "core/progress.h"
#include "distill/teacher.h"
#include "model/model_meta.h"
#include "quantize/gguf_export.h"
#include "quantize/quant_plan.h"

namespace edgedistill::cli {
namespace {

const std::vector<std::string> kTensorTypes = {"f32",  "f16",  "q8_0", "q4_0", "q4_1",
                                               "q5_0", "q5_1", "q4_k", "q5_k", "q6_k"};

// The tensor types and llama.cpp's named mixes.
std::vector<std::string> export_types() {
  std::vector<std::string> names = kTensorTypes;
  for (const auto& mix : quant::known_mixes()) names.push_back(mix.name);
  return names;
}

io::GgmlType type_option(const std::string& name) {
  const auto type = io::parse_ggml_type(name);
  ED_CHECK(type.has_value(), "checked by CLI11: ", name);
  return *type;
}

// One line per type: how many matrices have it (named when they are few), and how many of them
// fell back from a K-quant because their rows are not whole super-blocks.
void print_matrix_types(const std::vector<quant::MatrixType>& matrices) {
  struct Group {
    std::vector<std::string> names;
    std::map<std::string, int> fell_back_from;
  };
  std::map<std::string, Group> by_type;
  for (const auto& m : matrices) {
    Group& group = by_type[std::string(io::ggml_type_traits(m.type).name)];
    group.names.push_back(m.name);
    if (m.type != m.wanted)
      ++group.fell_back_from[std::string(io::ggml_type_traits(m.wanted).name)];
  }
  for (const auto& [type, group] : by_type) {
    std::string line = str("  ", type, ": ", group.names.size(),
                           group.names.size() == 1 ? " matrix" : " matrices");
    if (group.names.size() <= 12) {
      std::string listed;
      for (const auto& name : group.names) listed += (listed.empty() ? "" : ", ") + name;
      line += ": " + listed;
    }
    for (const auto& [wanted, count] : group.fell_back_from) {
      line += str("; ", count, " fell back from ", wanted,
                  " (rows not whole 256-element super-blocks, as llama.cpp falls back)");
    }
    core::info(line);
  }
}

}  // namespace

int run_export(const ExportOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  const std::filesystem::path model_dir = distill::resolve_checkpoint_dir(options.model, "--model");
  if (options.format == "hf") {
    core::info("export: ", model_dir.string(), " -> ", options.out, " (Hugging Face folder)");
    const auto summary =
        convert::export_hf(model_dir, options.out, options.hf_architecture, options.force);
    if (!summary.warning.empty()) core::warn("export: ", summary.warning);
    std::printf("exported %s: %s, %s parameters, tokenizer %s, %.1f s\n", options.out.c_str(),
                summary.architecture.c_str(), core::format_count(summary.parameters).c_str(),
                summary.tokenizer_files.empty() ? "none" : summary.tokenizer_files.c_str(),
                std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    return 0;
  }
  quant::GgufExportOptions export_options;
  const auto mix = quant::find_mix(options.type);
  const model::CheckpointMeta meta = model::read_model_meta(model_dir);
  if (mix) {
    export_options.type = mix->base;
    if (meta.config.arch == "llama") {
      export_options.tensor_types = quant::resolve_plan(quant::mix_plan(*mix, meta.config.llama),
                                                        mix->base, meta.config.llama);
    }
    export_options.file_type = mix->file_type;
    export_options.file_type_name = mix->name;
  } else {
    export_options.type = type_option(options.type);
  }
  if (!options.embedding_type.empty()) {
    export_options.embedding_type = type_option(options.embedding_type);
  }
  export_options.tokenizer_dir = options.tokenizer;
  export_options.name = options.name;
  core::info("export: ", model_dir.string(), " -> ", options.out, " (", options.type, ")");
  if (meta.config.arch == "llama") {
    print_matrix_types(quant::export_matrix_types(meta.config.llama, export_options));
  }
  const auto summary = quant::export_llama_gguf(model_dir, export_options, options.out);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("exported %s: %lld tensors, %s parameters, %s, %.2f bits/parameter, %.1f s\n",
              options.out.c_str(), static_cast<long long>(summary.tensors),
              core::format_count(summary.parameters).c_str(),
              core::format_bytes(summary.file_bytes).c_str(),
              8.0 * static_cast<double>(summary.file_bytes) / summary.parameters, seconds);
  return 0;
}

void add_export_command(CLI::App& app, int& exit_code) {
  auto options = std::make_shared<ExportOptions>();
  auto* command = app.add_subcommand(
      "export",
      "Write a llama checkpoint as a GGUF file (llama architecture, with its tokenizer's "
      "vocabulary) that llama.cpp and `edgedistill run` load, or with --format hf as a Hugging "
      "Face folder that transformers loads");
  command
      ->add_option("--model", options->model,
                   "checkpoint directory, run directory (final/), Hugging Face folder or GGUF file")
      ->required();
  command->add_option("--format", options->format, "gguf, or hf (a Hugging Face model folder)")
      ->check(CLI::IsMember({"gguf", "hf"}))
      ->capture_default_str();
  command
      ->add_option("--hf-architecture", options->hf_architecture,
                   "--format hf: LlamaForCausalLM, MistralForCausalLM or Qwen2ForCausalLM "
                   "(default: the one the model was imported as; Qwen2 for q/k/v biases, else "
                   "Llama)")
      ->check(CLI::IsMember({"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"}));
  command->add_flag("--force", options->force, "--format hf: replace --out when it exists");
  command
      ->add_option("--type", options->type,
                   "tensor type of the matrices: f32, f16, or round-to-nearest q8_0, q4_0, "
                   "q4_1, q5_0, q5_1, the K-quants q4_k, q5_k, q6_k (256-element super-blocks, "
                   "scales searched), or llama.cpp's mixes q4_k_m, q4_k_s, q5_k_m, q5_k_s; norms "
                   "stay f32")
      ->check(CLI::IsMember(export_types()))
      ->capture_default_str();
  command
      ->add_option("--embedding-type", options->embedding_type,
                   "type of token_embd and output (default: q8_0 for the 4- and 5-bit types, else "
                   "--type)")
      ->check(CLI::IsMember(kTensorTypes));
  command->add_option("--tokenizer", options->tokenizer,
                      "tokenizer directory (default: the model's data directory's tokenizer/)");
  command->add_option("--name", options->name,
                      "general.name (default: the run's or the directory's name)");
  command
      ->add_option("-o,--out", options->out, "the GGUF file (or, --format hf, the folder) to write")
      ->required();
  command->callback([options, &exit_code] { exit_code = run_export(*options); });
}

}  // namespace edgedistill::cli
