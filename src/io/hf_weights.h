// The weights of a Hugging Face model folder: one model.safetensors, or shards listed by
// model.safetensors.index.json ({"weight_map": {tensor name: shard file name}}), as transformers
// writes them. LibTorch-free.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "io/safetensors.h"

namespace edgedistill::io {

namespace fs = std::filesystem;

inline constexpr const char* kHfWeightsFile = "model.safetensors";
inline constexpr const char* kHfWeightsIndexFile = "model.safetensors.index.json";

// Whether `dir` holds weights in either layout (the index wins when both are present, as in
// transformers).
bool has_hf_weights(const fs::path& dir);

// Every file of a folder's weights is opened (memory-mapped) and checked up front: the index must
// name existing shards, every tensor it lists must be in the shard it names, and no tensor may be
// in two shards. Violations are FileErrors naming the file and the tensor.
class HfWeights {
 public:
  explicit HfWeights(const fs::path& dir);

  // nullptr when absent.
  const TensorView* find(const std::string& name) const;
  // FileError naming the folder and the tensor when absent.
  const TensorView& at(const std::string& name) const;
  // The file that holds `name` (which must exist).
  const fs::path& file_of(const std::string& name) const;
  // Every tensor name, sorted.
  std::vector<std::string> names() const;
  // The weight files in the order opened (shard order).
  std::vector<fs::path> files() const;
  const fs::path& dir() const { return dir_; }

 private:
  struct Entry {
    const SafetensorsFile* file;
    const TensorView* view;
  };
  fs::path dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, Entry> tensors_;
};

}  // namespace edgedistill::io
