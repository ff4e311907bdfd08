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

inline constexpr const char* kMaskFileName = "mask.safetensors";

// Pruning masks kept beside a checkpoint's weights (mask.safetensors, U8 on disk): parameter
// name -> a float tensor of the parameter's shape, 1 where the weight stays and 0 where it was
// pruned. A training run that starts from a masked checkpoint keeps the pruned weights at zero.
using WeightMasks = std::map<std::string, torch::Tensor>;

// The number of parameters (elements of every parameter tensor) of `model`.
int64_t parameter_count(torch::nn::Module& model);

// Writes model.json and weights.safetensors into `dir` (created if needed), each atomically, and
// mask.safetensors when `masks` is not empty (a stale one is removed when it is).
void save_model(const fs::path& dir, torch::nn::Module& model, const CheckpointMeta& meta,
                const WeightMasks& masks = {});

// dir/mask.safetensors checked against `model` (every name a parameter of the same shape, every
// value 0 or 1); empty when the file is absent.
WeightMasks load_masks(const fs::path& dir, torch::nn::Module& model);
// Zeroes the pruned weights of `model`, and their gradients where they have one.
void apply_masks(torch::nn::Module& model, const WeightMasks& masks);

struct LoadedModel {
  CheckpointMeta meta;
  std::shared_ptr<torch::nn::Module> module;
  WeightMasks masks;  // empty unless the checkpoint was pruned (mask.safetensors)
};
// Reads model.json, builds the model and loads its weights (strictly: see load_weights) and masks.
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
