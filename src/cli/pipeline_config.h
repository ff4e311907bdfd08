// The pipeline recipe `edgedistill recipe` runs (configs/recipes/quickstart.json): one data config
// for every stage, the teacher (trained from its recipe, or an existing checkpoint), the
// distillation recipe, optional pruning and healing, quantization to GGUF, and the verify gates.
// Each section holds what the matching single command takes; docs/ci.md describes the stages.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "core/config.h"
#include "data/data_config.h"
#include "distill/distill_config.h"
#include "train/train_config.h"

namespace edgedistill::cli {

struct PipelineTeacher {
  std::filesystem::path checkpoint;
  train::TrainRecipe recipe;

  template <class V>
  void visit(V& v) {
    v.field("checkpoint", checkpoint,
            "an existing teacher: a checkpoint or finished run directory; empty: train one from "
            "teacher.recipe");
    v.field("recipe", recipe,
            "the teacher's training recipe (or a path to one, e.g. teacher-kjv.json); its data "
            "section is replaced by the pipeline's data");
  }
};

struct PipelineDistill {
  bool enabled = true;
  distill::DistillRecipe recipe;

  template <class V>
  void visit(V& v) {
    v.field("enabled", enabled, "distil a student from the teacher; false: the teacher goes on");
    v.field("recipe", recipe,
            "the distillation recipe (or a path to one, e.g. distill-kjv.json); the pipeline sets "
            "its teacher and data");
  }
};

struct PipelineHeal {
  bool enabled = true;
  distill::DistillRecipe recipe;

  template <class V>
  void visit(V& v) {
    v.field("enabled", enabled, "heal the pruned model by distillation from the teacher");
    v.field("recipe", recipe,
            "the healing recipe (or a path to one, e.g. heal-kjv.json); the pipeline sets its "
            "teacher, data and student.from (the pruned model)");
  }
};

struct PipelinePrune {
  bool enabled = false;
  std::string method = "structured";
  double sparsity = 0;
  std::string pattern;
  std::string scope = "layer";
  double heads = 0;
  double ffn = 0;
  int layers = 0;
  double params = 0;
  int64_t calib_tokens = 32768;
  int64_t calib_context = 128;
  int64_t seed = 0;
  PipelineHeal heal;

  template <class V>
  void visit(V& v) {
    v.field("enabled", enabled, "prune the model from the stage before (edgedistill prune)");
    v.choice("method", method, {"magnitude", "wanda", "structured"},
             "magnitude, wanda (unstructured or N:M, masks kept), or structured (smaller model)");
    v.field("sparsity", sparsity, "magnitude/wanda: share of each block matrix set to zero");
    v.field("pattern", pattern, "magnitude/wanda: N:M sparsity instead, e.g. \"2:4\"");
    v.choice("scope", scope, {"layer", "global"},
             "magnitude/wanda: one threshold per matrix (layer) or over all block matrices");
    v.field("heads", heads, "structured: share of attention heads to remove (whole GQA groups)");
    v.field("ffn", ffn, "structured: share of FFN channels to remove");
    v.field("layers", layers, "structured: number of blocks to remove");
    v.field("params", params, "structured: share of all parameters to remove (solves the FFN)");
    v.field("calib_tokens", calib_tokens, "calibration tokens from the train split");
    v.field("calib_context", calib_context, "tokens per calibration window");
    v.field("seed", seed, "seed of the calibration windows' positions");
    v.field("heal", heal, "healing by distillation after pruning");
  }
};

struct PipelineQuantize {
  std::string method = "gptq";
  std::string type = "q4_0";
  std::filesystem::path plan;
  int64_t calib_tokens = 16384;
  int64_t calib_context = 128;
  int64_t seed = 0;
  bool act_order = false;
  int block_size = 128;
  double damp = 0.01;

  template <class V>
  void visit(V& v) {
    v.choice("method", method, {"rtn", "gptq", "awq", "awq+gptq"},
             "rounding: rtn (round to nearest), gptq, awq, or awq+gptq (edgedistill quantize)");
    v.choice("type", type, {"q4_0", "q4_1", "q8_0", "f16", "f32"},
             "GGUF type of the weight matrices (f16/f32: no quantization, method rtn)");
    v.field("plan", plan, "mixed-precision plan (JSON); empty: the type's default plan");
    v.field("calib_tokens", calib_tokens, "calibration tokens from the train split (gptq, awq)");
    v.field("calib_context", calib_context, "tokens per calibration window");
    v.field("seed", seed, "seed of the calibration windows' positions");
    v.field("act_order", act_order, "GPTQ: round columns by decreasing Hessian diagonal");
    v.field("block_size", block_size, "GPTQ: columns per lazy batch (a multiple of 32)");
    v.field("damp", damp, "GPTQ: damping, a share of the Hessian's mean diagonal");
  }
  void validate(const std::string& at) const;
};

struct PipelineVerify {
  std::filesystem::path gates;
  std::string split = "test";
  int64_t context = 128;
  int64_t max_tokens = 0;
  bool bench = true;

  template <class V>
  void visit(V& v) {
    v.field("gates", gates,
            "JSON file of limits (e.g. ../gates/quickstart-q4_0.json); a failed gate exits 1; "
            "empty: report only");
    v.choice("split", split, {"train", "valid", "test"}, "which split the GGUF model is scored on");
    v.field("context", context, "tokens per scored window");
    v.field("max_tokens", max_tokens, "score at most this many tokens; 0: the whole split");
    v.field("bench", bench, "measure prefill and decode speed (latency gates need it)");
  }
  void validate(const std::string& at) const;
};

// configs/recipes/quickstart.json.
struct PipelineRecipe {
  std::string name = "pipeline";
  int threads = 0;
  data::DataConfig data;
  PipelineTeacher teacher;
  PipelineDistill distill;
  PipelinePrune prune;
  PipelineQuantize quantize;
  PipelineVerify verify;

  template <class V>
  void visit(V& v) {
    v.field("name", name, "names the run directory (runs/NAME) and the artifact");
    v.field("threads", threads, "CPU threads for every stage; 0 uses all cores");
    v.field("data", data,
            "the text data every stage uses (or a path to a data config, e.g. ../data/kjv.json)");
    v.field("teacher", teacher, "the teacher: trained here, or an existing checkpoint");
    v.field("distill", distill, "distillation of the student");
    v.field("prune", prune, "pruning (optional) and healing");
    v.field("quantize", quantize, "quantization and export to GGUF");
    v.field("verify", verify, "the GGUF model checked against its float model, with gates");
  }
  void validate(const std::string& at) const;
};

// Whether a config file's top-level keys are a pipeline recipe's (for `edgedistill config`).
bool looks_like_pipeline(const nlohmann::json& json);

}  // namespace edgedistill::cli
