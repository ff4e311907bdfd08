// The description of a model checkpoint directory, without LibTorch: model.json (versioned: the
// model config with the vocabulary resolved, plus provenance) beside weights.safetensors.
// Readers that only need the description (inspect, export, the runtime) use this header.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "model/model_config.h"

namespace edgedistill::model {

namespace fs = std::filesystem;

inline constexpr const char* kModelFileName = "model.json";
inline constexpr const char* kWeightsFileName = "weights.safetensors";
inline constexpr const char* kModelFormat = "edgedistill-model";
inline constexpr int kModelFormatVersion = 1;

// What model.json records besides the config.
struct CheckpointMeta {
  ModelConfig config;          // vocab_size resolved (> 0) for llama models
  std::string tokenizer_hash;  // sha256 of the tokenizer; empty for image models
  fs::path data_dir;           // the prepared data it was trained on; may be empty
  int64_t step = 0;            // optimizer steps taken
};

// model.json's contents for `meta`; `parameters` is the model's parameter count.
nlohmann::ordered_json model_json(const CheckpointMeta& meta, int64_t parameters);

// Reads and validates dir/model.json: format, version (newer versions are refused with a message),
// and the model config (same validation as a config file).
CheckpointMeta read_model_meta(const fs::path& dir);

}  // namespace edgedistill::model
