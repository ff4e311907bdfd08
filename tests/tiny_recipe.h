// A tiny language-model recipe on a generated corpus with the byte tokenizer, shared by the
// training and distillation tests.
#pragma once

#include <filesystem>
#include <string>

#include "core/files.h"
#include "train/train_config.h"

namespace edgedistill::test {

// Writes the corpus into `dir` and returns a recipe that trains a 2-block, width-64 model on it
// for 40 steps (seconds on 2 cores).
inline train::TrainRecipe tiny_recipe(const std::filesystem::path& dir) {
  std::string text;
  for (int i = 0; i < 400; ++i) {
    text += "the cat sat on the mat and the dog sat on the log number " + std::to_string(i % 17) +
            ".\n\n";
  }
  core::write_file_atomic(dir / "corpus.txt", text);
  train::TrainRecipe recipe;
  recipe.name = "tiny";
  recipe.data.name = "tiny";
  recipe.data.sources[0].kind = "text_file";
  recipe.data.sources[0].path = dir / "corpus.txt";
  recipe.data.tokenizer.kind = "byte";
  recipe.data.split.valid = 0.1;
  recipe.data.split.test = 0.1;
  recipe.model.llama.dim = 64;
  recipe.model.llama.n_layers = 2;
  recipe.model.llama.n_heads = 2;
  recipe.model.llama.n_kv_heads = 1;
  recipe.model.llama.ffn_dim = 128;
  recipe.model.llama.max_seq_len = 64;
  recipe.train.steps = 40;
  recipe.train.batch_size = 8;
  recipe.train.seq_len = 32;
  recipe.train.optimizer.lr = 3e-3;
  recipe.train.optimizer.warmup_steps = 5;
  recipe.train.eval_every = 0;
  recipe.train.checkpoint_every = 0;
  recipe.train.log_every = 5;
  core::Validator::validate_config(recipe, "");
  return recipe;
}

// The command-line tests' recipe: a 2-block, width-64 model on a generated text file with the
// byte tokenizer, as `dir`/tiny.json (the corpus beside it), evaluated every 4 steps.
inline std::filesystem::path tiny_recipe_file(const std::filesystem::path& dir, int steps,
                                              int batch_size, int checkpoint_every = 3) {
  std::string text;
  for (int i = 0; i < 300; ++i) {
    text += "the cat sat on the mat, line " + std::to_string(i % 13) + ".\n\n";
  }
  core::write_file_atomic(dir / "corpus.txt", text);
  const std::string recipe = R"({
    "name": "tiny", "seed": 7,
    "data": {"name": "tiny", "sources": [{"kind": "text_file", "path": "corpus.txt"}],
             "split": {"valid": 0.1, "test": 0.1}, "tokenizer": {"kind": "byte"}},
    "model": {"arch": "llama", "dim": 64, "n_layers": 2, "n_heads": 2, "n_kv_heads": 1,
              "ffn_dim": 96, "max_seq_len": 64},
    "train": {"steps": )" + std::to_string(steps) +
                             R"(, "batch_size": )" + std::to_string(batch_size) +
                             R"(, "seq_len": 32, "lr": 0.003, "warmup_steps": 2, "eval_every": 4,
              "checkpoint_every": )" +
                             std::to_string(checkpoint_every) +
                             R"(, "log_every": 1}
  })";
  core::write_file_atomic(dir / "tiny.json", recipe);
  return dir / "tiny.json";
}

}  // namespace edgedistill::test
