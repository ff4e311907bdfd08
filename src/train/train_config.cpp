#include "train/train_config.h"

#include "data/byte_tokenizer.h"
#include "data/tokenizer.h"

namespace edgedistill::train {

using core::config_fail;
using core::key_path;

void OptimizerConfig::validate(const std::string& at) const {
  if (!(lr > 0)) config_fail(key_path(at, "lr"), str("must be positive, found ", lr));
  if (min_lr_ratio < 0 || min_lr_ratio > 1)
    config_fail(key_path(at, "min_lr_ratio"), "must be in [0, 1]");
  if (warmup_steps < 0) config_fail(key_path(at, "warmup_steps"), "must be >= 0");
  if (weight_decay < 0) config_fail(key_path(at, "weight_decay"), "must be >= 0");
  if (beta1 < 0 || beta1 >= 1) config_fail(key_path(at, "beta1"), "must be in [0, 1)");
  if (beta2 < 0 || beta2 >= 1) config_fail(key_path(at, "beta2"), "must be in [0, 1)");
  if (!(eps > 0)) config_fail(key_path(at, "eps"), "must be positive");
  if (grad_clip < 0) config_fail(key_path(at, "grad_clip"), "must be >= 0 (0 disables clipping)");
}

void TrainConfig::validate(const std::string& at) const {
  if (steps <= 0) config_fail(key_path(at, "steps"), str("must be positive, found ", steps));
  if (batch_size <= 0) config_fail(key_path(at, "batch_size"), "must be positive");
  if (seq_len <= 1) config_fail(key_path(at, "seq_len"), "must be at least 2");
  if (grad_accum <= 0) config_fail(key_path(at, "grad_accum"), "must be positive");
  if (log_every <= 0) config_fail(key_path(at, "log_every"), "must be positive");
  if (eval_every < 0) config_fail(key_path(at, "eval_every"), "must be >= 0");
  if (eval_tokens < 0) config_fail(key_path(at, "eval_tokens"), "must be >= 0");
  if (checkpoint_every < 0) config_fail(key_path(at, "checkpoint_every"), "must be >= 0");
  if (keep_checkpoints < 1) config_fail(key_path(at, "keep_checkpoints"), "must be at least 1");
  if (early_stop_patience < 0) config_fail(key_path(at, "early_stop_patience"), "must be >= 0");
  if (early_stop_patience > 0 && eval_every == 0) {
    config_fail(key_path(at, "early_stop_patience"),
                "needs evaluations during training; set train.eval_every (e.g. 100)");
  }
  if (jitter < 0) config_fail(key_path(at, "jitter"), "must be >= 0 (0: off)");
  if (!(early_stop_min_delta >= 0))
    config_fail(key_path(at, "early_stop_min_delta"), "must be >= 0");
  optimizer.validate(at);
}

void TrainRecipe::validate(const std::string& at) const {
  if (threads < 0) config_fail(key_path(at, "threads"), "must be >= 0 (0 uses all cores)");
  const bool image_data = data.kind == "images";
  if (model.arch == "mlp" && !image_data) {
    config_fail(key_path(at, "model.arch"),
                "an mlp classifier trains on image data; set data.kind = \"images\" (e.g. data: "
                "\"../data/fashion-mnist.json\")");
  }
  if (train.jitter > 0 && !image_data) {
    config_fail(key_path(at, "train.jitter"),
                "shifts images; a text dataset has none (set it to 0)");
  }
  if (model.arch == "llama" && image_data) {
    config_fail(key_path(at, "model.arch"),
                "a llama model trains on text; use a text data config (e.g. ../data/kjv.json)");
  }
  if (model.arch == "llama" && train.seq_len > model.llama.max_seq_len) {
    config_fail(key_path(at, "train.seq_len"),
                str("is ", train.seq_len, " but model.max_seq_len is ", model.llama.max_seq_len,
                    "; lower train.seq_len or raise model.max_seq_len"));
  }
  if (model.arch == "llama") {
    const int vocab = tokenizer_vocab_size(data);
    // Larger is a padded embedding (as pretrained models have); smaller leaves tokens out.
    if (model.llama.vocab_size != 0 && model.llama.vocab_size < vocab) {
      config_fail(key_path(at, "model.vocab_size"),
                  str("is ", model.llama.vocab_size, " but the data's tokenizer has ", vocab,
                      " tokens; set it to 0 to take the tokenizer's size"));
    }
  }
}

int tokenizer_vocab_size(const data::DataConfig& config) {
  if (!config.tokenizer.from.empty()) {
    return data::open_tokenizer(config.tokenizer.from)->vocab_size();
  }
  if (config.tokenizer.kind == "byte") return data::ByteTokenizer::kVocabSize;
  return config.tokenizer.vocab_size;
}

void resolve_vocab_size(TrainRecipe& recipe) {
  if (recipe.model.arch != "llama") return;
  if (recipe.model.llama.vocab_size == 0)
    recipe.model.llama.vocab_size = tokenizer_vocab_size(recipe.data);
}

}  // namespace edgedistill::train
