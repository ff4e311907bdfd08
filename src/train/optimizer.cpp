#include "train/optimizer.h"

#include <ATen/Parallel.h>

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

void AdamW::rebind(const std::vector<std::pair<std::string, torch::Tensor>>& named_parameters) {
  std::vector<Slot> slots;
  for (const auto& [name, parameter] : named_parameters) {
    const auto same = std::find_if(slots_.begin(), slots_.end(), [&](const Slot& slot) {
      return slot.parameter.unsafeGetTensorImpl() == parameter.unsafeGetTensorImpl();
    });
    if (same != slots_.end()) {
      slots.push_back({name, parameter, same->exp_avg, same->exp_avg_sq, same->decay});
    } else {
      slots.push_back({name, parameter, torch::zeros_like(parameter), torch::zeros_like(parameter),
                       parameter.dim() >= 2});
    }
  }
  slots_ = std::move(slots);
}

void AdamW::zero_grad() {
  // Dropping the gradients (rather than filling them with zeros) lets backward write fresh ones:
  // one memory pass less per parameter per step.
  for (auto& slot : slots_) slot.parameter.mutable_grad().reset();
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

namespace {

struct AdamWStep {
  double lr, decay, beta1, beta2, eps, step_size, sqrt_bias_correction2;
};

// The update as LibTorch operations: any device and dtype. The fused loop below is its CPU twin.
void adamw_update_reference(torch::Tensor& p, const torch::Tensor& g, torch::Tensor& m,
                            torch::Tensor& v, const AdamWStep& s) {
  if (s.decay > 0) p.mul_(1.0 - s.lr * s.decay);
  m.mul_(s.beta1).add_(g, 1.0 - s.beta1);
  v.mul_(s.beta2).addcmul_(g, g, 1.0 - s.beta2);
  p.addcdiv_(m, (v.sqrt() / s.sqrt_bias_correction2).add_(s.eps), -s.step_size);
}

// One memory pass over p, g, m, v (contiguous float32 on the CPU) instead of nine.
void adamw_update_fused(torch::Tensor& p, const torch::Tensor& g_in, torch::Tensor& m,
                        torch::Tensor& v, const AdamWStep& s) {
  const auto g = g_in.contiguous();
  float* pp = p.data_ptr<float>();
  const float* gp = g.data_ptr<float>();
  float* mp = m.data_ptr<float>();
  float* vp = v.data_ptr<float>();
  const float keep = static_cast<float>(1.0 - s.lr * s.decay);
  const float b1 = static_cast<float>(s.beta1), b2 = static_cast<float>(s.beta2);
  const float one_minus_b1 = static_cast<float>(1.0 - s.beta1);
  const float one_minus_b2 = static_cast<float>(1.0 - s.beta2);
  const float inv_sqrt_bc2 = static_cast<float>(1.0 / s.sqrt_bias_correction2);
  const float eps = static_cast<float>(s.eps), step_size = static_cast<float>(s.step_size);
  at::parallel_for(0, p.numel(), 1 << 14, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const float grad = gp[i];
      const float m_new = b1 * mp[i] + one_minus_b1 * grad;
      const float v_new = b2 * vp[i] + one_minus_b2 * grad * grad;
      mp[i] = m_new;
      vp[i] = v_new;
      pp[i] = pp[i] * keep - step_size * m_new / (std::sqrt(v_new) * inv_sqrt_bc2 + eps);
    }
  });
}

}  // namespace

void AdamW::step(double lr) {
  torch::NoGradGuard no_grad;
  ++steps_taken_;
  const double t = static_cast<double>(steps_taken_);
  AdamWStep s;
  s.lr = lr;
  s.beta1 = config_.beta1;
  s.beta2 = config_.beta2;
  s.eps = config_.eps;
  s.step_size = lr / (1.0 - std::pow(config_.beta1, t));
  s.sqrt_bias_correction2 = std::sqrt(1.0 - std::pow(config_.beta2, t));
  for (auto& slot : slots_) {
    if (!slot.parameter.grad().defined()) continue;
    s.decay = slot.decay ? config_.weight_decay : 0.0;
    const bool fusable = slot.parameter.device().is_cpu() &&
                         slot.parameter.scalar_type() == torch::kFloat32 &&
                         slot.parameter.is_contiguous() && slot.exp_avg.is_contiguous();
    if (fusable) {
      adamw_update_fused(slot.parameter, slot.parameter.grad(), slot.exp_avg, slot.exp_avg_sq, s);
    } else {
      adamw_update_reference(slot.parameter, slot.parameter.grad(), slot.exp_avg, slot.exp_avg_sq,
                             s);
    }
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
