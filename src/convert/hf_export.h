// An edgedistill checkpoint as a Hugging Face model folder (docs/import.md): config.json,
// model.safetensors (Hugging Face tensor names, q/k rows back in rotate_half order, dtypes as
// stored) and the tokenizer's files (tokenizer.json + tokenizer_config.json, or tokenizer.model),
// loadable by transformers; `edgedistill import` of the folder gives the same checkpoint.
#pragma once

#include <filesystem>
#include <string>

namespace edgedistill::convert {

namespace fs = std::filesystem;

struct HfExportSummary {
  std::string architecture;
  int64_t parameters = 0;
  std::string tokenizer_files;  // what was written for the tokenizer ("" when it has no HF form)
  std::string warning;          // non-empty when something could not be written
};

// `architecture`: "" takes the one the model was imported from (import.json), else
// Qwen2ForCausalLM for models with q/k/v biases and LlamaForCausalLM otherwise. `out` is written
// in a staging directory and renamed (core::write_directory_atomic); an existing `out` is an InputError unless `overwrite`.
HfExportSummary export_hf(const fs::path& model_dir, const fs::path& out,
                          const std::string& architecture, bool overwrite);

}  // namespace edgedistill::convert
