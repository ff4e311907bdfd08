#include "io/hf_weights.h"

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/files.h"

namespace edgedistill::io {

bool has_hf_weights(const fs::path& dir) {
  std::error_code ec;
  return fs::is_regular_file(dir / kHfWeightsIndexFile, ec) ||
         fs::is_regular_file(dir / kHfWeightsFile, ec);
}

HfWeights::HfWeights(const fs::path& dir) : dir_(dir) {
  std::error_code ec;
  const fs::path index_path = dir / kHfWeightsIndexFile;
  auto add_file = [&](const fs::path& path) -> const SafetensorsFile& {
    files_.push_back(std::make_unique<SafetensorsFile>(path));
    return *files_.back();
  };
  if (!fs::is_regular_file(index_path, ec)) {
    if (!fs::is_regular_file(dir / kHfWeightsFile, ec)) {
      throw FileError(str(dir.string(), " holds neither ", kHfWeightsFile, " nor ",
                          kHfWeightsIndexFile, "; a Hugging Face model folder needs its weights"));
    }
    const SafetensorsFile& file = add_file(dir / kHfWeightsFile);
    for (const TensorView& view : file.tensors()) tensors_[view.name] = {&file, &view};
    return;
  }
  const nlohmann::json index = core::read_json_file(index_path, "weights index");
  const auto map = index.is_object() ? index.find("weight_map") : index.end();
  if (map == index.end() || !map->is_object() || map->empty()) {
    throw FileError(str(index_path.string(),
                        ": 'weight_map' is missing or empty; expected {\"weight_map\": {tensor "
                        "name: shard file}}"));
  }
  // Shards in the order the index first names them; each opened once.
  std::map<std::string, const SafetensorsFile*> shards;
  for (const auto& [name, shard] : map->items()) {
    if (!shard.is_string()) {
      throw FileError(str(index_path.string(), ": weight_map['", name, "'] is not a file name"));
    }
    const std::string shard_name = shard.get<std::string>();
    if (shard_name.empty() || fs::path(shard_name).filename() != fs::path(shard_name)) {
      throw FileError(str(index_path.string(), ": weight_map['", name, "'] is '", shard_name,
                          "'; shards must be plain file names in the folder"));
    }
    auto it = shards.find(shard_name);
    if (it == shards.end()) {
      const fs::path path = dir / shard_name;
      if (!fs::is_regular_file(path, ec)) {
        throw FileError(str(index_path.string(), ": shard '", shard_name, "' (holding '", name,
                            "') is missing from ", dir.string(),
                            "; download or copy every shard the index names"));
      }
      it = shards.emplace(shard_name, &add_file(path)).first;
    }
    const TensorView* view = it->second->find(name);
    if (view == nullptr) {
      throw FileError(str(index_path.string(), ": tensor '", name, "' should be in ", shard_name,
                          " but that shard does not hold it"));
    }
    tensors_[name] = {it->second, view};
  }
  // A tensor in a shard but not in the index would be silently ignored; a tensor in two shards
  // is ambiguous. Both mean the folder is not what the index says.
  for (const auto& file : files_) {
    for (const TensorView& view : file->tensors()) {
      const auto it = tensors_.find(view.name);
      if (it == tensors_.end()) {
        throw FileError(str(file->path().string(), ": tensor '", view.name, "' is not listed in ",
                            kHfWeightsIndexFile));
      }
      if (it->second.file != file.get()) {
        throw FileError(str(file->path().string(), ": tensor '", view.name, "' is also in ",
                            it->second.file->path().filename().string(),
                            "; the index names that shard"));
      }
    }
  }
}

const TensorView* HfWeights::find(const std::string& name) const {
  const auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : it->second.view;
}

const TensorView& HfWeights::at(const std::string& name) const {
  if (const TensorView* view = find(name)) return *view;
  throw FileError(str(dir_.string(), ": the weights have no tensor '", name,
                      "'; the folder is incomplete or not of the architecture config.json names"));
}

const fs::path& HfWeights::file_of(const std::string& name) const {
  const auto it = tensors_.find(name);
  ED_CHECK(it != tensors_.end(), "file_of: no tensor ", name);
  return it->second.file->path();
}

std::vector<std::string> HfWeights::names() const {
  std::vector<std::string> names;
  for (const auto& item : tensors_) names.push_back(item.first);
  return names;
}

std::vector<fs::path> HfWeights::files() const {
  std::vector<fs::path> paths;
  for (const auto& file : files_) paths.push_back(file->path());
  return paths;
}

}  // namespace edgedistill::io
