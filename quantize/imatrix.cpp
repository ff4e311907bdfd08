#include "quantize/imatrix.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/files.h"
#include "io/gguf.h"
#include "quantize/gguf_export.h"
#include "quantize/quantize_model.h"

namespace edgedistill::quant {
namespace {

const std::string kSumsSuffix = ".in_sum2";
const std::string kCountsSuffix = ".counts";

bool strip_suffix(std::string& name, const std::string& suffix) {
  if (name.size() <= suffix.size() ||
      name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) {
    return false;
  }
  name.resize(name.size() - suffix.size());
  return true;
}

void check_values(const std::vector<float>& values, const fs::path& path, const std::string& what) {
  for (size_t i = 0; i < values.size(); ++i) {
    if (!std::isfinite(values[i]) || values[i] < 0) {
      throw FileError(str(path.string(), ": ", what, " has value ", values[i], " at ", i,
                          "; an importance matrix holds finite sums of squares (>= 0)"));
    }
  }
}

std::vector<float> f32_values(const io::GgufTensor& tensor, const fs::path& path) {
  if (tensor.type != io::GgmlType::f32) {
    throw FileError(str(path.string(), ": imatrix tensor '", tensor.name, "' is ",
                        io::ggml_type_traits(tensor.type).name, "; llama.cpp's format has F32"));
  }
  std::vector<float> values(tensor.elements());
  if (!values.empty()) std::memcpy(values.data(), tensor.data, values.size() * sizeof(float));
  return values;
}

Imatrix read_gguf(const fs::path& path) {
  const io::GgufReader reader(path);
  Imatrix out;
  if (const auto* type = reader.find("general.type");
      type != nullptr && type->type == io::GgufValueType::string && type->text != "imatrix") {
    throw FileError(str(path.string(), ": a GGUF file of general.type '", type->text,
                        "', not an importance matrix (general.type 'imatrix')"));
  }
  // llama-quantize refuses a GGUF imatrix without these three keys; so do we.
  for (const char* key : {"imatrix.datasets", "imatrix.chunk_count", "imatrix.chunk_size"}) {
    if (reader.find(key) == nullptr) {
      throw FileError(str(path.string(), ": no '", key,
                          "' key; not an importance matrix llama-imatrix or edgedistill wrote"));
    }
  }
  for (const auto& value :
       reader.require_array("imatrix.datasets", io::GgufValueType::string).elements) {
    out.datasets.push_back(value.text);
  }
  out.chunk_count = reader.get_u32("imatrix.chunk_count");
  out.chunk_size = reader.get_u32("imatrix.chunk_size");
  std::map<std::string, std::pair<const io::GgufTensor*, const io::GgufTensor*>> pairs;
  for (const auto& tensor : reader.tensors()) {
    std::string name = tensor.name;
    if (strip_suffix(name, kSumsSuffix)) {
      pairs[name].first = &tensor;
    } else if (strip_suffix(name, kCountsSuffix)) {
      pairs[name].second = &tensor;
    } else {
      throw FileError(str(path.string(), ": tensor '", tensor.name, "' is neither <name>",
                          kSumsSuffix, " nor <name>", kCountsSuffix));
    }
  }
  if (pairs.empty()) throw FileError(str(path.string(), ": an importance matrix with no entries"));
  for (const auto& [name, pair] : pairs) {
    if (pair.first == nullptr || pair.second == nullptr) {
      throw FileError(str(path.string(), ": '", name, "' has ",
                          pair.first == nullptr ? kCountsSuffix : kSumsSuffix, " but no ",
                          pair.first == nullptr ? kSumsSuffix : kCountsSuffix));
    }
    ImatrixEntry entry;
    entry.sums = f32_values(*pair.first, path);
    entry.counts = f32_values(*pair.second, path);
    if (entry.counts.empty() || entry.sums.size() % entry.counts.size() != 0) {
      throw FileError(str(path.string(), ": '", name, "' has ", entry.sums.size(), " sums for ",
                          entry.counts.size(), " counts; sums must be a whole row per count"));
    }
    check_values(entry.sums, path, name + kSumsSuffix);
    check_values(entry.counts, path, name + kCountsSuffix);
    out.entries.emplace(name, std::move(entry));
  }
  return out;
}

// Reads the legacy layout field by field, each read checked against the bytes left.
class LegacyReader {
 public:
  explicit LegacyReader(const fs::path& path)
      : path_(path), bytes_(core::read_file(path, "importance matrix")) {}
  bool at_end() const { return at_ == bytes_.size(); }
  int32_t i32(const std::string& what) {
    int32_t value;
    take(&value, sizeof value, what);
    return value;
  }
  void take(void* out, size_t n, const std::string& what) {
    if (bytes_.size() - at_ < n) {
      throw FileError(str(path_.string(), ": truncated at byte ", at_, " reading ", what,
                          " (a legacy .dat importance matrix)"));
    }
    std::memcpy(out, bytes_.data() + at_, n);
    at_ += n;
  }
  std::string text(int32_t length, const std::string& what) {
    if (length < 0 || length > 4096) {
      throw FileError(str(path_.string(), ": ", what, " length ", length, " at byte ", at_ - 4,
                          "; not a legacy .dat importance matrix"));
    }
    std::string out(static_cast<size_t>(length), '\0');
    take(out.data(), out.size(), what);
    return out;
  }

 private:
  fs::path path_;
  std::string bytes_;
  size_t at_ = 0;
};

Imatrix read_legacy(const fs::path& path) {
  LegacyReader in(path);
  Imatrix out;
  out.legacy = true;
  const int32_t n_entries = in.i32("the entry count");
  if (n_entries < 1) {
    throw FileError(str(path.string(), ": entry count ", n_entries,
                        "; neither a GGUF nor a legacy .dat importance matrix"));
  }
  for (int32_t e = 0; e < n_entries; ++e) {
    const std::string what = str("entry ", e + 1, " of ", n_entries);
    std::string name = in.text(in.i32(what + "'s name length"), what + "'s name");
    const int32_t ncall = in.i32(what + "'s call count");
    const int32_t nval = in.i32(what + "'s value count");
    if (nval < 1 || nval > (1 << 28) || ncall < 0) {
      throw FileError(str(path.string(), ": ", what, " ('", name, "') has ", nval, " values and ",
                          ncall, " calls; the file is corrupt"));
    }
    ImatrixEntry entry;
    entry.sums.resize(static_cast<size_t>(nval));
    in.take(entry.sums.data(), entry.sums.size() * sizeof(float), what + "'s values");
    entry.counts = {static_cast<float>(ncall)};
    check_values(entry.sums, path, str("'", name, "'"));
    if (!out.entries.emplace(std::move(name), std::move(entry)).second) {
      throw FileError(str(path.string(), ": ", what, " repeats a tensor name"));
    }
  }
  if (!in.at_end()) {  // the optional trailer
    out.chunk_count = static_cast<uint32_t>(in.i32("the chunk count"));
    if (!in.at_end()) {
      const int32_t length = in.i32("the dataset name's length");
      if (length > 0) out.datasets.push_back(in.text(length, "the dataset name"));
    }
  }
  return out;
}

void append(std::string& out, const void* data, size_t n) {
  out.append(static_cast<const char*>(data), n);
}
void append_i32(std::string& out, int32_t value) {
  append(out, &value, sizeof value);
}

std::vector<uint8_t> f32_bytes(const std::vector<float>& values) {
  std::vector<uint8_t> bytes(values.size() * sizeof(float));
  if (!bytes.empty()) std::memcpy(bytes.data(), values.data(), bytes.size());
  return bytes;
}

}  // namespace

std::vector<float> Imatrix::importance(const std::string& name) const {
  const auto it = entries.find(name);
  if (it == entries.end()) return {};
  const ImatrixEntry& e = it->second;
  std::vector<float> out(e.sums.size());
  const size_t cols = e.sums.size() / e.counts.size();
  for (size_t i = 0; i < out.size(); ++i) {
    const float count = e.counts[i / cols];
    out[i] = count > 0 ? e.sums[i] / count : 1.0f;
  }
  return out;
}

Imatrix read_imatrix(const fs::path& path) {
  if (!fs::is_regular_file(path)) {
    throw FileError(str(path.string(),
                        ": no such importance matrix file (write one with "
                        "`edgedistill imatrix` or llama-imatrix)"));
  }
  return io::is_gguf_file(path) ? read_gguf(path) : read_legacy(path);
}

void write_imatrix(const Imatrix& imatrix, const fs::path& path, ImatrixFormat format) {
  ED_CHECK(!imatrix.entries.empty(), "write_imatrix: no entries");
  if (format == ImatrixFormat::gguf) {
    io::GgufWriter writer;
    writer.set("general.type", io::GgufValue::string("imatrix"));
    writer.set("imatrix.datasets", io::GgufValue::strings(imatrix.datasets));
    writer.set("imatrix.chunk_count", io::GgufValue::u32(imatrix.chunk_count));
    writer.set("imatrix.chunk_size", io::GgufValue::u32(imatrix.chunk_size));
    for (const auto& [name, e] : imatrix.entries) {
      const auto n_mat = static_cast<uint64_t>(e.counts.size());
      writer.add_tensor(name + kSumsSuffix, io::GgmlType::f32, {e.sums.size() / n_mat, n_mat},
                        f32_bytes(e.sums));
      writer.add_tensor(name + kCountsSuffix, io::GgmlType::f32, {1, n_mat}, f32_bytes(e.counts));
    }
    writer.write(path);
    return;
  }
  std::string out;
  append_i32(out, static_cast<int32_t>(imatrix.entries.size()));
  const float chunk = imatrix.chunk_size > 0 ? static_cast<float>(imatrix.chunk_size) : 1.0f;
  for (const auto& [name, e] : imatrix.entries) {
    append_i32(out, static_cast<int32_t>(name.size()));
    out += name;
    const float max_count = *std::max_element(e.counts.begin(), e.counts.end());
    // A legacy entry's count is already its ncall; a raw one is tokens, ncall = ceil(tokens/chunk).
    const auto ncall =
        static_cast<int32_t>(imatrix.legacy ? max_count : std::ceil(max_count / chunk));
    append_i32(out, ncall);
    append_i32(out, static_cast<int32_t>(e.sums.size()));
    const std::vector<float> mean = imatrix.importance(name);
    for (float m : mean) {
      const float value = m * static_cast<float>(ncall);
      append(out, &value, sizeof value);
    }
  }
  append_i32(out, static_cast<int32_t>(imatrix.chunk_count));
  const std::string dataset = imatrix.datasets.empty() ? "" : imatrix.datasets.back();
  append_i32(out, static_cast<int32_t>(dataset.size()));
  out += dataset;
  core::write_file_atomic(path, out);
}

void check_imatrix_fits(const Imatrix& imatrix, model::LlamaModelImpl& model,
                        const fs::path& path) {
  // Every matrix's input width from the parameters themselves (pruning may narrow layers).
  std::map<std::string, int64_t> cols;
  for (const auto& item : model.named_parameters()) {
    if (item.value().dim() == 2) cols[item.key()] = item.value().size(1);
  }
  const bool tied = !model.output;
  int matched = 0;
  for (const auto& [name, entry] : imatrix.entries) {
    const auto it = cols.find(name);
    if (it == cols.end() || (name == "token_embd.weight" && !tied)) {
      throw InputError(str(path.string(), ": entry '", name,
                           "' is not a matrix this model multiplies by; was the importance matrix "
                           "made for another model?"));
    }
    if (entry.counts.size() != 1) {
      throw InputError(str(path.string(), ": entry '", name, "' is for ", entry.counts.size(),
                           " experts; this model has none"));
    }
    if (static_cast<int64_t>(entry.sums.size()) != it->second) {
      throw InputError(str(path.string(), ": entry '", name, "' has ", entry.sums.size(),
                           " columns; the model's matrix has ", it->second,
                           " (an importance matrix of another model?)"));
    }
    ++matched;
  }
  if (matched == 0) throw InputError(str(path.string(), ": no entry names a matrix of the model"));
}

Imatrix collect_imatrix(model::LlamaModelImpl& model, const torch::Tensor& windows,
                        int64_t chunk_windows, const std::vector<std::string>& datasets) {
  ED_CHECK(windows.defined() && windows.dim() == 2 && windows.numel() > 0,
           "collect_imatrix needs calibration windows");
  // The quantization pass with every matrix left in float walks the model in its computing order
  // and hands each matrix's input Hessian to `observe`; its diagonal is the sum of x_j^2.
  QuantizeOptions options;
  options.method = QuantMethod::rtn;
  options.chunk_windows = chunk_windows;
  for (const auto& name : llama_matrix_names(model.config())) {
    options.tensor_types[name] = io::GgmlType::f32;
  }
  Imatrix out;
  out.datasets = datasets;
  out.chunk_count = static_cast<uint32_t>(windows.size(0));
  out.chunk_size = static_cast<uint32_t>(windows.size(1));
  const auto tokens = static_cast<float>(windows.numel());
  options.observe = [&](const std::string& name, const torch::Tensor& hessian) {
    const auto diagonal = hessian.diagonal().to(torch::kFloat32).contiguous();
    ImatrixEntry entry;
    entry.sums.assign(diagonal.data_ptr<float>(), diagonal.data_ptr<float>() + diagonal.numel());
    entry.counts = {tokens};
    out.entries[name] = std::move(entry);
  };
  quantize_llama(model, windows, options);
  return out;
}

}  // namespace edgedistill::quant
