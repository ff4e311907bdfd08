#include "runtime/gates.h"

#include <cmath>

#include "core/config.h"
#include "core/error.h"
#include "core/files.h"

namespace edgedistill::runtime {

const std::vector<GateSpec>& gate_specs() {
  static const std::vector<GateSpec> specs = {
      {"max_ppl_increase_pct", "ppl_increase_pct", true,
       "runtime perplexity over the float reference's, in percent"},
      {"max_perplexity", "perplexity", true, "runtime perplexity on the evaluation tokens"},
      {"max_mean_kl", "mean_kl", true, "mean KL(reference || runtime) per token, nats"},
      {"min_top1_agreement", "top1_agreement", false,
       "share of positions where runtime and reference agree on the most likely token"},
      {"max_decode_ms_per_token", "decode_ms_per_token", true, "decode latency"},
      {"min_decode_tokens_per_s", "decode_tokens_per_s", false, "decode speed"},
      {"min_prefill_tokens_per_s", "prefill_tokens_per_s", false, "prefill speed"},
      {"max_file_mb", "file_mb", true, "GGUF file size in MB (10^6 bytes)"},
  };
  return specs;
}

namespace {

const GateSpec* find_spec(const std::string& key) {
  for (const GateSpec& spec : gate_specs()) {
    if (key == spec.key) return &spec;
  }
  return nullptr;
}

}  // namespace

std::vector<Gate> parse_gates(const nlohmann::json& json, const std::string& origin) {
  if (!json.is_object()) {
    throw ConfigError(str(origin, ": gates must be a JSON object such as ",
                          "{\"max_ppl_increase_pct\": 2.0}, found ", json.type_name()));
  }
  std::vector<std::string> keys;
  for (const GateSpec& spec : gate_specs()) keys.push_back(spec.key);
  std::vector<Gate> gates;
  for (const auto& [key, value] : json.items()) {
    if (find_spec(key) == nullptr) {
      const std::string nearest = core::nearest_name(key, keys);
      throw ConfigError(str(origin, ": unknown gate '", key, "'",
                            nearest.empty() ? "" : str("; did you mean '", nearest, "'?"),
                            " (gates: ", nlohmann::json(keys).dump(), ")"));
    }
    if (!value.is_number() || !std::isfinite(value.get<double>())) {
      throw ConfigError(str(origin, ": gate '", key, "' must be a number, found ", value.dump()));
    }
    gates.push_back({key, value.get<double>()});
  }
  return gates;
}

std::vector<Gate> read_gates(const std::filesystem::path& path) {
  return parse_gates(core::read_json_file(path, "gates file"), path.string());
}

std::vector<GateResult> evaluate_gates(const std::vector<Gate>& gates,
                                       const std::map<std::string, double>& metrics) {
  std::vector<GateResult> results;
  for (const Gate& gate : gates) {
    const GateSpec* spec = find_spec(gate.key);
    ED_CHECK(spec != nullptr, "gate ", gate.key);
    GateResult result;
    result.key = gate.key;
    result.metric = spec->metric;
    result.limit = gate.limit;
    const auto found = metrics.find(spec->metric);
    if (found == metrics.end() || !std::isfinite(found->second)) {
      result.value = NAN;
      result.passed = false;
      result.detail = str(spec->metric, " was not measured");
    } else {
      result.value = found->second;
      result.passed = spec->is_maximum ? result.value <= gate.limit : result.value >= gate.limit;
      result.detail =
          str(spec->metric, " ", result.value, spec->is_maximum ? " <= " : " >= ", gate.limit);
      if (!result.passed) {
        result.detail = str(spec->metric, " ", result.value, spec->is_maximum ? " > " : " < ",
                            gate.limit, " (by ", std::fabs(result.value - gate.limit), ")");
      }
    }
    results.push_back(result);
  }
  return results;
}

}  // namespace edgedistill::runtime
