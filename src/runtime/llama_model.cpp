#include "runtime/llama_model.h"

#include <cstring>
#include <map>

#include "core/error.h"
#include "io/gguf_quants.h"

namespace edgedistill::runtime {
namespace {

int64_t positive_u32(const io::GgufReader& file, const std::string& key) {
  const uint32_t value = file.get_u32(key);
  if (value == 0) {
    throw FileError(
        str(file.path().string(), ": key '", key, "' is 0; a llama model needs a positive value"));
  }
  return value;
}

}  // namespace

LlamaModel::LlamaModel(const fs::path& path) : file_(path) {
  const std::string& arch = file_.get_string("general.architecture");
  if (arch != "llama") {
    throw FileError(str(path.string(), ": general.architecture is '", arch,
                        "'; the runtime runs 'llama' models only"));
  }
  vocab_ = std::make_unique<tok::Vocab>(tok::Vocab::from_gguf(file_));
  LlamaHParams& h = hparams_;
  h.vocab_size = vocab_->size();
  h.dim = positive_u32(file_, "llama.embedding_length");
  h.n_layers = positive_u32(file_, "llama.block_count");
  h.ffn_dim = positive_u32(file_, "llama.feed_forward_length");
  h.n_heads = positive_u32(file_, "llama.attention.head_count");
  h.context_length = positive_u32(file_, "llama.context_length");
  h.n_kv_heads = file_.find("llama.attention.head_count_kv")
                     ? positive_u32(file_, "llama.attention.head_count_kv")
                     : h.n_heads;
  h.norm_eps = file_.get_f32("llama.attention.layer_norm_rms_epsilon");
  if (file_.find("llama.rope.freq_base")) h.rope_theta = file_.get_f32("llama.rope.freq_base");
  // A head's width: llama.attention.key_length when present (pruned heads keep theirs), else
  // embedding_length / head_count.
  const bool explicit_head = file_.find("llama.attention.key_length") != nullptr;
  if ((!explicit_head && h.dim % h.n_heads != 0) || h.n_heads % h.n_kv_heads != 0) {
    throw FileError(str(path.string(), ": head counts do not fit: embedding_length ", h.dim,
                        ", head_count ", h.n_heads, ", head_count_kv ", h.n_kv_heads,
                        " (head_count must divide embedding_length, head_count_kv head_count)"));
  }
  h.head_dim =
      explicit_head ? positive_u32(file_, "llama.attention.key_length") : h.dim / h.n_heads;
  if (file_.find("llama.attention.value_length") &&
      file_.get_u32("llama.attention.value_length") != h.head_dim) {
    throw FileError(str(path.string(), ": llama.attention.value_length ",
                        file_.get_u32("llama.attention.value_length"), " differs from key_length ",
                        h.head_dim, " (not supported)"));
  }
  if (h.head_dim % 2 != 0) {
    throw FileError(
        str(path.string(), ": head dimension ", h.head_dim, " is odd; RoPE needs pairs"));
  }
  if (file_.find("llama.rope.dimension_count") &&
      file_.get_u32("llama.rope.dimension_count") != h.head_dim) {
    throw FileError(str(path.string(), ": llama.rope.dimension_count is ",
                        file_.get_u32("llama.rope.dimension_count"),
                        ", expected the head dimension ", h.head_dim,
                        " (partial RoPE is not supported)"));
  }
  if (file_.find("llama.vocab_size") && file_.get_u32("llama.vocab_size") != h.vocab_size) {
    throw FileError(str(path.string(), ": llama.vocab_size is ", file_.get_u32("llama.vocab_size"),
                        " but tokenizer.ggml.tokens has ", h.vocab_size, " entries"));
  }

  // RoPE scaling: linear interpolation (a divisor for every frequency) and per-frequency divisors
  // (rope_freqs.weight, as llama.cpp's converter writes Llama 3.1's rule).
  float linear_factor = 1.0f;
  if (file_.find("llama.rope.scaling.type")) {
    const std::string& type = file_.get_string("llama.rope.scaling.type");
    if (type == "linear") {
      linear_factor = file_.get_f32("llama.rope.scaling.factor");
      if (!(linear_factor > 0)) {
        throw FileError(str(path.string(), ": llama.rope.scaling.factor is ", linear_factor,
                            "; it must be positive"));
      }
    } else if (type != "none") {
      throw FileError(str(path.string(), ": llama.rope.scaling.type '", type,
                          "' is not supported (none and linear are; llama3-style scaling comes "
                          "as rope_freqs.weight)"));
    }
  }
  h.rope_divisors.assign(static_cast<size_t>(h.head_dim / 2), linear_factor);
  size_t extra_tensors = 0;
  if (file_.find_tensor("rope_freqs.weight") != nullptr) {
    const std::vector<float> divisors = vector("rope_freqs.weight", h.head_dim / 2);
    for (size_t i = 0; i < divisors.size(); ++i) {
      if (!(divisors[i] > 0)) {
        throw FileError(str(path.string(), ": rope_freqs.weight[", i, "] is ", divisors[i],
                            "; RoPE frequency divisors must be positive"));
      }
      h.rope_divisors[i] *= divisors[i];
    }
    ++extra_tensors;
  }

  const int64_t q = h.n_heads * h.head_dim, kv = h.n_kv_heads * h.head_dim;
  token_embd_ = matrix("token_embd.weight", h.vocab_size, h.dim);
  output_norm_ = norm("output_norm.weight");
  h.tied_embeddings = file_.find_tensor("output.weight") == nullptr;
  output_ = h.tied_embeddings ? token_embd_ : matrix("output.weight", h.vocab_size, h.dim);
  for (int64_t i = 0; i < h.n_layers; ++i) {
    const std::string blk = str("blk.", i, ".");
    LlamaLayerWeights layer;
    layer.attn_norm = norm(blk + "attn_norm.weight");
    layer.attn_q = matrix(blk + "attn_q.weight", q, h.dim);
    layer.attn_k = matrix(blk + "attn_k.weight", kv, h.dim);
    layer.attn_v = matrix(blk + "attn_v.weight", kv, h.dim);
    // q/k/v biases come together or not at all (Qwen2's layout).
    if (file_.find_tensor(blk + "attn_q.bias") != nullptr) {
      layer.q_bias = vector(blk + "attn_q.bias", q);
      layer.k_bias = vector(blk + "attn_k.bias", kv);
      layer.v_bias = vector(blk + "attn_v.bias", kv);
      extra_tensors += 3;
    }
    layer.attn_output = matrix(blk + "attn_output.weight", h.dim, q);
    layer.ffn_norm = norm(blk + "ffn_norm.weight");
    layer.ffn_gate = matrix(blk + "ffn_gate.weight", h.ffn_dim, h.dim);
    layer.ffn_up = matrix(blk + "ffn_up.weight", h.ffn_dim, h.dim);
    layer.ffn_down = matrix(blk + "ffn_down.weight", h.dim, h.ffn_dim);
    layers_.push_back(std::move(layer));
  }
  // llama.cpp refuses tensors it does not expect; so do we, so that a file we accept loads there.
  const size_t expected =
      2 + (h.tied_embeddings ? 0 : 1) + 9 * static_cast<size_t>(h.n_layers) + extra_tensors;
  if (file_.tensors().size() != expected) {
    throw FileError(str(path.string(), ": ", file_.tensors().size(), " tensors, expected ",
                        expected, " for a ", h.n_layers,
                        "-layer llama model; the file has tensors llama.cpp would refuse"));
  }
}

WeightMatrix LlamaModel::matrix(const std::string& name, int64_t rows, int64_t cols) const {
  const io::GgufTensor& tensor =
      file_.require_tensor(name, {static_cast<uint64_t>(cols), static_cast<uint64_t>(rows)});
  WeightMatrix w;
  w.type = tensor.type;
  w.rows = rows;
  w.cols = cols;
  w.data = tensor.data;
  return w;
}

std::vector<float> LlamaModel::vector(const std::string& name, int64_t length) const {
  const io::GgufTensor& tensor = file_.require_tensor(name, {static_cast<uint64_t>(length)});
  if (tensor.type != io::GgmlType::f32) {
    throw FileError(str(file_.path().string(), ": tensor '", name, "' is ",
                        io::ggml_type_traits(tensor.type).name,
                        "; norm weights, biases and rope_freqs must be f32 (re-export with "
                        "`edgedistill export`)"));
  }
  std::vector<float> values(static_cast<size_t>(length));
  std::memcpy(values.data(), tensor.data, values.size() * sizeof(float));
  return values;
}

void LlamaModel::embed(int32_t token, float* out) const {
  ED_CHECK(token >= 0 && token < hparams_.vocab_size, "token ", token);
  const uint64_t row_bytes = io::ggml_row_bytes(token_embd_.type, hparams_.dim);
  io::dequantize_rows(token_embd_.type, token_embd_.data + row_bytes * token, 1, hparams_.dim, out);
}

uint64_t LlamaModel::weight_bytes() const {
  uint64_t bytes = 0;
  for (const auto& tensor : file_.tensors()) bytes += tensor.nbytes;
  return bytes;
}

std::string LlamaModel::dominant_type() const {
  std::map<std::string, uint64_t> elements;
  for (const auto& tensor : file_.tensors()) {
    elements[std::string(io::ggml_type_traits(tensor.type).name)] += tensor.elements();
  }
  std::string best;
  uint64_t most = 0;
  for (const auto& [name, count] : elements) {
    if (count > most) best = name, most = count;
  }
  return best;
}

}  // namespace edgedistill::runtime
