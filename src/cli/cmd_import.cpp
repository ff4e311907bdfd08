// edgedistill import: a Hugging Face model folder or a GGUF file -> an edgedistill checkpoint
// (convert/import_model.h). Every command that takes a model also takes these sources directly
// (imported once into the cache); this command names the output and reports what it read.
#include <cstdio>
#include <memory>

#include "cli/command.h"
#include "convert/import_model.h"
#include "core/error.h"
#include "core/log.h"
#include "core/progress.h"

namespace edgedistill::cli {
namespace {

struct ImportOptions {
  std::string source;
  std::string out;
  bool force = false;
};

int run_import(const ImportOptions& options) {
  core::info("import: ", options.source, " -> ", options.out);
  const convert::ImportSummary summary =
      convert::import_model(options.source, options.out, options.force);
  std::printf("imported %s (%s, %s): %s parameters in %lld tensors (%s), tokenizer %s, %.1f s\n",
              options.out.c_str(), summary.architecture.c_str(),
              summary.source_kind == "hf" ? "Hugging Face folder" : "GGUF file",
              core::format_count(summary.parameters).c_str(),
              static_cast<long long>(summary.tensors), summary.dtypes.c_str(),
              summary.tokenizer.c_str(), summary.seconds);
  return 0;
}

}  // namespace

void add_import_command(CLI::App& app, int& exit_code) {
  auto options = std::make_shared<ImportOptions>();
  auto* command = app.add_subcommand(
      "import",
      "Convert a Hugging Face model folder (LlamaForCausalLM, MistralForCausalLM, "
      "Qwen2ForCausalLM; safetensors, sharded or not; f32/f16/bf16) or a llama GGUF file into an "
      "edgedistill checkpoint with its tokenizer. Commands that take a model accept SRC directly");
  command->add_option("SRC", options->source, "Hugging Face model folder or GGUF file")->required();
  command->add_option("-o,--out", options->out, "checkpoint directory to write")->required();
  command->add_flag("--force", options->force, "replace --out when it exists");
  command->callback([options, &exit_code] { exit_code = run_import(*options); });
}

}  // namespace edgedistill::cli
