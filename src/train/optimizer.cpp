#include "train/optimizer.h"

#include <cmath>

#include "model/checkpoint.h"

namespace edgedistill::train {

double learning_rate(const OptimizerConfig& config, int64_t step, int64_t total_steps) {
  if (config.warmup_steps > 0 && step < config.warmup_steps) {
    return config.lr * static_cast<double>(step + 1) / static_cast<double>(config.warmup_steps);
  }
  const double min_lr = config.lr * config.min_lr_ratio;
  const int64_t decay_steps = total_steps - config.warmup_steps;
  if (decay_steps <= 0) return config.lr;
  const double progress = std::min(
      1.0, static_cast<double>(step - config.warmup_steps) / static_cast<double>(decay_steps));
  return min_lr + 0.5 * (config.lr - min_lr) * (1.0 + std::cos(M_PI * progress));
}

AdamW::AdamW(std::vector<std::pair<std::string, torch::Tensor>> named_parameters,
             const OptimizerConfig& config)
    : config_(config) {
  for (auto& [name, parameter] : named_parameters) {
    slots_.push_back({name, parameter, torch::zeros_like(parameter), torch::zeros_like(parameter),
                      parameter.dim() >= 2});
  }
}

void AdamW::zero_grad() {
  for (auto& slot : slots_) {
    if (slot.parameter.grad().defined()) slot.parameter.mutable_grad().zero_();
  }
}

double AdamW::clip_gradients() {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> norms;
  for (auto& slot : slots_) {
    if (slot.parameter.grad().defined()) norms.push_back(slot.parameter.grad().norm(2));
  }
  if (norms.empty()) return 0.0;
  const double total = torch::stack(norms).norm(2).item<double>();
  if (config_.grad_clip > 0 && std::isfinite(total) && total > config_.grad_clip) {
    const double scale = config_.grad_clip / (total + 1e-6);
    for (auto& slot : slots_) {
      if (slot.parameter.grad().defined()) slot.parameter.mutable_grad().mul_(scale);
    }
  }
  return total;
}

void AdamW::step(double lr) {
  torch::NoGradGuard no_grad;
  ++steps_taken_;
  const double t = static_cast<double>(steps_taken_);
  const double bias_correction1 = 1.0 - std::pow(config_.beta1, t);
  const double bias_correction2 = 1.0 - std::pow(config_.beta2, t);
  const double step_size = lr / bias_correction1;
  const double sqrt_bias_correction2 = std::sqrt(bias_correction2);
  for (auto& slot : slots_) {
    if (!slot.parameter.grad().defined()) continue;
    const auto& grad = slot.parameter.grad();
    if (slot.decay && config_.weight_decay > 0)
      slot.parameter.mul_(1.0 - lr * config_.weight_decay);
    slot.exp_avg.mul_(config_.beta1).add_(grad, 1.0 - config_.beta1);
    slot.exp_avg_sq.mul_(config_.beta2).addcmul_(grad, grad, 1.0 - config_.beta2);
    const auto denominator = (slot.exp_avg_sq.sqrt() / sqrt_bias_correction2).add_(config_.eps);
    slot.parameter.addcdiv_(slot.exp_avg, denominator, -step_size);
  }
}

void AdamW::save_state(io::SafetensorsWriter& writer) const {
  for (const auto& slot : slots_) {
    model::add_tensor(writer, "exp_avg." + slot.name, slot.exp_avg);
    model::add_tensor(writer, "exp_avg_sq." + slot.name, slot.exp_avg_sq);
  }
  writer.set_metadata("adamw.steps_taken", std::to_string(steps_taken_));
}

void AdamW::load_state(const io::SafetensorsFile& file) {
  torch::NoGradGuard no_grad;
  for (auto& slot : slots_) {
    for (auto* target : {&slot.exp_avg, &slot.exp_avg_sq}) {
      const std::string name = (target == &slot.exp_avg ? "exp_avg." : "exp_avg_sq.") + slot.name;
      const auto loaded = model::tensor_from_view(file.at(name));
      if (loaded.sizes() != target->sizes() || loaded.scalar_type() != target->scalar_type()) {
        throw FileError(str("'", file.path().string(), "': optimizer state '", name,
                            "' does not match the model's parameter; the checkpoint belongs to "
                            "another model"));
      }
      target->copy_(loaded);
    }
  }
  const auto it = file.metadata().find("adamw.steps_taken");
  if (it == file.metadata().end()) {
    throw FileError(str("'", file.path().string(), "' has no adamw.steps_taken metadata"));
  }
  steps_taken_ = std::stoll(it->second);
}

}  // namespace edgedistill::train
