#include "quantize/quant_plan.h"

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/files.h"
#include "quantize/gguf_export.h"

namespace edgedistill::quant {
namespace {

io::GgmlType plan_type(const nlohmann::json& value, const std::string& at) {
  if (!value.is_string()) {
    throw ConfigError(str(at, ": expected a type name (string), got ", value.dump()));
  }
  const auto type = io::parse_ggml_type(value.get<std::string>());
  if (!type) {
    std::string names;
    for (const auto& traits : io::known_ggml_types()) {
      names += (names.empty() ? "" : ", ") + std::string(traits.name);
    }
    throw ConfigError(
        str(at, ": unknown type '", value.get<std::string>(), "'; use one of ", names));
  }
  if (*type == io::GgmlType::q8_k) {
    throw ConfigError(str(at,
                          ": q8_k is the K-quant dot products' activation type, not a weight "
                          "type; use q4_k, q5_k or q6_k"));
  }
  return *type;
}

std::string substitute_blocks(std::string pattern, int n_layers) {
  for (const auto& [token, value] : {std::pair<std::string, int>{"{first}", 0},
                                     std::pair<std::string, int>{"{last}", n_layers - 1}}) {
    for (size_t at = pattern.find(token); at != std::string::npos; at = pattern.find(token)) {
      pattern.replace(at, token.size(), std::to_string(value));
    }
  }
  return pattern;
}

}  // namespace

QuantPlan default_plan(io::GgmlType type) {
  QuantPlan plan;
  plan.source = "default";
  plan.description = "token_embd and output at q8_0 for the 4- and 5-bit types";
  if (keeps_embedding_at_q8_0(type)) {
    plan.rules = {{"token_embd.weight", io::GgmlType::q8_0}, {"output.weight", io::GgmlType::q8_0}};
  }
  return plan;
}

const std::vector<QuantMix>& known_mixes() {
  // llama.cpp's LLAMA_FTYPE_MOSTLY_Q4_K_S 14, Q4_K_M 15, Q5_K_S 16, Q5_K_M 17.
  static const std::vector<QuantMix> mixes = {{"q4_k_m", io::GgmlType::q4_k, 15},
                                              {"q4_k_s", io::GgmlType::q4_k, 14},
                                              {"q5_k_m", io::GgmlType::q5_k, 17},
                                              {"q5_k_s", io::GgmlType::q5_k, 16}};
  return mixes;
}

std::optional<QuantMix> find_mix(const std::string& name) {
  for (const QuantMix& mix : known_mixes()) {
    if (mix.name == name) return mix;
  }
  return std::nullopt;
}

QuantPlan mix_plan(const QuantMix& mix, const model::LlamaConfig& config) {
  QuantPlan plan;
  plan.source = mix.name;
  plan.description = str("llama.cpp's ", mix.name, " mix");
  const int n = config.n_layers;
  const auto more_bits = [n](int i) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; };
  plan.rules.push_back({"output.weight", io::GgmlType::q6_k});
  if (config.tie_embeddings) plan.rules.push_back({"token_embd.weight", io::GgmlType::q6_k});
  for (int i = 0; i < n; ++i) {
    std::optional<io::GgmlType> attn_v, ffn_down;
    if (mix.name == "q4_k_m" || mix.name == "q5_k_m") {
      if (more_bits(i)) attn_v = ffn_down = io::GgmlType::q6_k;
    } else if (mix.name == "q4_k_s") {
      if (i < 4) attn_v = io::GgmlType::q5_k;
      if (i < n / 8) ffn_down = io::GgmlType::q5_k;
    }
    if (attn_v) plan.rules.push_back({str("blk.", i, ".attn_v.weight"), *attn_v});
    if (ffn_down) plan.rules.push_back({str("blk.", i, ".ffn_down.weight"), *ffn_down});
  }
  return plan;
}

QuantPlan parse_plan(const std::string& text, const std::string& source) {
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    throw ConfigError(str(source, ": not valid JSON (", e.what(), ")"));
  }
  if (!json.is_object()) throw ConfigError(str(source, ": a plan is a JSON object"));
  QuantPlan plan;
  plan.source = source;
  for (const auto& [key, value] : json.items()) {
    if (key == "description") {
      if (!value.is_string()) throw ConfigError(str(source, ": description: expected a string"));
      plan.description = value.get<std::string>();
    } else if (key == "tensors") {
      if (!value.is_array()) {
        throw ConfigError(str(source, ": tensors: expected an array of {\"pattern\", \"type\"}"));
      }
      for (size_t i = 0; i < value.size(); ++i) {
        const std::string at = str(source, ": tensors[", i, "]");
        const auto& rule = value[i];
        if (!rule.is_object()) throw ConfigError(str(at, ": expected {\"pattern\", \"type\"}"));
        for (const auto& [rule_key, unused] : rule.items()) {
          if (rule_key != "pattern" && rule_key != "type") {
            throw ConfigError(
                str(at, ": unknown key '", rule_key, "'; a rule has pattern and type"));
          }
        }
        if (!rule.contains("pattern") || !rule["pattern"].is_string() ||
            rule["pattern"].get<std::string>().empty()) {
          throw ConfigError(str(at, ".pattern: expected a non-empty tensor name pattern"));
        }
        if (!rule.contains("type")) throw ConfigError(str(at, ".type: missing"));
        plan.rules.push_back(
            {rule["pattern"].get<std::string>(), plan_type(rule["type"], at + ".type")});
      }
    } else {
      throw ConfigError(
          str(source, ": unknown key '", key, "'; a plan has tensors and description"));
    }
  }
  return plan;
}

QuantPlan read_plan(const fs::path& file) {
  return parse_plan(core::read_file(file, "plan file"), file.string());
}

bool glob_match(const std::string& pattern, const std::string& name) {
  // Iterative matching with one backtrack point for the last '*'.
  size_t p = 0, n = 0, star = std::string::npos, resume = 0;
  while (n < name.size()) {
    if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == name[n])) {
      ++p;
      ++n;
    } else if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      resume = n;
    } else if (star != std::string::npos) {
      p = star + 1;
      n = ++resume;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

std::map<std::string, io::GgmlType> resolve_plan(const QuantPlan& plan, io::GgmlType type,
                                                 const model::LlamaConfig& config) {
  const std::vector<std::string> matrices = llama_matrix_names(config);
  // A tied model's head is token_embd itself: a rule naming output.weight is valid (the same plan
  // serves tied and untied models) but has nothing of its own to set.
  std::vector<std::string> known = matrices;
  if (config.tie_embeddings) known.push_back("output.weight");
  std::vector<std::string> patterns;
  for (size_t i = 0; i < plan.rules.size(); ++i) {
    patterns.push_back(substitute_blocks(plan.rules[i].pattern, config.n_layers));
    bool matches = false;
    for (const std::string& name : known) matches = matches || glob_match(patterns[i], name);
    if (!matches) {
      throw ConfigError(str(plan.source, ": tensors[", i, "]: pattern '", plan.rules[i].pattern,
                            "' matches no weight matrix of this model (", config.n_layers,
                            " blocks; names like token_embd.weight, output.weight, "
                            "blk.0.attn_q.weight, blk.",
                            config.n_layers - 1, ".ffn_down.weight; norms are always f32)"));
    }
  }
  std::map<std::string, io::GgmlType> types;
  for (const std::string& name : matrices) {
    types[name] = type;
    for (size_t i = 0; i < plan.rules.size(); ++i) {
      if (glob_match(patterns[i], name)) {
        types[name] = plan.rules[i].type;
        break;
      }
    }
  }
  return types;
}

}  // namespace edgedistill::quant
