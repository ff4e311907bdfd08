// Model checkpoints with LibTorch: building, saving and loading models. The directory holds
// model.json (model_meta.h) and weights.safetensors (float32, GGUF tensor names).
#pragma once

#include <torch/torch.h>

#include <filesystem>
#include <map>
#include <memory>
#include <string>

#include "io/safetensors.h"
#include "model/model_meta.h"

namespace edgedistill::model {

namespace fs = std::filesystem;

// Builds a freshly initialised model (seeded by the caller through torch::manual_seed).
std::shared_ptr<torch::nn::Module> build_model(const ModelConfig& config);

// Writes model.json and weights.safetensors into `dir` (created if needed), each atomically.
void save_model(const fs::path& dir, torch::nn::Module& model, const CheckpointMeta& meta);

struct LoadedModel {
  CheckpointMeta meta;
  std::shared_ptr<torch::nn::Module> module;
};
// Reads model.json, builds the model and loads its weights (strictly: see load_weights).
LoadedModel load_model(const fs::path& dir);

// Parameters as float32 safetensors, in named_parameters() order (deterministic bytes).
void save_weights(const fs::path& file, torch::nn::Module& model,
                  const std::map<std::string, std::string>& metadata);
// Loads every parameter by name. A missing or unexpected tensor, or a shape or dtype mismatch, is
// a FileError naming the file and the tensor. F16 and BF16 tensors are widened to float32.
void load_weights(const fs::path& file, torch::nn::Module& model);

// Conversions between LibTorch tensors and safetensors views.
io::Dtype to_io_dtype(torch::ScalarType type);
torch::Tensor tensor_from_view(const io::TensorView& view);  // a copy, owned by LibTorch
void add_tensor(io::SafetensorsWriter& writer, const std::string& name,
                const torch::Tensor& tensor);

}  // namespace edgedistill::model
