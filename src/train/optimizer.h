// AdamW and the learning-rate schedule.
#pragma once

#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

#include "io/safetensors.h"
#include "train/train_config.h"

namespace edgedistill::train {

// Linear warmup to config.lr over warmup_steps, then cosine decay to lr * min_lr_ratio at
// total_steps. `step` is the 0-based index of the step about to be taken.
double learning_rate(const OptimizerConfig& config, int64_t step, int64_t total_steps);

// AdamW (Loshchilov & Hutter 2019, algorithm 2), written out so that its state is plain tensors
// we can checkpoint in safetensors and restore bit-exactly:
//   p <- p * (1 - lr * wd)                      (decoupled decay; matrices only)
//   m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2
//   p <- p - lr / (1 - b1^t) * m / (sqrt(v / (1 - b2^t)) + eps)
// Weight decay applies to parameters with two or more dimensions (weights and embeddings), not to
// norm gains or biases, as in GPT-2/nanoGPT practice.
class AdamW {
 public:
  AdamW(std::vector<std::pair<std::string, torch::Tensor>> named_parameters,
        const OptimizerConfig& config);

  // Follows a changed parameter set (a removed block, renamed blocks): parameters already here
  // (the same tensors, whatever their new names) keep their moments, new ones start at zero, and
  // those no longer given are forgotten.
  void rebind(const std::vector<std::pair<std::string, torch::Tensor>>& named_parameters);

  void zero_grad();
  // Global L2 norm of all gradients; rescales them to grad_clip when above it (and clip > 0).
  double clip_gradients();
  void step(double lr);

  int64_t steps_taken() const { return steps_taken_; }

  // Moments as exp_avg.<name> / exp_avg_sq.<name>, and the step count in the metadata.
  void save_state(io::SafetensorsWriter& writer) const;
  void load_state(const io::SafetensorsFile& file);

 private:
  struct Slot {
    std::string name;
    torch::Tensor parameter, exp_avg, exp_avg_sq;
    bool decay;
  };
  std::vector<Slot> slots_;
  OptimizerConfig config_;
  int64_t steps_taken_ = 0;
};

}  // namespace edgedistill::train
