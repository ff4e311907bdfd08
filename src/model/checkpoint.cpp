#include "model/checkpoint.h"

#include <set>

#include "core/files.h"
#include "model/llama.h"
#include "model/mlp.h"

namespace edgedistill::model {

std::shared_ptr<torch::nn::Module> build_model(const ModelConfig& config) {
  if (config.arch == "llama") return std::make_shared<LlamaModelImpl>(config.llama);
  if (config.arch == "mlp") return std::make_shared<MlpClassifierImpl>(config.mlp);
  ED_CHECK(false, "unknown arch ", config.arch);
  return nullptr;
}

io::Dtype to_io_dtype(torch::ScalarType type) {
  switch (type) {
    case torch::kFloat32:
      return io::Dtype::F32;
    case torch::kFloat64:
      return io::Dtype::F64;
    case torch::kFloat16:
      return io::Dtype::F16;
    case torch::kBFloat16:
      return io::Dtype::BF16;
    case torch::kInt64:
      return io::Dtype::I64;
    case torch::kInt32:
      return io::Dtype::I32;
    case torch::kInt16:
      return io::Dtype::I16;
    case torch::kInt8:
      return io::Dtype::I8;
    case torch::kUInt8:
      return io::Dtype::U8;
    case torch::kBool:
      return io::Dtype::BOOL;
    default:
      break;
  }
  ED_CHECK(false, "no safetensors dtype for torch type ", type);
  return io::Dtype::F32;
}

namespace {

torch::ScalarType to_torch_dtype(io::Dtype dtype, const std::string& file,
                                 const std::string& name) {
  switch (dtype) {
    case io::Dtype::F32:
      return torch::kFloat32;
    case io::Dtype::F64:
      return torch::kFloat64;
    case io::Dtype::F16:
      return torch::kFloat16;
    case io::Dtype::BF16:
      return torch::kBFloat16;
    case io::Dtype::I64:
      return torch::kInt64;
    case io::Dtype::I32:
      return torch::kInt32;
    case io::Dtype::I16:
      return torch::kInt16;
    case io::Dtype::I8:
      return torch::kInt8;
    case io::Dtype::U8:
      return torch::kUInt8;
    case io::Dtype::BOOL:
      return torch::kBool;
    default:
      break;
  }
  throw FileError(str("'", file, "': tensor '", name, "' has dtype ", io::dtype_name(dtype),
                      ", which LibTorch 1.13 cannot hold; convert the file to F32, F16 or BF16"));
}

}  // namespace

torch::Tensor tensor_from_view(const io::TensorView& view) {
  const auto type = to_torch_dtype(view.dtype, "", view.name);
  // from_blob does not own the mapped bytes; clone() makes a tensor that does.
  return torch::from_blob(const_cast<uint8_t*>(view.data), view.shape,
                          torch::TensorOptions().dtype(type))
      .clone();
}

void add_tensor(io::SafetensorsWriter& writer, const std::string& name,
                const torch::Tensor& tensor) {
  const auto cpu = tensor.detach().to(torch::kCPU).contiguous();
  writer.add(name, to_io_dtype(cpu.scalar_type()), cpu.sizes().vec(), cpu.data_ptr(),
             static_cast<size_t>(cpu.numel()) * cpu.element_size());
}

void save_weights(const fs::path& file, torch::nn::Module& model,
                  const std::map<std::string, std::string>& metadata) {
  io::SafetensorsWriter writer;
  for (const auto& item : model.named_parameters()) add_tensor(writer, item.key(), item.value());
  for (const auto& [key, value] : metadata) writer.set_metadata(key, value);
  writer.write(file);
}

void load_weights(const fs::path& file, torch::nn::Module& model) {
  const io::SafetensorsFile weights(file);
  std::set<std::string> expected;
  torch::NoGradGuard no_grad;
  for (auto& item : model.named_parameters()) {
    expected.insert(item.key());
    const io::TensorView& view = weights.at(item.key());
    auto& parameter = item.value();
    if (view.shape != parameter.sizes().vec()) {
      throw FileError(str("'", file.string(), "': tensor '", item.key(), "' has shape ",
                          c10::IntArrayRef(view.shape), " but the model config needs ",
                          parameter.sizes(), "; the weights do not belong to this model.json"));
    }
    const auto type = to_torch_dtype(view.dtype, file.string(), item.key());
    if (type != torch::kFloat32 && type != torch::kFloat16 && type != torch::kBFloat16) {
      throw FileError(str("'", file.string(), "': tensor '", item.key(), "' has dtype ",
                          io::dtype_name(view.dtype), "; expected F32, F16 or BF16"));
    }
    parameter.copy_(tensor_from_view(view).to(parameter.scalar_type()));
  }
  for (const auto& view : weights.tensors()) {
    if (expected.count(view.name) == 0) {
      throw FileError(str("'", file.string(), "' holds the tensor '", view.name,
                          "', which the model does not have; the weights do not belong to this "
                          "model.json"));
    }
  }
}

int64_t parameter_count(torch::nn::Module& model) {
  int64_t count = 0;
  for (const auto& p : model.parameters()) count += p.numel();
  return count;
}

void save_model(const fs::path& dir, torch::nn::Module& model, const CheckpointMeta& meta,
                const WeightMasks& masks) {
  core::create_directories(dir, "checkpoint directory");
  const int64_t parameters = parameter_count(model);
  save_weights(dir / kWeightsFileName, model,
               {{"format", "pt"}, {"edgedistill.tokenizer_hash", meta.tokenizer_hash}});
  if (masks.empty()) {
    std::error_code ignored;
    fs::remove(dir / kMaskFileName, ignored);
  } else {
    io::SafetensorsWriter writer;
    for (const auto& [name, mask] : masks) add_tensor(writer, name, mask.to(torch::kUInt8));
    writer.set_metadata("format", "pt");
    writer.write(dir / kMaskFileName);
  }
  // model.json last: a directory with a model.json always has its weights.
  core::write_file_atomic(dir / kModelFileName, model_json(meta, parameters).dump(2) + "\n");
}

WeightMasks load_masks(const fs::path& dir, torch::nn::Module& model) {
  WeightMasks masks;
  const fs::path file = dir / kMaskFileName;
  if (!fs::exists(file)) return masks;
  const io::SafetensorsFile stored(file);
  const auto parameters = model.named_parameters();
  for (const auto& view : stored.tensors()) {
    const auto* parameter = parameters.find(view.name);
    if (parameter == nullptr) {
      throw FileError(str("'", file.string(), "' masks the tensor '", view.name,
                          "', which the model does not have; the mask belongs to another model"));
    }
    if (view.shape != parameter->sizes().vec()) {
      throw FileError(str("'", file.string(), "': the mask of '", view.name, "' has shape ",
                          c10::IntArrayRef(view.shape), " but the tensor has ", parameter->sizes(),
                          "; the mask belongs to another model"));
    }
    auto mask = tensor_from_view(view).to(torch::kFloat32);
    if (!torch::logical_or(mask == 0, mask == 1).all().item<bool>()) {
      throw FileError(str("'", file.string(), "': the mask of '", view.name,
                          "' holds values other than 0 and 1"));
    }
    masks[view.name] = mask.to(parameter->device());
  }
  return masks;
}

void apply_masks(torch::nn::Module& model, const WeightMasks& masks) {
  if (masks.empty()) return;
  torch::NoGradGuard no_grad;
  for (auto& item : model.named_parameters()) {
    const auto it = masks.find(item.key());
    if (it == masks.end()) continue;
    item.value().mul_(it->second);
    if (item.value().grad().defined()) item.value().mutable_grad().mul_(it->second);
  }
}

LoadedModel load_model(const fs::path& dir) {
  LoadedModel loaded;
  loaded.meta = read_model_meta(dir);
  loaded.module = build_model(loaded.meta.config);
  load_weights(dir / kWeightsFileName, *loaded.module);
  loaded.masks = load_masks(dir, *loaded.module);
  return loaded;
}

}  // namespace edgedistill::model
