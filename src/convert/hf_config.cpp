#include "convert/hf_config.h"

#include <cmath>

#include "core/error.h"
#include "core/files.h"

namespace edgedistill::convert {
namespace {

struct Architecture {
  const char* name;
  const char* model_type;
  bool qkv_bias;
};

constexpr Architecture kArchitectures[] = {
    {"LlamaForCausalLM", "llama", false},
    {"MistralForCausalLM", "mistral", false},
    {"Qwen2ForCausalLM", "qwen2", true},
};

const Architecture* find_architecture(const std::string& name) {
  for (const Architecture& a : kArchitectures) {
    if (name == a.name) return &a;
  }
  return nullptr;
}

// Typed reads with one-line errors naming the file and the key.
class ConfigReader {
 public:
  ConfigReader(const nlohmann::json& json, const fs::path& file) : json_(json), file_(file) {}

  [[noreturn]] void fail(const std::string& key, const std::string& what) const {
    throw FileError(str(file_.string(), ": key '", key, "' ", what));
  }
  bool has(const std::string& key) const {
    const auto it = json_.find(key);
    return it != json_.end() && !it->is_null();
  }
  const nlohmann::json& at(const std::string& key) const { return json_.at(key); }

  int positive_int(const std::string& key) const {
    if (!has(key)) fail(key, "is missing; a llama-style config.json has it");
    const nlohmann::json& v = json_.at(key);
    if (!v.is_number_integer() || v.get<int64_t>() <= 0 || v.get<int64_t>() > (1LL << 30)) {
      fail(key, str("must be a positive integer, found ", v.dump()));
    }
    return v.get<int>();
  }
  int int_or(const std::string& key, int fallback) const {
    return has(key) ? positive_int(key) : fallback;
  }
  double number_or(const std::string& key, double fallback) const {
    if (!has(key)) return fallback;
    const nlohmann::json& v = json_.at(key);
    if (!v.is_number() || !std::isfinite(v.get<double>())) {
      fail(key, str("must be a number, found ", v.dump()));
    }
    return v.get<double>();
  }
  bool bool_or(const std::string& key, bool fallback) const {
    if (!has(key)) return fallback;
    const nlohmann::json& v = json_.at(key);
    if (!v.is_boolean()) fail(key, str("must be true or false, found ", v.dump()));
    return v.get<bool>();
  }
  std::string string_or(const std::string& key, const std::string& fallback) const {
    if (!has(key)) return fallback;
    const nlohmann::json& v = json_.at(key);
    if (!v.is_string()) fail(key, str("must be a string, found ", v.dump()));
    return v.get<std::string>();
  }
  // bos/eos ids: an integer, or a list whose first entry is taken (Llama 3 lists several eos).
  int token_id(const std::string& key) const {
    if (!has(key)) return -1;
    nlohmann::json v = json_.at(key);
    if (v.is_array() && !v.empty()) v = v.front();
    if (!v.is_number_integer() || v.get<int64_t>() < 0) {
      fail(key, str("must be a token id, found ", json_.at(key).dump()));
    }
    return v.get<int>();
  }

 private:
  const nlohmann::json& json_;
  const fs::path& file_;
};

model::RopeScaling read_rope_scaling(const ConfigReader& config) {
  model::RopeScaling scaling;
  if (!config.has("rope_scaling")) return scaling;
  const nlohmann::json& json = config.at("rope_scaling");
  if (!json.is_object()) config.fail("rope_scaling", "must be an object or null");
  // transformers spells the kind "rope_type" (newer) or "type" (older).
  const auto kind_it = json.contains("rope_type") ? json.find("rope_type") : json.find("type");
  const std::string kind =
      kind_it != json.end() && kind_it->is_string() ? kind_it->get<std::string>() : "";
  auto number = [&](const char* key, bool required, double fallback) {
    const auto it = json.find(key);
    if (it == json.end() || it->is_null()) {
      if (required) config.fail(str("rope_scaling.", key), "is missing");
      return fallback;
    }
    if (!it->is_number())
      config.fail(str("rope_scaling.", key), str("must be a number, found ", it->dump()));
    return it->get<double>();
  };
  if (kind == "default") return scaling;
  if (kind == "linear") {
    scaling.type = "linear";
    scaling.factor = number("factor", true, 1.0);
  } else if (kind == "llama3") {
    scaling.type = "llama3";
    scaling.factor = number("factor", true, 1.0);
    scaling.low_freq_factor = number("low_freq_factor", true, 1.0);
    scaling.high_freq_factor = number("high_freq_factor", true, 4.0);
    scaling.original_context =
        static_cast<int>(number("original_max_position_embeddings", true, 8192));
  } else {
    config.fail("rope_scaling", str("has type '", kind_it == json.end() ? "" : kind_it->dump(),
                                    "'; supported: linear, llama3 (or null)"));
  }
  return scaling;
}

}  // namespace

HfModelConfig read_hf_config(const fs::path& file) {
  const nlohmann::json json = core::read_json_file(file, "model config");
  if (!json.is_object()) throw FileError(str(file.string(), ": expected a JSON object"));
  const ConfigReader config(json, file);
  HfModelConfig out;
  const auto arch_it = json.find("architectures");
  if (arch_it == json.end() || !arch_it->is_array() || arch_it->size() != 1 ||
      !(*arch_it)[0].is_string()) {
    config.fail("architectures", "must list exactly one architecture, e.g. [\"LlamaForCausalLM\"]");
  }
  out.architecture = (*arch_it)[0].get<std::string>();
  const Architecture* arch = find_architecture(out.architecture);
  if (arch == nullptr) {
    config.fail("architectures",
                str("names '", out.architecture,
                    "'; edgedistill imports LlamaForCausalLM, MistralForCausalLM and "
                    "Qwen2ForCausalLM"));
  }
  const std::string act = config.string_or("hidden_act", "silu");
  if (act != "silu")
    config.fail("hidden_act", str("is '", act, "'; only silu (SwiGLU) is supported"));
  if (config.bool_or("mlp_bias", false))
    config.fail("mlp_bias", "is true; FFN biases are not supported");
  if (!arch->qkv_bias && config.bool_or("attention_bias", false)) {
    config.fail("attention_bias", "is true; attention biases are supported for Qwen2 only");
  }
  if (config.bool_or("use_sliding_window", false)) {
    config.fail("use_sliding_window", "is true; sliding-window attention is not supported");
  }

  model::LlamaConfig& c = out.llama;
  c.vocab_size = config.positive_int("vocab_size");
  c.dim = config.positive_int("hidden_size");
  c.n_layers = config.positive_int("num_hidden_layers");
  c.n_heads = config.positive_int("num_attention_heads");
  c.n_kv_heads = config.int_or("num_key_value_heads", c.n_heads);
  c.ffn_dim = config.positive_int("intermediate_size");
  c.max_seq_len = config.int_or("max_position_embeddings", 2048);
  c.rope_theta = config.number_or("rope_theta", 10000.0);
  c.norm_eps = config.number_or("rms_norm_eps", 1e-6);
  // transformers' Llama, Mistral and Qwen2 configs default to untied heads.
  c.tie_embeddings = config.bool_or("tie_word_embeddings", false);
  c.qkv_bias = arch->qkv_bias;
  if (config.has("head_dim")) {
    const int head_dim = config.positive_int("head_dim");
    if (head_dim * c.n_heads != c.dim) c.attention_head_dim = head_dim;
  }
  if (config.has("sliding_window") && json.at("sliding_window").is_number() &&
      config.positive_int("sliding_window") < c.max_seq_len) {
    config.fail("sliding_window",
                str("is ", json.at("sliding_window").dump(), ", below max_position_embeddings ",
                    c.max_seq_len, "; sliding-window attention is not supported"));
  }
  c.rope_scaling = read_rope_scaling(config);
  try {
    c.validate("");
  } catch (const ConfigError& e) {
    throw FileError(str(file.string(), ": ", e.what()));
  }
  out.torch_dtype = config.string_or("torch_dtype", "");
  out.bos_token_id = config.token_id("bos_token_id");
  out.eos_token_id = config.token_id("eos_token_id");
  return out;
}

nlohmann::ordered_json hf_config_json(const model::LlamaConfig& c, const std::string& architecture,
                                      int bos_token_id, int eos_token_id) {
  const Architecture* arch = find_architecture(architecture);
  ED_CHECK(arch != nullptr, "hf_config_json: unknown architecture ", architecture);
  if (c.qkv_bias != arch->qkv_bias) {
    throw InputError(str("the model ", c.qkv_bias ? "has" : "lacks",
                         " q/k/v biases, so it cannot be written as ", architecture, "; choose ",
                         c.qkv_bias ? "Qwen2ForCausalLM" : "LlamaForCausalLM"));
  }
  nlohmann::ordered_json j;
  j["architectures"] = {architecture};
  j["model_type"] = arch->model_type;
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.dim;
  j["intermediate_size"] = c.ffn_dim;
  j["num_hidden_layers"] = c.n_layers;
  j["num_attention_heads"] = c.n_heads;
  j["num_key_value_heads"] = c.n_kv_heads;
  j["head_dim"] = c.head_dim();
  j["hidden_act"] = "silu";
  j["max_position_embeddings"] = c.max_seq_len;
  j["rms_norm_eps"] = c.norm_eps;
  j["rope_theta"] = c.rope_theta;
  const model::RopeScaling& s = c.rope_scaling;
  if (s.type == "none") {
    j["rope_scaling"] = nullptr;
  } else if (s.type == "linear") {
    j["rope_scaling"] = {{"rope_type", "linear"}, {"type", "linear"}, {"factor", s.factor}};
  } else if (s.type == "llama3") {
    j["rope_scaling"] = {{"rope_type", "llama3"},
                         {"factor", s.factor},
                         {"low_freq_factor", s.low_freq_factor},
                         {"high_freq_factor", s.high_freq_factor},
                         {"original_max_position_embeddings", s.original_context}};
  } else {
    throw InputError(
        str("the model's RoPE scaling is an explicit divisor list (from a GGUF "
            "rope_freqs.weight), which config.json cannot express; export it as GGUF"));
  }
  j["tie_word_embeddings"] = c.tie_embeddings;
  j["attention_bias"] = c.qkv_bias;
  if (architecture == "MistralForCausalLM") j["sliding_window"] = nullptr;
  if (architecture == "Qwen2ForCausalLM") j["use_sliding_window"] = false;
  if (bos_token_id >= 0) j["bos_token_id"] = bos_token_id;
  if (eos_token_id >= 0) j["eos_token_id"] = eos_token_id;
  j["torch_dtype"] = "float32";
  return j;
}

}  // namespace edgedistill::convert
