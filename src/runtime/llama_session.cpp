#include "runtime/llama_session.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace edgedistill::runtime {
namespace {

// silu(gate) * up, in place in gate.
void swiglu(float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) gate[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

void add_in_place(float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

// Adds `bias` to each of the `rows` rows of x (row length bias.size()).
void add_bias_rows(float* x, const std::vector<float>& bias, int64_t rows) {
  const auto width = static_cast<int64_t>(bias.size());
  for (int64_t r = 0; r < rows; ++r) add_in_place(x + r * width, bias.data(), width);
}

}  // namespace

void rms_norm_rows(const float* x, const float* w, float eps, int64_t rows, int64_t dim,
                   float* out) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    double sum = 0;
    for (int64_t i = 0; i < dim; ++i) sum += static_cast<double>(xr[i]) * xr[i];
    const float scale = static_cast<float>(1.0 / std::sqrt(sum / dim + eps));
    float* o = out + r * dim;
    for (int64_t i = 0; i < dim; ++i) o[i] = xr[i] * scale * w[i];
  }
}

LlamaSession::LlamaSession(const LlamaModel& model, ThreadPool& pool, int64_t context,
                           int64_t max_batch)
    : model_(model),
      h_(model.hparams()),
      pool_(pool),
      kernels_(runtime_kernels()),
      context_(context > 0 ? context : model.hparams().context_length),
      max_batch_(std::max<int64_t>(1, std::min(max_batch, context_))) {
  const int64_t half = h_.head_dim / 2;
  // RoPE tables in double, rounded once (as the LibTorch model computes them).
  rope_cos_.resize(context_ * half);
  rope_sin_.resize(context_ * half);
  for (int64_t pos = 0; pos < context_; ++pos) {
    for (int64_t i = 0; i < half; ++i) {
      const double angle = pos *
                           std::pow(static_cast<double>(h_.rope_theta), -2.0 * i / h_.head_dim) /
                           static_cast<double>(h_.rope_divisors[i]);
      rope_cos_[pos * half + i] = static_cast<float>(std::cos(angle));
      rope_sin_[pos * half + i] = static_cast<float>(std::sin(angle));
    }
  }
  const int64_t q_width = h_.n_heads * h_.head_dim, kv_width = h_.n_kv_heads * h_.head_dim;
  k_cache_.assign(h_.n_layers * context_ * kv_width, 0.0f);
  v_cache_.assign(h_.n_layers * context_ * kv_width, 0.0f);
  x_.resize(max_batch_ * h_.dim);
  xn_.resize(max_batch_ * h_.dim);
  q_.resize(max_batch_ * q_width);
  k_.resize(max_batch_ * kv_width);
  v_.resize(max_batch_ * kv_width);
  attn_.resize(max_batch_ * q_width);
  gate_.resize(max_batch_ * h_.ffn_dim);
  up_.resize(max_batch_ * h_.ffn_dim);
  proj_.resize(max_batch_ * h_.dim);
  scores_.resize(max_batch_ * h_.n_heads * context_);
  logits_.resize(max_batch_ * h_.vocab_size);
  // The activation scratch for the widest input (ffn_dim or the attention width).
  scratch_.reserve(max_batch_ * std::max(h_.ffn_dim, std::max(h_.dim, q_width)) / io::kQuantBlock);
}

uint64_t LlamaSession::allocated_bytes() const {
  uint64_t floats = 0;
  for (const auto* buffer : {&rope_cos_, &rope_sin_, &k_cache_, &v_cache_, &x_, &xn_, &q_, &k_, &v_,
                             &attn_, &gate_, &up_, &proj_, &scores_, &logits_, &all_logits_}) {
    floats += buffer->capacity();
  }
  return floats * sizeof(float) + scratch_.capacity() * sizeof(Q8ActivationBlock);
}

const float* LlamaSession::forward(const int32_t* tokens, int64_t n, bool all_logits) {
  ED_CHECK(n > 0, "forward of no tokens");
  if (position_ + n > context_) {
    throw InputError(str("the input needs ", position_ + n, " positions but the context holds ",
                         context_, "; shorten the prompt or generate fewer tokens (-n)"));
  }
  for (int64_t i = 0; i < n; ++i) {
    if (tokens[i] < 0 || tokens[i] >= h_.vocab_size) {
      throw InputError(
          str("token id ", tokens[i], " is outside the model's vocabulary of ", h_.vocab_size));
    }
  }
  if (all_logits && all_logits_.size() < static_cast<size_t>(n * h_.vocab_size)) {
    all_logits_.resize(n * h_.vocab_size);
  }
  for (int64_t done = 0; done < n; done += max_batch_) {
    const int64_t chunk = std::min(max_batch_, n - done);
    const bool last = done + chunk == n;
    forward_chunk(
        tokens + done, chunk, all_logits,
        all_logits ? all_logits_.data() + done * h_.vocab_size : (last ? logits_.data() : nullptr));
  }
  return all_logits ? all_logits_.data() : logits_.data();
}

void LlamaSession::rope(float* x, int64_t n, int64_t heads) const {
  const int64_t half = h_.head_dim / 2;
  for (int64_t t = 0; t < n; ++t) {
    const float* c = rope_cos_.data() + (position_ + t) * half;
    const float* s = rope_sin_.data() + (position_ + t) * half;
    for (int64_t head = 0; head < heads; ++head) {
      float* v = x + (t * heads + head) * h_.head_dim;
      for (int64_t i = 0; i < half; ++i) {
        const float a = v[2 * i], b = v[2 * i + 1];
        v[2 * i] = a * c[i] - b * s[i];
        v[2 * i + 1] = a * s[i] + b * c[i];
      }
    }
  }
}

void LlamaSession::attention(int64_t layer, int64_t n) {
  const int64_t d = h_.head_dim, heads = h_.n_heads, group = h_.n_heads / h_.n_kv_heads;
  const int64_t kv_width = h_.n_kv_heads * d;
  const float* k_layer = k_cache_.data() + layer * context_ * kv_width;
  const float* v_layer = v_cache_.data() + layer * context_ * kv_width;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  // One task per (token, head): scores over the cache, softmax, weighted sum of values.
  pool_.parallel_for(n * heads, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t t = task / heads, head = task % heads, kv_head = head / group;
      const int64_t length = position_ + t + 1;  // causal: positions 0 .. position_ + t
      const float* q = q_.data() + (t * heads + head) * d;
      float* scores = scores_.data() + task * context_;
      float max_score = -INFINITY;
      for (int64_t j = 0; j < length; ++j) {
        const float* k = k_layer + j * kv_width + kv_head * d;
        float dot = 0;
        for (int64_t i = 0; i < d; ++i) dot += q[i] * k[i];
        scores[j] = dot * scale;
        max_score = std::max(max_score, scores[j]);
      }
      float sum = 0;
      for (int64_t j = 0; j < length; ++j) {
        scores[j] = std::exp(scores[j] - max_score);
        sum += scores[j];
      }
      const float inv_sum = 1.0f / sum;
      float* out = attn_.data() + (t * heads + head) * d;
      std::fill(out, out + d, 0.0f);
      for (int64_t j = 0; j < length; ++j) {
        const float* v = v_layer + j * kv_width + kv_head * d;
        const float weight = scores[j] * inv_sum;
        for (int64_t i = 0; i < d; ++i) out[i] += weight * v[i];
      }
    }
  });
}

void LlamaSession::forward_chunk(const int32_t* tokens, int64_t n, bool all_logits,
                                 float* logits_out) {
  const int64_t dim = h_.dim, kv_width = h_.n_kv_heads * h_.head_dim;
  for (int64_t t = 0; t < n; ++t) model_.embed(tokens[t], x_.data() + t * dim);

  for (int64_t l = 0; l < h_.n_layers; ++l) {
    const LlamaLayerWeights& w = model_.layers()[l];
    rms_norm_rows(x_.data(), w.attn_norm.data(), h_.norm_eps, n, dim, xn_.data());
    linear(pool_, kernels_, w.attn_q, xn_.data(), n, q_.data(), scratch_);
    linear(pool_, kernels_, w.attn_k, xn_.data(), n, k_.data(), scratch_);
    linear(pool_, kernels_, w.attn_v, xn_.data(), n, v_.data(), scratch_);
    if (!w.q_bias.empty()) {
      add_bias_rows(q_.data(), w.q_bias, n);
      add_bias_rows(k_.data(), w.k_bias, n);
      add_bias_rows(v_.data(), w.v_bias, n);
    }
    rope(q_.data(), n, h_.n_heads);
    rope(k_.data(), n, h_.n_kv_heads);
    float* k_slot = k_cache_.data() + (l * context_ + position_) * kv_width;
    float* v_slot = v_cache_.data() + (l * context_ + position_) * kv_width;
    std::copy(k_.begin(), k_.begin() + n * kv_width, k_slot);
    std::copy(v_.begin(), v_.begin() + n * kv_width, v_slot);
    attention(l, n);
    linear(pool_, kernels_, w.attn_output, attn_.data(), n, proj_.data(), scratch_);
    add_in_place(x_.data(), proj_.data(), n * dim);

    rms_norm_rows(x_.data(), w.ffn_norm.data(), h_.norm_eps, n, dim, xn_.data());
    linear(pool_, kernels_, w.ffn_gate, xn_.data(), n, gate_.data(), scratch_);
    linear(pool_, kernels_, w.ffn_up, xn_.data(), n, up_.data(), scratch_);
    swiglu(gate_.data(), up_.data(), n * h_.ffn_dim);
    linear(pool_, kernels_, w.ffn_down, gate_.data(), n, proj_.data(), scratch_);
    add_in_place(x_.data(), proj_.data(), n * dim);
  }
  position_ += n;

  if (logits_out == nullptr) return;
  // Only the rows whose logits are wanted go through the head (the largest matrix).
  const int64_t first = all_logits ? 0 : n - 1, rows = n - first;
  rms_norm_rows(x_.data() + first * dim, model_.output_norm().data(), h_.norm_eps, rows, dim,
                xn_.data());
  linear(pool_, kernels_, model_.output(), xn_.data(), rows, logits_out, scratch_);
}

}  // namespace edgedistill::runtime
