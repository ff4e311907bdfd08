#include "quantize/gguf_export.h"

#include <cstring>

#include "core/error.h"
#include "core/log.h"
#include "core/sha256.h"
#include "core/version.h"
#include "data/tokenizer.h"
#include "io/gguf_quants.h"
#include "io/half.h"
#include "io/safetensors.h"
#include "tokenizer/token_type.h"

namespace edgedistill::quant {
namespace {

using io::GgmlType;
using io::GgufValue;

// Norm weights and biases: vectors, kept in f32 as llama.cpp's converter keeps them.
bool is_vector(const std::string& name) {
  return name.find("_norm.weight") != std::string::npos ||
         (name.size() > 5 && name.compare(name.size() - 5, 5, ".bias") == 0);
}
bool is_embedding_or_head(const std::string& name) {
  return name == "token_embd.weight" || name == "output.weight";
}

// A llama checkpoint's tensors in the order they are written, with PyTorch shapes.
struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;  // [out, in] or [n]
};

std::vector<TensorSpec> llama_tensor_specs(const model::LlamaConfig& c) {
  const int64_t e = c.dim, v = c.vocab_size, f = c.ffn_dim;
  const int64_t q = static_cast<int64_t>(c.n_heads) * c.head_dim();
  const int64_t kv = static_cast<int64_t>(c.n_kv_heads) * c.head_dim();
  std::vector<TensorSpec> specs = {{"token_embd.weight", {v, e}}, {"output_norm.weight", {e}}};
  if (!c.tie_embeddings) specs.push_back({"output.weight", {v, e}});
  for (int layer = 0; layer < c.n_layers; ++layer) {
    const std::string blk = str("blk.", layer, ".");
    for (const TensorSpec& spec : std::initializer_list<TensorSpec>{
             {"attn_norm.weight", {e}},
             {"attn_q.weight", {q, e}},
             {"attn_k.weight", {kv, e}},
             {"attn_v.weight", {kv, e}},
             {"attn_q.bias", {c.qkv_bias ? q : 0}},
             {"attn_k.bias", {c.qkv_bias ? kv : 0}},
             {"attn_v.bias", {c.qkv_bias ? kv : 0}},
             {"attn_output.weight", {e, q}},
             {"ffn_norm.weight", {e}},
             {"ffn_gate.weight", {f, e}},
             {"ffn_up.weight", {f, e}},
             {"ffn_down.weight", {e, f}},
         }) {
      if (spec.shape[0] > 0) specs.push_back({blk + spec.name, spec.shape});
    }
  }
  return specs;
}

// The tensor's elements as float32 (checkpoints hold F32; F16/BF16 are widened).
std::vector<float> read_floats(const io::TensorView& view, const fs::path& file) {
  std::vector<float> values(static_cast<size_t>(view.numel()));
  switch (view.dtype) {
    case io::Dtype::F32:
      std::memcpy(values.data(), view.data, values.size() * sizeof(float));
      break;
    case io::Dtype::F16:
    case io::Dtype::BF16:
      for (size_t i = 0; i < values.size(); ++i) {
        uint16_t bits;
        std::memcpy(&bits, view.data + 2 * i, 2);
        values[i] = view.dtype == io::Dtype::F16 ? io::f16_to_float(bits) : io::bf16_to_float(bits);
      }
      break;
    default:
      throw FileError(str(file.string(), ": tensor '", view.name, "' has dtype ",
                          io::dtype_name(view.dtype),
                          ", expected F32, F16 or BF16; re-save the checkpoint with edgedistill"));
  }
  return values;
}

// tokenizer.ggml.*: the vocabulary's own GGUF form ("llama" for SentencePiece vocabularies,
// "gpt2" with its split for byte-level BPE), or for the byte tokenizer a "llama" vocabulary of its
// pieces.
void add_vocabulary(io::GgufWriter& writer, const data::Tokenizer& tokenizer) {
  if (tokenizer.kind() != "pretrained") data::check_llama_vocab(tokenizer);
  if (const tok::Vocab* vocab = tokenizer.vocab()) {
    if (vocab->algorithm() == "sentencepiece-unigram") {
      core::warn(
          "the tokenizer is a SentencePiece unigram model; GGUF 'llama' vocabularies are "
          "encoded by merging pieces by score (llama.cpp and edgedistill run), which can "
          "split some words differently from the unigram model the weights were trained "
          "with");
    }
    vocab->write_gguf(writer);
    return;
  }
  const int32_t n = tokenizer.vocab_size();
  std::vector<std::string> tokens(n);
  std::vector<float> scores(n);
  std::vector<int32_t> types(n);
  for (int32_t id = 0; id < n; ++id) {
    tokens[id] = tokenizer.piece(id);
    scores[id] = tokenizer.score(id);
    types[id] = static_cast<int32_t>(tokenizer.type(id));
  }
  writer.set("tokenizer.ggml.model", GgufValue::string("llama"));
  writer.set("tokenizer.ggml.tokens", GgufValue::strings(tokens));
  writer.set("tokenizer.ggml.scores", GgufValue::f32_array(scores));
  writer.set("tokenizer.ggml.token_type", GgufValue::i32_array(types));
  writer.set("tokenizer.ggml.bos_token_id", GgufValue::u32(tokenizer.bos_id()));
  writer.set("tokenizer.ggml.eos_token_id", GgufValue::u32(tokenizer.eos_id()));
  writer.set("tokenizer.ggml.unknown_token_id", GgufValue::u32(tokenizer.unk_id()));
  writer.set("tokenizer.ggml.add_bos_token", GgufValue::boolean(true));
  writer.set("tokenizer.ggml.add_eos_token", GgufValue::boolean(false));
}

// Models whose embedding has more rows than the tokenizer has tokens (Qwen2.5 pads its vocabulary
// to a multiple of 128): llama.cpp wants one token per row, so the vocabulary gets unused
// "[PAD<id>]" tokens up to `vocab_size`, as llama.cpp's own converter pads it.
void pad_vocabulary(io::GgufWriter& writer, int32_t vocab_size) {
  GgufValue* tokens = writer.find("tokenizer.ggml.tokens");
  GgufValue* scores = writer.find("tokenizer.ggml.scores");
  GgufValue* types = writer.find("tokenizer.ggml.token_type");
  ED_CHECK(tokens != nullptr && types != nullptr, "pad_vocabulary: no vocabulary written");
  for (auto id = static_cast<int32_t>(tokens->elements.size()); id < vocab_size; ++id) {
    tokens->elements.push_back(GgufValue::string(str("[PAD", id, "]")));
    if (scores != nullptr) scores->elements.push_back(GgufValue::f32(0.0f));
    types->elements.push_back(GgufValue::i32(static_cast<int32_t>(tok::TokenType::unused)));
  }
}

std::vector<uint8_t> round_to_nearest(const std::string&, GgmlType type, const float* data,
                                      int64_t rows, int64_t cols) {
  return io::quantize_rows(type, data, rows, cols);
}

// A run's name for its final checkpoint (runs/teacher/final -> "teacher"), else the directory's.
std::string default_model_name(const fs::path& model_dir) {
  fs::path dir = fs::absolute(model_dir).lexically_normal();
  if (dir.filename().empty()) dir = dir.parent_path();
  if (dir.filename() == "final") dir = dir.parent_path();
  return dir.filename().string();
}

}  // namespace

std::vector<std::string> llama_matrix_names(const model::LlamaConfig& config) {
  std::vector<std::string> names;
  for (const TensorSpec& spec : llama_tensor_specs(config)) {
    if (spec.shape.size() == 2) names.push_back(spec.name);
  }
  return names;
}

bool keeps_embedding_at_q8_0(GgmlType type) {
  return type == GgmlType::q4_0 || type == GgmlType::q4_1 || type == GgmlType::q4_k ||
         type == GgmlType::q5_k;
}

GgmlType k_quant_fallback(GgmlType type, int64_t row) {
  if (io::ggml_type_traits(type).block_elems != io::kSuperBlock || row % io::kSuperBlock == 0) {
    return type;
  }
  if (row % io::kQuantBlock != 0) return GgmlType::f16;
  switch (type) {
    case GgmlType::q4_k:
      return GgmlType::q5_0;
    case GgmlType::q5_k:
      return GgmlType::q5_1;
    default:
      return GgmlType::q8_0;
  }
}

GgmlType export_tensor_type(const std::string& name, int64_t row,
                            const GgufExportOptions& options) {
  if (is_vector(name)) return GgmlType::f32;
  GgmlType type = options.type;
  if (const auto it = options.tensor_types.find(name); it != options.tensor_types.end()) {
    type = it->second;
  } else if (is_embedding_or_head(name)) {
    if (options.embedding_type) {
      type = *options.embedding_type;
    } else if (keeps_embedding_at_q8_0(options.type)) {
      type = GgmlType::q8_0;
    }
  }
  return k_quant_fallback(type, row);
}

std::vector<MatrixType> export_matrix_types(const model::LlamaConfig& config,
                                            const GgufExportOptions& options) {
  std::vector<MatrixType> out;
  for (const TensorSpec& spec : llama_tensor_specs(config)) {
    if (spec.shape.size() != 2) continue;
    const int64_t row = spec.shape.back();
    // The type before the fallback: the same choice with a row that fits every block size.
    const GgmlType wanted = export_tensor_type(spec.name, io::kSuperBlock, options);
    out.push_back({spec.name, export_tensor_type(spec.name, row, options), wanted, row});
  }
  return out;
}

void check_export_widths(const model::LlamaConfig& config, const GgufExportOptions& options) {
  for (const TensorSpec& spec : llama_tensor_specs(config)) {
    const int64_t row = spec.shape.back();
    const GgmlType type = export_tensor_type(spec.name, row, options);
    const auto& traits = io::ggml_type_traits(type);
    if (row % traits.block_elems != 0) {
      throw InputError(str("cannot export tensor '", spec.name, "' as ", traits.name,
                           ": its rows have ", row, " elements and ", traits.name,
                           " packs rows in blocks of ", traits.block_elems,
                           "; choose widths (dim, ffn_dim, n_heads * head_dim) that are multiples "
                           "of ",
                           traits.block_elems, ", or export as f16/f32"));
    }
  }
}

GgufExportSummary export_llama_gguf(const fs::path& model_dir, const GgufExportOptions& options,
                                    const fs::path& out, const MatrixQuantizer& quantizer,
                                    const TensorSource& source) {
  const model::CheckpointMeta meta = model::read_model_meta(model_dir);
  if (meta.config.arch != "llama") {
    throw InputError(str(model_dir.string(), " holds a '", meta.config.arch,
                         "' model; only llama models export to GGUF"));
  }
  const model::LlamaConfig& config = meta.config.llama;
  check_export_widths(config, options);

  fs::path tokenizer_dir = options.tokenizer_dir;
  // An imported model keeps its tokenizer beside its weights.
  if (tokenizer_dir.empty() && fs::exists(model_dir / "tokenizer" / data::kTokenizerJsonName)) {
    tokenizer_dir = model_dir / "tokenizer";
  }
  if (tokenizer_dir.empty()) {
    if (meta.data_dir.empty()) {
      throw InputError(str(model_dir.string(),
                           "/model.json records no data directory; pass the tokenizer with "
                           "--tokenizer DIR (a prepared data directory's tokenizer/)"));
    }
    tokenizer_dir = meta.data_dir / "tokenizer";
  }
  if (!fs::exists(tokenizer_dir / data::kTokenizerJsonName)) {
    throw InputError(str("no tokenizer at ", tokenizer_dir.string(), " (", model_dir.string(),
                         " was trained on it); pass --tokenizer DIR or re-run `edgedistill data`"));
  }
  const auto tokenizer = data::load_tokenizer(tokenizer_dir);
  if (!meta.tokenizer_hash.empty() && tokenizer->hash() != meta.tokenizer_hash) {
    throw InputError(str("the tokenizer at ", tokenizer_dir.string(), " (hash ",
                         tokenizer->hash().substr(0, 12), ") is not the one ", model_dir.string(),
                         " was trained with (hash ", meta.tokenizer_hash.substr(0, 12),
                         "); pass the right one with --tokenizer"));
  }
  // Fewer tokens than embedding rows is a padded vocabulary (see pad_vocabulary); more is another
  // model's tokenizer.
  if (tokenizer->vocab_size() > config.vocab_size) {
    throw InputError(str("the tokenizer has ", tokenizer->vocab_size(), " tokens but the model's ",
                         "vocab_size is ", config.vocab_size));
  }

  const fs::path weights_path = model_dir / model::kWeightsFileName;
  const io::SafetensorsFile weights(weights_path);
  GgufExportSummary summary;
  summary.weights_sha256 = core::sha256_file_hex(weights_path);
  summary.file_type = options.file_type_name.empty()
                          ? std::string(io::ggml_type_traits(options.type).name)
                          : options.file_type_name;

  io::GgufWriter writer;
  const std::string name = options.name.empty() ? default_model_name(model_dir) : options.name;
  writer.set("general.architecture", GgufValue::string("llama"));
  writer.set("general.name", GgufValue::string(name));
  writer.set(
      "general.file_type",
      GgufValue::u32(options.file_type.value_or(io::ggml_type_traits(options.type).file_type)));
  // llama.* keys with the types llama.cpp checks exactly: counts UINT32, floats FLOAT32.
  writer.set("llama.context_length", GgufValue::u32(config.max_seq_len));
  writer.set("llama.embedding_length", GgufValue::u32(config.dim));
  writer.set("llama.block_count", GgufValue::u32(config.n_layers));
  writer.set("llama.feed_forward_length", GgufValue::u32(config.ffn_dim));
  writer.set("llama.attention.head_count", GgufValue::u32(config.n_heads));
  writer.set("llama.attention.head_count_kv", GgufValue::u32(config.n_kv_heads));
  writer.set("llama.attention.layer_norm_rms_epsilon",
             GgufValue::f32(static_cast<float>(config.norm_eps)));
  writer.set("llama.rope.dimension_count", GgufValue::u32(config.head_dim()));
  if (config.head_dim() * config.n_heads != config.dim) {
    // Heads narrower or wider than dim / n_heads (pruned heads): llama.cpp reads these.
    writer.set("llama.attention.key_length", GgufValue::u32(config.head_dim()));
    writer.set("llama.attention.value_length", GgufValue::u32(config.head_dim()));
  }
  writer.set("llama.rope.freq_base", GgufValue::f32(static_cast<float>(config.rope_theta)));
  // RoPE scaling as llama.cpp reads it: linear interpolation by its keys, any other rule (llama3)
  // as the per-frequency divisors of rope_freqs.weight (added with the tensors below).
  const std::string& rope_scaling = config.rope_scaling.type;
  if (rope_scaling == "linear") {
    writer.set("llama.rope.scaling.type", GgufValue::string("linear"));
    writer.set("llama.rope.scaling.factor",
               GgufValue::f32(static_cast<float>(config.rope_scaling.factor)));
  }
  writer.set("llama.vocab_size", GgufValue::u32(config.vocab_size));
  add_vocabulary(writer, *tokenizer);
  pad_vocabulary(writer, config.vocab_size);
  writer.set("edgedistill.version", GgufValue::string(kVersion));
  writer.set("edgedistill.git_revision", GgufValue::string(kGitRevision));
  writer.set("edgedistill.source_sha256", GgufValue::string(summary.weights_sha256));
  writer.set("edgedistill.tokenizer_hash", GgufValue::string(tokenizer->hash()));
  writer.set("edgedistill.source_step", GgufValue::u64(static_cast<uint64_t>(meta.step)));
  for (const auto& [key, value] : options.metadata) writer.set(key, GgufValue::string(value));

  const MatrixQuantizer& quantize = quantizer ? quantizer : MatrixQuantizer(round_to_nearest);
  bool any_quantized = false;
  for (const TensorSpec& spec : llama_tensor_specs(config)) {
    const io::TensorView& view = weights.at(spec.name);
    if (view.shape != spec.shape) {
      throw FileError(str(weights_path.string(), ": tensor '", spec.name, "' has shape ",
                          nlohmann::json(view.shape).dump(), ", model.json implies ",
                          nlohmann::json(spec.shape).dump()));
    }
    const std::vector<float> values = source ? source(spec.name) : read_floats(view, weights_path);
    ED_CHECK(values.size() == static_cast<size_t>(view.numel()), spec.name,
             ": the tensor source gave ", values.size(), " values for ", view.numel());
    const int64_t cols = spec.shape.back();
    const GgmlType type = export_tensor_type(spec.name, cols, options);
    const int64_t rows = static_cast<int64_t>(values.size()) / cols;
    std::vector<uint64_t> dims(spec.shape.rbegin(), spec.shape.rend());  // ggml order
    std::vector<uint8_t> bytes = type == GgmlType::f32 || type == GgmlType::f16
                                     ? io::quantize_rows(type, values.data(), rows, cols)
                                     : quantize(spec.name, type, values.data(), rows, cols);
    any_quantized = any_quantized || io::ggml_type_traits(type).quantized;
    summary.parameters += static_cast<int64_t>(values.size());
    writer.add_tensor(spec.name, type, std::move(dims), std::move(bytes));
    ++summary.tensors;
  }
  if (rope_scaling == "llama3" || rope_scaling == "divisors") {
    const std::vector<double> divisors = model::rope_divisors(config);
    const std::vector<float> values(divisors.begin(), divisors.end());
    writer.add_tensor(
        "rope_freqs.weight", GgmlType::f32, {values.size()},
        io::quantize_rows(GgmlType::f32, values.data(), 1, static_cast<int64_t>(values.size())));
    ++summary.tensors;
  }
  if (any_quantized) writer.set("general.quantization_version", GgufValue::u32(2));
  writer.write(out);
  summary.file_bytes = fs::file_size(out);
  return summary;
}

}  // namespace edgedistill::quant
