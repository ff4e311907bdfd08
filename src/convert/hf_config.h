// A Hugging Face config.json and edgedistill's llama config, both ways (docs/import.md).
//
// Read: LlamaForCausalLM (Llama 2/3, TinyLlama, SmolLM/SmolLM2), Qwen2ForCausalLM (q/k/v biases)
// and MistralForCausalLM without a sliding window; grouped-query heads, tied embeddings,
// rope_theta, rope_scaling "linear" and "llama3", rms_norm_eps. Anything else is a FileError naming
// the file and the key. Written: the same keys, for the architecture the model came from.
#pragma once

#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "model/model_config.h"

namespace edgedistill::convert {

namespace fs = std::filesystem;

inline constexpr const char* kHfConfigFile = "config.json";

struct HfModelConfig {
  std::string architecture;  // "LlamaForCausalLM", "Qwen2ForCausalLM" or "MistralForCausalLM"
  model::LlamaConfig llama;  // validated
  std::string torch_dtype;   // as config.json says ("bfloat16", ...); may be empty
  int bos_token_id = -1;     // -1: none given
  int eos_token_id = -1;
};

// Reads and checks `file` (a config.json).
HfModelConfig read_hf_config(const fs::path& file);

// config.json for `llama` as `architecture` (one of the three above). Qwen2 requires qkv_bias,
// the other two refuse it (InputError); `divisors` RoPE scaling has no Hugging Face spelling.
nlohmann::ordered_json hf_config_json(const model::LlamaConfig& llama,
                                      const std::string& architecture, int bos_token_id,
                                      int eos_token_id);

}  // namespace edgedistill::convert
