// Mixed-precision plans: which GGUF type each weight matrix of a llama model gets.
//
// A plan file is JSON:
//   {
//     "description": "optional text",
//     "tensors": [
//       {"pattern": "token_embd.weight", "type": "q8_0"},
//       {"pattern": "output.weight", "type": "q8_0"},
//       {"pattern": "blk.{first}.ffn_down.weight", "type": "q8_0"},
//       {"pattern": "blk.{last}.ffn_down.weight", "type": "q8_0"}
//     ]
//   }
// A pattern is a tensor name in which `*` matches any run of characters and `?` one character;
// {first} and {last} stand for the first and last block's index. The first rule that matches a
// matrix sets its type; matrices no rule matches get the command's --type. Norms are always f32.
// A pattern that matches no matrix of the model, an unknown type, or an unknown key is an error
// (output.weight counts as a matrix of a tied model too, so one plan serves both kinds; the
// head of a tied model is token_embd and takes token_embd's type).
//
// Without a plan file the default plan applies: token_embd and output at q8_0 when --type is a
// 4-bit type (they are the most sensitive tensors and a small share of the model), nothing else.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "io/gguf_types.h"
#include "model/model_config.h"

namespace edgedistill::quant {

namespace fs = std::filesystem;

struct PlanRule {
  std::string pattern;
  io::GgmlType type;
};

struct QuantPlan {
  std::string source;  // the file, or "default"
  std::string description;
  std::vector<PlanRule> rules;
};

QuantPlan default_plan(io::GgmlType type);

// llama.cpp's named K-quant mixes, as its quantizer types the tensors of a llama model (no
// experts): the base type for every matrix, q6_k for the head (and for token_embd when it is the
// head), and for some layers more bits in attn_v and ffn_down:
//   q4_k_m, q5_k_m: attn_v and ffn_down at q6_k in the layers i of n where
//                   i < n/8 or i >= 7n/8 or (i - n/8) % 3 == 2 (integer division);
//   q4_k_s:         attn_v at q5_k in layers 0-3, ffn_down at q5_k in layers i < n/8;
//   q5_k_s:         nothing more.
// Rows that are not whole super-blocks then fall back as export_tensor_type says.
struct QuantMix {
  std::string name;    // "q4_k_m"
  io::GgmlType base;   // q4_k or q5_k
  uint32_t file_type;  // llama.cpp's LLAMA_FTYPE_MOSTLY_* number for general.file_type
};
const std::vector<QuantMix>& known_mixes();
// The mix called `name`, or nullopt.
std::optional<QuantMix> find_mix(const std::string& name);
// The mix as a plan of exact tensor names for `config`.
QuantPlan mix_plan(const QuantMix& mix, const model::LlamaConfig& config);
// Reads and checks a plan file (syntax, keys, types); InputError naming the file and key.
QuantPlan read_plan(const fs::path& file);
QuantPlan parse_plan(const std::string& text, const std::string& source);

// True when `name` matches `pattern` (glob: * and ?; {first}/{last} substituted beforehand).
bool glob_match(const std::string& pattern, const std::string& name);

// Every matrix of the model (token_embd, output unless tied, and each block's seven linear
// layers) -> its type under `plan` with `type` as the default. A rule that matches no matrix is an
// InputError naming it and listing the model's matrices by example.
std::map<std::string, io::GgmlType> resolve_plan(const QuantPlan& plan, io::GgmlType type,
                                                 const model::LlamaConfig& config);

}  // namespace edgedistill::quant
