#include "convert/import_model.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <set>

#include "convert/hf_config.h"
#include "convert/rope_rows.h"
#include "core/error.h"
#include "core/files.h"
#include "core/log.h"
#include "core/sha256.h"
#include "data/tokenizer.h"
#include "io/gguf.h"
#include "io/gguf_quants.h"
#include "io/hf_weights.h"
#include "model/model_meta.h"
#include "runtime/llama_model.h"

namespace edgedistill::convert {
namespace {

// Bumped whenever an import of the same source would give other files, so cached imports made by
// an older edgedistill are made again.
constexpr int kImportVersion = 1;

std::string shape_text(const std::vector<int64_t>& shape) {
  return nlohmann::json(shape).dump();
}

// The tokenizer a source carries; its vocabulary must fit the model's embedding rows (Qwen2.5's
// are padded beyond the tokenizer, so fewer is allowed).
std::unique_ptr<data::Tokenizer> source_tokenizer(const fs::path& source, int vocab_size) {
  auto tokenizer = data::open_tokenizer(source);
  if (tokenizer->vocab_size() > vocab_size) {
    throw FileError(str(source.string(), ": the tokenizer has ", tokenizer->vocab_size(),
                        " tokens but the model's vocab_size is ", vocab_size,
                        "; the tokenizer belongs to another model"));
  }
  return tokenizer;
}

struct Staged {
  model::LlamaConfig config;
  io::SafetensorsWriter weights;
  std::unique_ptr<data::Tokenizer> tokenizer;
  nlohmann::ordered_json provenance;
  ImportSummary summary;
};

// Hugging Face names -> GGUF names (our parameter names), q/k rows reordered (rope_rows.h).
Staged stage_hf(const fs::path& dir) {
  Staged staged;
  const HfModelConfig hf = read_hf_config(dir / kHfConfigFile);
  const model::LlamaConfig& c = hf.llama;
  staged.config = c;
  const io::HfWeights weights(dir);
  staged.tokenizer = source_tokenizer(dir, c.vocab_size);

  std::set<std::string> used;
  std::set<std::string> dtypes;
  const int64_t head_dim = c.head_dim(), q_rows = c.n_heads * head_dim,
                kv_rows = c.n_kv_heads * head_dim;
  const std::vector<int64_t> q_order = interleaved_rows_from_hf(c.n_heads, head_dim);
  const std::vector<int64_t> kv_order = interleaved_rows_from_hf(c.n_kv_heads, head_dim);
  auto take = [&](const std::string& hf_name, const std::string& name, std::vector<int64_t> shape,
                  const std::vector<int64_t>* row_order) {
    const io::TensorView& view = weights.at(hf_name);
    const fs::path& file = weights.file_of(hf_name);
    if (view.dtype != io::Dtype::F32 && view.dtype != io::Dtype::F16 &&
        view.dtype != io::Dtype::BF16) {
      throw FileError(str(file.string(), ": tensor '", hf_name, "' has dtype ",
                          io::dtype_name(view.dtype),
                          "; edgedistill imports F32, F16 and BF16 weights (dequantize first)"));
    }
    if (view.shape != shape) {
      throw FileError(str(file.string(), ": tensor '", hf_name, "' has shape ",
                          shape_text(view.shape), " but config.json implies ", shape_text(shape)));
    }
    dtypes.insert(std::string(io::dtype_name(view.dtype)));
    used.insert(hf_name);
    staged.summary.parameters += view.numel();
    ++staged.summary.tensors;
    if (row_order == nullptr) {
      staged.weights.add(name, view.dtype, std::move(shape), view.data, view.nbytes);
      return;
    }
    const size_t row_bytes = view.nbytes / static_cast<size_t>(shape[0]);
    const std::vector<uint8_t> rows = gather_rows(view.data, *row_order, row_bytes);
    staged.weights.add(name, view.dtype, std::move(shape), rows.data(), rows.size());
  };

  take("model.embed_tokens.weight", "token_embd.weight", {c.vocab_size, c.dim}, nullptr);
  for (int i = 0; i < c.n_layers; ++i) {
    const std::string hf = str("model.layers.", i, "."), blk = str("blk.", i, ".");
    take(hf + "input_layernorm.weight", blk + "attn_norm.weight", {c.dim}, nullptr);
    take(hf + "self_attn.q_proj.weight", blk + "attn_q.weight", {q_rows, c.dim}, &q_order);
    if (c.qkv_bias) take(hf + "self_attn.q_proj.bias", blk + "attn_q.bias", {q_rows}, &q_order);
    take(hf + "self_attn.k_proj.weight", blk + "attn_k.weight", {kv_rows, c.dim}, &kv_order);
    if (c.qkv_bias) take(hf + "self_attn.k_proj.bias", blk + "attn_k.bias", {kv_rows}, &kv_order);
    take(hf + "self_attn.v_proj.weight", blk + "attn_v.weight", {kv_rows, c.dim}, nullptr);
    if (c.qkv_bias) take(hf + "self_attn.v_proj.bias", blk + "attn_v.bias", {kv_rows}, nullptr);
    take(hf + "self_attn.o_proj.weight", blk + "attn_output.weight", {c.dim, q_rows}, nullptr);
    take(hf + "post_attention_layernorm.weight", blk + "ffn_norm.weight", {c.dim}, nullptr);
    take(hf + "mlp.gate_proj.weight", blk + "ffn_gate.weight", {c.ffn_dim, c.dim}, nullptr);
    take(hf + "mlp.up_proj.weight", blk + "ffn_up.weight", {c.ffn_dim, c.dim}, nullptr);
    take(hf + "mlp.down_proj.weight", blk + "ffn_down.weight", {c.dim, c.ffn_dim}, nullptr);
  }
  take("model.norm.weight", "output_norm.weight", {c.dim}, nullptr);
  if (!c.tie_embeddings) {
    take("lm_head.weight", "output.weight", {c.vocab_size, c.dim}, nullptr);
  } else if (weights.find("lm_head.weight") != nullptr) {
    used.insert("lm_head.weight");  // a tied head saved anyway: transformers ignores it too
  }
  // Anything else is a tensor this architecture does not have: refuse rather than drop it
  // (RoPE's inv_freq buffers, which older checkpoints save, are recomputed from config.json).
  for (const std::string& name : weights.names()) {
    if (used.count(name) != 0) continue;
    if (name.find("rotary_emb.inv_freq") != std::string::npos) continue;
    throw FileError(str(weights.file_of(name).string(), ": tensor '", name, "' is not part of a ",
                        hf.architecture, " with this config.json (", c.n_layers,
                        " layers); the folder holds another architecture or extra weights"));
  }
  std::string dtype_list;
  for (const std::string& d : dtypes) dtype_list += (dtype_list.empty() ? "" : ", ") + d;
  staged.summary.source_kind = "hf";
  staged.summary.architecture = hf.architecture;
  staged.summary.dtypes = dtype_list;
  nlohmann::ordered_json files = nlohmann::ordered_json::array();
  for (const fs::path& file : weights.files()) files.push_back(file.filename().string());
  staged.provenance = {{"kind", "hf"},
                       {"architecture", hf.architecture},
                       {"torch_dtype", hf.torch_dtype},
                       {"bos_token_id", hf.bos_token_id},
                       {"eos_token_id", hf.eos_token_id},
                       {"weight_files", files}};
  return staged;
}

// RoPE scaling from a GGUF file's divisors: none, one factor (linear) or the list itself.
model::RopeScaling rope_scaling_from_divisors(const std::vector<float>& divisors) {
  model::RopeScaling scaling;
  const bool all_equal =
      std::all_of(divisors.begin(), divisors.end(), [&](float d) { return d == divisors.front(); });
  if (divisors.empty() || (all_equal && divisors.front() == 1.0f)) return scaling;
  if (all_equal) {
    scaling.type = "linear";
    scaling.factor = divisors.front();
    return scaling;
  }
  scaling.type = "divisors";
  scaling.divisors.assign(divisors.begin(), divisors.end());
  return scaling;
}

// A llama GGUF file: the runtime's reader checks the keys and tensors; every tensor (but the RoPE
// divisors, which go to the config) is dequantized to f32 under its own (= our parameter) name.
Staged stage_gguf(const fs::path& file) {
  Staged staged;
  {
    // Other architectures (qwen2, with its rotate_half RoPE and its own keys) are refused here,
    // naming the way that works, before the runtime's reader says it runs llama files only.
    const io::GgufReader reader(file);
    const std::string& arch = reader.get_string("general.architecture");
    if (arch != "llama") {
      throw FileError(str(file.string(), ": general.architecture is '", arch,
                          "'; edgedistill imports GGUF files of the llama architecture (Llama, "
                          "Mistral, SmolLM); import the model's Hugging Face folder instead"));
    }
  }
  const runtime::LlamaModel gguf(file);
  const runtime::LlamaHParams& h = gguf.hparams();
  model::LlamaConfig& c = staged.config;
  c.vocab_size = static_cast<int>(h.vocab_size);
  c.dim = static_cast<int>(h.dim);
  c.n_layers = static_cast<int>(h.n_layers);
  c.n_heads = static_cast<int>(h.n_heads);
  c.n_kv_heads = static_cast<int>(h.n_kv_heads);
  c.ffn_dim = static_cast<int>(h.ffn_dim);
  c.max_seq_len = static_cast<int>(h.context_length);
  c.rope_theta = h.rope_theta;
  c.norm_eps = h.norm_eps;
  c.tie_embeddings = h.tied_embeddings;
  if (h.head_dim * h.n_heads != h.dim) c.attention_head_dim = static_cast<int>(h.head_dim);
  c.qkv_bias = !gguf.layers().empty() && !gguf.layers().front().q_bias.empty();
  c.rope_scaling = rope_scaling_from_divisors(h.rope_divisors);
  try {
    c.validate("");
  } catch (const ConfigError& e) {
    throw FileError(str(file.string(), ": ", e.what()));
  }
  staged.tokenizer = source_tokenizer(file, c.vocab_size);

  std::set<std::string> types;
  for (const io::GgufTensor& tensor : gguf.file().tensors()) {
    if (tensor.name == "rope_freqs.weight") continue;
    const std::vector<int64_t> shape(tensor.dims.rbegin(), tensor.dims.rend());  // PyTorch order
    const int64_t cols = static_cast<int64_t>(tensor.dims.at(0));
    const int64_t rows = static_cast<int64_t>(tensor.rows());
    std::vector<float> values(static_cast<size_t>(rows * cols));
    io::dequantize_rows(tensor.type, tensor.data, rows, cols, values.data());
    types.insert(std::string(io::ggml_type_traits(tensor.type).name));
    staged.weights.add(tensor.name, io::Dtype::F32, shape, values.data(),
                       values.size() * sizeof(float));
    staged.summary.parameters += rows * cols;
    ++staged.summary.tensors;
  }
  std::string type_list;
  for (const std::string& t : types) type_list += (type_list.empty() ? "" : ", ") + t;
  staged.summary.source_kind = "gguf";
  staged.summary.architecture = str("llama (GGUF, ", gguf.dominant_type(), ")");
  staged.summary.dtypes = type_list;
  staged.provenance = {{"kind", "gguf"}, {"tensor_types", type_list}};
  return staged;
}

std::string file_stamp(const fs::path& file) {
  std::error_code ec;
  const auto size = fs::file_size(file, ec);
  const auto time = fs::last_write_time(file, ec).time_since_epoch().count();
  return str(file.filename().string(), " ", size, " ", time, "\n");
}

// What identifies a source's contents cheaply: file names, sizes, modification times (weights
// are hundreds of MB, hashing them on every command would cost seconds) and config.json itself.
std::string source_key(const fs::path& source, ModelSourceKind kind) {
  std::string text = str("edgedistill-import ", kImportVersion, "\n");
  if (kind == ModelSourceKind::gguf_file) {
    text += file_stamp(source);
  } else {
    std::vector<fs::path> files;
    for (const auto& entry : fs::directory_iterator(source)) {
      if (entry.is_regular_file()) files.push_back(entry.path());
    }
    std::sort(files.begin(), files.end());
    for (const fs::path& file : files) text += file_stamp(file);
    text += core::read_file(source / kHfConfigFile, "model config");
  }
  return core::sha256_hex(text).substr(0, 16);
}

}  // namespace

ModelSourceKind model_source_kind(const fs::path& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    if (fs::is_regular_file(path / model::kModelFileName, ec) ||
        fs::is_regular_file(path / "final" / model::kModelFileName, ec)) {
      return ModelSourceKind::checkpoint;
    }
    if (fs::is_regular_file(path / kHfConfigFile, ec) && io::has_hf_weights(path)) {
      return ModelSourceKind::hf_folder;
    }
    return ModelSourceKind::unknown;
  }
  return io::is_gguf_file(path) ? ModelSourceKind::gguf_file : ModelSourceKind::unknown;
}

const char* model_source_name(ModelSourceKind kind) {
  switch (kind) {
    case ModelSourceKind::checkpoint:
      return "checkpoint";
    case ModelSourceKind::hf_folder:
      return "Hugging Face folder";
    case ModelSourceKind::gguf_file:
      return "GGUF file";
    case ModelSourceKind::unknown:
      break;
  }
  return "unknown";
}

ImportSummary import_model(const fs::path& source, const fs::path& out, bool overwrite) {
  const auto start = std::chrono::steady_clock::now();
  const ModelSourceKind kind = model_source_kind(source);
  if (kind != ModelSourceKind::hf_folder && kind != ModelSourceKind::gguf_file) {
    std::error_code ec;
    throw InputError(
        str("'", source.string(), "' ",
            kind == ModelSourceKind::checkpoint ? "is already an edgedistill checkpoint"
            : fs::exists(source, ec)
                ? "is neither a Hugging Face model folder (config.json + model.safetensors or "
                  "model.safetensors.index.json) nor a GGUF file"
                : "does not exist",
            "; give a Hugging Face folder or a GGUF file"));
  }
  std::error_code ec;
  if (fs::exists(out, ec) && !overwrite) {
    throw InputError(
        str("'", out.string(), "' exists; choose another --out or pass --force to replace it"));
  }
  Staged staged = kind == ModelSourceKind::hf_folder ? stage_hf(source) : stage_gguf(source);

  core::write_directory_atomic(out, [&](const fs::path& staging) {
    model::CheckpointMeta meta;
    meta.config.arch = "llama";
    meta.config.llama = staged.config;
    meta.tokenizer_hash = staged.tokenizer->hash();
    staged.weights.set_metadata("source", fs::absolute(source).string());
    staged.weights.write(staging / model::kWeightsFileName);
    data::save_tokenizer(*staged.tokenizer, staging / "tokenizer");
    core::write_json_atomic(staging / model::kModelFileName,
                            model::model_json(meta, staged.summary.parameters));
    nlohmann::ordered_json provenance = {{"format", "edgedistill-import"},
                                         {"version", kImportVersion},
                                         {"source", fs::absolute(source).string()}};
    for (const auto& item : staged.provenance.items()) provenance[item.key()] = item.value();
    core::write_json_atomic(staging / kImportFileName, provenance);
  });
  staged.summary.tokenizer = staged.tokenizer->description();
  staged.summary.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return staged.summary;
}

fs::path resolve_model_dir(const fs::path& path, const std::string& what,
                           const fs::path& cache_root) {
  std::error_code ec;
  const ModelSourceKind kind = model_source_kind(path);
  switch (kind) {
    case ModelSourceKind::checkpoint:
      return fs::is_regular_file(path / model::kModelFileName, ec) ? path : path / "final";
    case ModelSourceKind::hf_folder:
    case ModelSourceKind::gguf_file: {
      const std::string name = kind == ModelSourceKind::gguf_file
                                   ? path.stem().string()
                                   : fs::absolute(path).lexically_normal().filename().string();
      const fs::path dir =
          cache_root / "models" / str(name.empty() ? "model" : name, "-", source_key(path, kind));
      if (fs::is_regular_file(dir / model::kModelFileName, ec)) return dir;
      core::info("importing ", what, " '", path.string(), "' (", model_source_name(kind), ") into ",
                 dir.string());
      const ImportSummary summary = import_model(path, dir, true);
      core::info("imported ", summary.architecture, ", ", summary.parameters, " parameters (",
                 summary.dtypes, ") in ", summary.seconds, " s");
      return dir;
    }
    case ModelSourceKind::unknown:
      break;
  }
  if (!fs::exists(path, ec)) {
    throw InputError(str(what, " '", path.string(),
                         "' does not exist; give a checkpoint directory, a finished run "
                         "directory, a Hugging Face model folder or a GGUF file"));
  }
  throw InputError(str(what, " '", path.string(), "' is not a model: expected ",
                       model::kModelFileName, " or final/", model::kModelFileName,
                       " (a checkpoint or run), config.json with model.safetensors (a Hugging "
                       "Face folder), or a GGUF file"));
}

}  // namespace edgedistill::convert
