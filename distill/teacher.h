// The live teacher: a trained checkpoint loaded for inference only (evaluation mode, no
// gradients), on the student's device.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "model/checkpoint.h"
#include "model/llama.h"
#include "model/mlp.h"

namespace edgedistill::distill {

namespace fs = std::filesystem;

struct Teacher {
  fs::path dir;                // the checkpoint directory (model.json, weights.safetensors)
  model::CheckpointMeta meta;  // its config and provenance (tokenizer hash, data dir)
  std::string weights_sha256;  // of weights.safetensors: what a teacher cache records
  std::shared_ptr<torch::nn::Module> module;
  int64_t parameters = 0;

  bool is_llama() const { return meta.config.arch == "llama"; }
  model::LlamaModelImpl& llama() const;   // ED_CHECKs is_llama()
  model::MlpClassifierImpl& mlp() const;  // ED_CHECKs !is_llama()
};

// The checkpoint directory `path` names: a checkpoint itself (holds model.json), a run directory
// (its final/), or a Hugging Face folder or GGUF file, imported once into the cache
// (convert::resolve_model_dir). Otherwise an InputError saying what was expected.
fs::path resolve_checkpoint_dir(const fs::path& path, const std::string& what);

// Loads the teacher at `path` (see resolve_checkpoint_dir) onto `device`, in evaluation mode with
// requires_grad off.
Teacher load_teacher(const fs::path& path, torch::Device device);

}  // namespace edgedistill::distill
