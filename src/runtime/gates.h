// Verification gates: limits a verify report must meet for CI to pass (exit 0) or fail (exit 1).
//
// A gates file is a JSON object of limits, e.g.
//   {"max_ppl_increase_pct": 2.0, "min_top1_agreement": 0.95, "max_decode_ms_per_token": 20,
//    "max_file_mb": 10}
// Each key names the report metric it limits (below) and whether it is a ceiling or a floor.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace edgedistill::runtime {

struct GateSpec {
  const char* key;     // in the gates file
  const char* metric;  // the report value it limits
  bool is_maximum;     // ceiling (value <= limit) or floor (value >= limit)
  const char* help;
};
// Every gate a file may set.
const std::vector<GateSpec>& gate_specs();

struct Gate {
  std::string key;
  double limit = 0;
};

struct GateResult {
  std::string key, metric;
  double limit = 0, value = 0;
  bool passed = false;
  std::string detail;  // "ppl_increase_pct 3.1 > 2 (by 1.1)"
};

// Reads a gates file: a JSON object of numbers with known keys (unknown keys are a ConfigError
// naming the key and the nearest valid one).
std::vector<Gate> read_gates(const std::filesystem::path& path);
std::vector<Gate> parse_gates(const nlohmann::json& json, const std::string& origin);

// Checks each gate against metrics[spec.metric]; a metric that was not measured fails its gate.
std::vector<GateResult> evaluate_gates(const std::vector<Gate>& gates,
                                       const std::map<std::string, double>& metrics);

}  // namespace edgedistill::runtime
