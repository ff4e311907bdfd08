#include "convert/hf_export.h"

#include "convert/hf_config.h"
#include "convert/import_model.h"
#include "convert/rope_rows.h"
#include "core/error.h"
#include "core/files.h"
#include "data/tokenizer.h"
#include "io/safetensors.h"
#include "model/model_meta.h"

namespace edgedistill::convert {
namespace {

std::string default_architecture(const fs::path& model_dir, const model::LlamaConfig& config) {
  std::error_code ec;
  if (fs::is_regular_file(model_dir / kImportFileName, ec)) {
    const nlohmann::json provenance =
        core::read_json_file(model_dir / kImportFileName, "import record");
    const std::string arch = provenance.value("architecture", std::string());
    if (!arch.empty()) return arch;
  }
  return config.qkv_bias ? "Qwen2ForCausalLM" : "LlamaForCausalLM";
}

// The tokenizer's own files under their Hugging Face names. Returns what was written, or "" when
// the tokenizer has no Hugging Face form (the byte tokenizer, a GGUF-only vocabulary).
std::string write_tokenizer_files(const data::Tokenizer& tokenizer, const fs::path& out) {
  const fs::path scratch = out / ".tokenizer";
  core::create_directories(scratch, "tokenizer scratch directory");
  const nlohmann::ordered_json files = tokenizer.save_model_files(scratch);
  const std::string model_file = files.value("model_file", std::string());
  const std::string config_file = files.value("config_file", std::string());
  std::string written;
  std::error_code ec;
  if (!model_file.empty() && fs::path(model_file).extension() == ".json") {
    fs::rename(scratch / model_file, out / "tokenizer.json");
    written = "tokenizer.json";
    if (!config_file.empty()) {
      fs::rename(scratch / config_file, out / "tokenizer_config.json");
      written += ", tokenizer_config.json";
    }
  } else if (!model_file.empty() && fs::path(model_file).extension() == ".model") {
    fs::rename(scratch / model_file, out / "tokenizer.model");
    // transformers' SentencePiece tokenizer for llama-style vocabularies, with its special pieces.
    nlohmann::ordered_json config = {{"tokenizer_class", "LlamaTokenizer"},
                                     {"add_bos_token", tokenizer.frames_with_bos()},
                                     {"add_eos_token", false}};
    if (tokenizer.bos_id() >= 0) config["bos_token"] = tokenizer.piece(tokenizer.bos_id());
    if (tokenizer.eos_id() >= 0) config["eos_token"] = tokenizer.piece(tokenizer.eos_id());
    if (tokenizer.unk_id() >= 0) config["unk_token"] = tokenizer.piece(tokenizer.unk_id());
    core::write_json_atomic(out / "tokenizer_config.json", config);
    written = "tokenizer.model, tokenizer_config.json";
  }
  fs::remove_all(scratch, ec);
  return written;
}

}  // namespace

HfExportSummary export_hf(const fs::path& model_dir, const fs::path& out,
                          const std::string& architecture, bool overwrite) {
  const model::CheckpointMeta meta = model::read_model_meta(model_dir);
  if (meta.config.arch != "llama") {
    throw InputError(str("'", model_dir.string(), "' is an ", meta.config.arch,
                         " model; only llama models have a Hugging Face form"));
  }
  const model::LlamaConfig& c = meta.config.llama;
  std::error_code ec;
  if (fs::exists(out, ec) && !overwrite) {
    throw InputError(str("'", out.string(), "' exists; choose another --out or pass --force"));
  }
  HfExportSummary summary;
  summary.architecture = architecture.empty() ? default_architecture(model_dir, c) : architecture;
  const auto tokenizer = data::open_tokenizer(model_dir);
  const nlohmann::ordered_json config =
      hf_config_json(c, summary.architecture, tokenizer->bos_id(), tokenizer->eos_id());

  const fs::path weights_path = model_dir / model::kWeightsFileName;
  const io::SafetensorsFile weights(weights_path);
  io::SafetensorsWriter writer;
  const int64_t head_dim = c.head_dim();
  const std::vector<int64_t> q_order = hf_rows_from_interleaved(c.n_heads, head_dim);
  const std::vector<int64_t> kv_order = hf_rows_from_interleaved(c.n_kv_heads, head_dim);
  auto put = [&](const std::string& name, const std::string& hf_name,
                 const std::vector<int64_t>* row_order) {
    const io::TensorView& view = weights.at(name);
    summary.parameters += view.numel();
    if (row_order == nullptr) {
      writer.add(hf_name, view.dtype, view.shape, view.data, view.nbytes);
      return;
    }
    const std::vector<uint8_t> rows =
        gather_rows(view.data, *row_order, view.nbytes / static_cast<size_t>(view.shape.at(0)));
    writer.add(hf_name, view.dtype, view.shape, rows.data(), rows.size());
  };
  put("token_embd.weight", "model.embed_tokens.weight", nullptr);
  for (int i = 0; i < c.n_layers; ++i) {
    const std::string blk = str("blk.", i, "."), hf = str("model.layers.", i, ".");
    put(blk + "attn_norm.weight", hf + "input_layernorm.weight", nullptr);
    put(blk + "attn_q.weight", hf + "self_attn.q_proj.weight", &q_order);
    put(blk + "attn_k.weight", hf + "self_attn.k_proj.weight", &kv_order);
    put(blk + "attn_v.weight", hf + "self_attn.v_proj.weight", nullptr);
    if (c.qkv_bias) {
      put(blk + "attn_q.bias", hf + "self_attn.q_proj.bias", &q_order);
      put(blk + "attn_k.bias", hf + "self_attn.k_proj.bias", &kv_order);
      put(blk + "attn_v.bias", hf + "self_attn.v_proj.bias", nullptr);
    }
    put(blk + "attn_output.weight", hf + "self_attn.o_proj.weight", nullptr);
    put(blk + "ffn_norm.weight", hf + "post_attention_layernorm.weight", nullptr);
    put(blk + "ffn_gate.weight", hf + "mlp.gate_proj.weight", nullptr);
    put(blk + "ffn_up.weight", hf + "mlp.up_proj.weight", nullptr);
    put(blk + "ffn_down.weight", hf + "mlp.down_proj.weight", nullptr);
  }
  put("output_norm.weight", "model.norm.weight", nullptr);
  if (!c.tie_embeddings) put("output.weight", "lm_head.weight", nullptr);
  writer.set_metadata("format", "pt");  // transformers checks for it

  core::write_directory_atomic(out, [&](const fs::path& staging) {
    writer.write(staging / "model.safetensors");
    core::write_json_atomic(staging / kHfConfigFile, config);
    summary.tokenizer_files = write_tokenizer_files(*tokenizer, staging);
    if (summary.tokenizer_files.empty()) {
      summary.warning = str("the tokenizer (", tokenizer->description(),
                            ") has no Hugging Face file form; the folder holds no tokenizer");
    }
    nlohmann::ordered_json generation = nlohmann::ordered_json::object();
    if (tokenizer->bos_id() >= 0) generation["bos_token_id"] = tokenizer->bos_id();
    if (tokenizer->eos_id() >= 0) generation["eos_token_id"] = tokenizer->eos_id();
    core::write_json_atomic(staging / "generation_config.json", generation);
  });
  return summary;
}

}  // namespace edgedistill::convert
