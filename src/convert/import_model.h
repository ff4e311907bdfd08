// Models from elsewhere as edgedistill checkpoints (docs/import.md): a Hugging Face folder
// (config.json, model.safetensors or shards with model.safetensors.index.json, tokenizer.json
// and/or tokenizer.model) or a GGUF file of the llama architecture (any block type the runtime
// reads, dequantized through io::row_dequantizer).
//
// The checkpoint holds model.json, weights.safetensors (GGUF tensor names; Hugging Face tensors
// keep their dtype, f32/f16/bf16, with q/k rows reordered for adjacent-pair RoPE, see
// rope_rows.h; GGUF tensors become f32), tokenizer/ (the source's tokenizer) and import.json
// (where it came from).
#pragma once

#include <filesystem>
#include <string>

namespace edgedistill::convert {

namespace fs = std::filesystem;

inline constexpr const char* kImportFileName = "import.json";

enum class ModelSourceKind { checkpoint, hf_folder, gguf_file, unknown };

// What `path` is, by its files alone (nothing is parsed): a checkpoint (model.json) or run
// (final/model.json), a Hugging Face folder (config.json beside weights), a GGUF file (magic).
ModelSourceKind model_source_kind(const fs::path& path);
const char* model_source_name(ModelSourceKind kind);

struct ImportSummary {
  std::string source_kind;   // "hf" or "gguf"
  std::string architecture;  // config.json's, or "llama (GGUF <file type>)"
  int64_t parameters = 0;
  int64_t tensors = 0;
  std::string dtypes;  // the source's tensor types, e.g. "bf16" or "q8_0, f32"
  std::string tokenizer;
  double seconds = 0;
};

// Imports `source` into `out` (written in a staging directory, then renamed: nothing is left behind on
// failure). An existing `out` is an InputError unless `overwrite`.
ImportSummary import_model(const fs::path& source, const fs::path& out, bool overwrite = false);

// The checkpoint a model path names. Checkpoints and runs are returned as they are (a run's
// final/); a Hugging Face folder or GGUF file is imported once into
// cache_root/models/<name>-<key>, where key hashes the import format, the source's file names,
// sizes and modification times and its config.json, and that directory is returned. `what` names
// the option in errors ("--teacher").
fs::path resolve_model_dir(const fs::path& path, const std::string& what,
                           const fs::path& cache_root);

}  // namespace edgedistill::convert
