// edgedistill export: a trained llama checkpoint -> a GGUF file llama.cpp runs unchanged
// (quantize/gguf_export.h), with round-to-nearest quantization for the 8- and 4-bit types.
#include <chrono>
#include <cstdio>
#include <memory>

#include "cli/command.h"
#include "cli/commands.h"
#include "convert/hf_export.h"
#include "core/error.h"
#include "core/log.h"
#include "core/progress.h"
#include "distill/teacher.h"
#include "quantize/gguf_export.h"

namespace edgedistill::cli {
namespace {

const std::vector<std::string> kExportTypes = {"f32",  "f16",  "q8_0", "q4_0",
                                               "q4_1", "q4_k", "q5_k", "q6_k"};

io::GgmlType type_option(const std::string& name) {
  const auto type = io::parse_ggml_type(name);
  ED_CHECK(type.has_value(), "checked by CLI11: ", name);
  return *type;
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
  export_options.type = type_option(options.type);
  if (!options.embedding_type.empty()) {
    export_options.embedding_type = type_option(options.embedding_type);
  }
  export_options.tokenizer_dir = options.tokenizer;
  export_options.name = options.name;
  core::info("export: ", model_dir.string(), " -> ", options.out, " (", options.type,
             ", token_embd/output ",
             io::ggml_type_traits(quant::export_tensor_type("output.weight", export_options)).name,
             ")");
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
                   "q4_1, or the K-quants q4_k, q5_k, q6_k (256-element super-blocks, scales "
                   "searched; norms stay f32)")
      ->check(CLI::IsMember(kExportTypes))
      ->capture_default_str();
  command
      ->add_option("--embedding-type", options->embedding_type,
                   "type of token_embd and output (default: q8_0 for the 4- and 5-bit types, else "
                   "--type)")
      ->check(CLI::IsMember(kExportTypes));
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
