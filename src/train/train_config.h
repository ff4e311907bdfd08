// The training recipe: which data, which model, how to train (configs/recipes/*.json).
#pragma once

#include <cstdint>
#include <string>

#include "core/config.h"
#include "data/data_config.h"
#include "model/model_config.h"

namespace edgedistill::train {

// AdamW (Loshchilov & Hutter 2019, arXiv:1711.05101) with linear warmup and cosine decay.
struct OptimizerConfig {
  double lr = 1e-3;
  double min_lr_ratio = 0.1;
  int64_t warmup_steps = 100;
  double weight_decay = 0.1;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double grad_clip = 1.0;

  template <class V>
  void visit(V& v) {
    v.field("lr", lr, "peak learning rate (reached after warmup_steps)");
    v.field("min_lr_ratio", min_lr_ratio, "the cosine schedule ends at lr * min_lr_ratio");
    v.field("warmup_steps", warmup_steps, "steps of linear warmup from lr / warmup_steps to lr");
    v.field("weight_decay", weight_decay,
            "decoupled weight decay on matrices (not norms or biases)");
    v.field("beta1", beta1, "AdamW first-moment decay");
    v.field("beta2", beta2, "AdamW second-moment decay");
    v.field("eps", eps, "AdamW denominator epsilon");
    v.field("grad_clip", grad_clip, "clip the global gradient norm to this; 0 disables");
  }
  void validate(const std::string& at) const;
};

struct TrainConfig {
  int64_t steps = 2000;
  int batch_size = 16;
  int seq_len = 128;
  int grad_accum = 1;
  OptimizerConfig optimizer;
  int64_t log_every = 10;
  int64_t eval_every = 200;
  int64_t eval_tokens = 0;
  int64_t checkpoint_every = 500;
  int keep_checkpoints = 2;
  int64_t early_stop_patience = 0;
  double early_stop_min_delta = 0.0;
  int64_t jitter = 0;

  template <class V>
  void visit(V& v) {
    v.field("steps", steps, "optimizer steps");
    v.field("batch_size", batch_size, "sequences (or images) per micro-batch");
    v.field("seq_len", seq_len, "tokens per training sequence (language models)");
    v.field("grad_accum", grad_accum, "micro-batches accumulated per optimizer step");
    optimizer.visit(v);
    v.field("log_every", log_every, "steps between metrics.jsonl records");
    v.field("eval_every", eval_every,
            "steps between evaluations on the valid split; 0: only at the end");
    v.field("eval_tokens", eval_tokens,
            "tokens (or images) evaluated per evaluation; 0: the whole split");
    v.field("checkpoint_every", checkpoint_every,
            "steps between checkpoints; 0: only the final one");
    v.field("keep_checkpoints", keep_checkpoints, "how many step checkpoints to keep (newest)");
    v.field("early_stop_patience", early_stop_patience,
            "stop after this many evaluations in a row without a lower valid loss and keep the "
            "best evaluated weights as final/; 0: train every step");
    v.field("early_stop_min_delta", early_stop_min_delta,
            "how much lower (nats) the valid loss must be to count as an improvement");
    v.field("jitter", jitter,
            "images: shift each training image by up to this many pixels along each axis "
            "(zero fill), drawn anew each time it is seen; 0: off");
  }
  void validate(const std::string& at) const;
};

// A training recipe (configs/recipes/teacher-kjv.json).
struct TrainRecipe {
  std::string name = "run";
  int64_t seed = 1234;
  int threads = 0;
  std::string device = "cpu";
  data::DataConfig data;
  model::ModelConfig model;
  TrainConfig train;

  template <class V>
  void visit(V& v) {
    v.field("name", name, "a name for reports");
    v.field("seed", seed, "seed for initialisation, data order and dropout");
    v.field("threads", threads, "CPU threads; 0 uses all cores");
    v.choice("device", device, {"cpu", "cuda"}, "where training runs (cuda needs a CUDA LibTorch)");
    v.field("data", data, "the data config (or a path to one, e.g. ../data/kjv.json)");
    v.field("model", model, "the model config (or a path to one, e.g. ../models/teacher-s.json)");
    v.field("train", train, "optimizer, schedule, batching, evaluation and checkpoints");
  }
  void validate(const std::string& at) const;
};

// The vocabulary size the data config's tokenizer will have, known without preparing the data.
int tokenizer_vocab_size(const data::DataConfig& config);

// Fills model.vocab_size from the data config when it is 0; a conflicting explicit value is a
// ConfigError naming both numbers.
void resolve_vocab_size(TrainRecipe& recipe);

}  // namespace edgedistill::train
