// The GGUF file a runtime command (run, bench, verify --model) reads, from any model path.
#pragma once

#include <string>

namespace edgedistill::cli {

// A GGUF file is returned as it is. A checkpoint, a run, or a Hugging Face folder (imported as
// convert::resolve_model_dir does) is exported once to an f16 GGUF in the cache,
// cache_root/gguf/<name>-<key>-f16.gguf, where key hashes the checkpoint's path, model.json and
// the size and modification time of its weights; that file is returned. `what` names the option.
std::string runtime_model_path(const std::string& model, const std::string& what);

}  // namespace edgedistill::cli
