// A llama-style decoder in LibTorch.
//
// Parameter names are the GGUF tensor names (token_embd.weight, blk.N.attn_q.weight, ...; see
// docs/runtime.md, "What export writes"), so export maps names one to one.
//
// RoPE pairing: we rotate ADJACENT pairs (x[2i], x[2i+1]) of each head with
// theta_i = pos * rope_theta^(-2i/D), which is llama.cpp's convention for the "llama"
// architecture. Our Q/K weights therefore export to GGUF without any row permutation; importing
// or exporting Hugging Face checkpoints (which use rotate_half, pairs (i, i + D/2)) must permute
// the Q and K rows per head (gguf.md, "RoPE convention").
#pragma once

#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

#include "model/fused_ops.h"
#include "model/model_config.h"

namespace edgedistill::model {

// y = x / sqrt(mean(x^2) + eps) * w, over the last dimension (Zhang & Sennrich 2019).
class RMSNormImpl : public torch::nn::Module {
 public:
  RMSNormImpl(int64_t dim, double eps);
  torch::Tensor forward(const torch::Tensor& x);  // [..., dim] -> [..., dim]

  torch::Tensor weight;  // [dim]
  double eps;
};
TORCH_MODULE(RMSNorm);

// cos and sin tables [max_len, head_dim/2] for theta_i = pos * base^(-2i/head_dim).
std::pair<torch::Tensor, torch::Tensor> rope_tables(int64_t max_len, int64_t head_dim, double base);
// The same for explicit per-pair frequencies (model_config.h rope_frequencies: scaled RoPE).
std::pair<torch::Tensor, torch::Tensor> rope_tables(int64_t max_len,
                                                    const std::vector<double>& frequencies);

// What forward() should capture besides the logits. Nothing is captured (or kept alive for it)
// unless asked.
struct ForwardOptions {
  bool hidden_states = false;  // each block's input and the last block's output
  bool attention = false;      // each layer's attention probabilities
  // The layer (0-based block index) whose attention inputs fill ForwardOutput::queries, keys and
  // values, as MiniLM-style relation losses need them; -1: none.
  int relation_layer = -1;
  // Training-time changes to the blocks (progressive layer dropping, uncertainty passes). Per
  // block: 0 skips it (its output is its input and none of it runs), s > 0 scales its residual
  // branch, x + s * (block(x) - x). Empty: every block runs as is.
  std::vector<double> block_scales;
  // Dropout at this rate on each block's residual branch (inverted scaling; torch's generator).
  double residual_dropout = 0;
};

// Multiply-add FLOPs (2 per multiply-add) of one forward pass over [batch, length] tokens as
// forward() computes it: every linear layer, the head, and the full T x T score and context
// products of each head (the causal mask does not skip work). Norms and softmax are left out.
double forward_flops(const LlamaConfig& config, int64_t batch, int64_t length);

struct ForwardOutput {
  torch::Tensor logits;  // [B, T, vocab]
  // n_layers + 1 entries: the embeddings (input of block 0), then each block's output; [B, T, dim].
  std::vector<torch::Tensor> hidden_states;
  // n_layers entries of softmax(QK^T / sqrt(D)) with the causal mask; [B, n_heads, T, T].
  std::vector<torch::Tensor> attention;
  // ForwardOptions::relation_layer's attention inputs, each [B, T, n_heads * head_dim]: q and k
  // after RoPE (q without the 1/sqrt(D) score scale), and v. The kv heads are repeated over their
  // query groups, so columns [h D, (h + 1) D) of all three belong to query head h. Undefined when
  // not asked for.
  torch::Tensor queries, keys, values;
};

// One block's attention inputs in ForwardOutput's layout (queries, keys, values above).
struct AttentionInputs {
  torch::Tensor queries, keys, values;  // [B, T, n_heads * head_dim]
};

// The input of each linear layer of a block and the block's output, for post-training passes that
// calibrate on activations (GPTQ, AWQ). All [B, T, width].
struct BlockTrace {
  torch::Tensor attn_in;     // attn_norm(x): the input of attn_q, attn_k, attn_v
  torch::Tensor context;     // the merged attention heads: the input of attn_output
  torch::Tensor ffn_in;      // ffn_norm(x + attention): the input of ffn_gate, ffn_up
  torch::Tensor ffn_hidden;  // silu(gate) * up: the input of ffn_down
  torch::Tensor out;         // the block's output
};

class LlamaBlockImpl : public torch::nn::Module {
 public:
  explicit LlamaBlockImpl(const LlamaConfig& config);
  // x: [B, T, dim]; cos/sin: [T, head_dim/2]; mask: [T, T] additive causal mask.
  // Writes the attention probabilities to *attention_out and the attention inputs to *inputs_out
  // when they are not null.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                        const torch::Tensor& mask, torch::Tensor* attention_out,
                        AttentionInputs* inputs_out);

  // The residual branch alone, block(x) - x = attention + ffn, computed without the cancellation
  // of subtracting x.
  torch::Tensor residual(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                         const torch::Tensor& mask);
  // forward() with every linear layer's input kept (same arithmetic).
  BlockTrace trace(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                   const torch::Tensor& mask);
  // The two residual branches on their (already normalised) inputs: attn_output(attention(h)) and
  // ffn_down(swiglu(gate, up)(h)).
  torch::Tensor attention_branch(const torch::Tensor& h, const torch::Tensor& cos,
                                 const torch::Tensor& sin, const torch::Tensor& mask);
  torch::Tensor ffn_branch(const torch::Tensor& h);
  torch::Tensor ffn_hidden(const torch::Tensor& h);  // silu(gate(h)) * up(h): ffn_down's input
  // The merged attention heads on normalised h: attn_output's input [B, T, n_heads * head_dim].
  torch::Tensor attention_context(const torch::Tensor& h, const torch::Tensor& cos,
                                  const torch::Tensor& sin, const torch::Tensor& mask) {
    return attention_context(h, cos, sin, mask, nullptr, nullptr);
  }

  // The linear layers by GGUF name ("attn_q", ..., "ffn_down"), in the order they compute.
  std::vector<std::pair<std::string, torch::nn::Linear*>> linears();

  RMSNorm attn_norm{nullptr}, ffn_norm{nullptr};
  torch::nn::Linear attn_q{nullptr}, attn_k{nullptr}, attn_v{nullptr}, attn_output{nullptr};
  torch::nn::Linear ffn_gate{nullptr}, ffn_up{nullptr}, ffn_down{nullptr};

 private:
  // The merged heads [B, T, n_heads * head_dim], before attn_output.
  torch::Tensor attention_context(const torch::Tensor& h, const torch::Tensor& cos,
                                  const torch::Tensor& sin, const torch::Tensor& mask,
                                  torch::Tensor* attention_out, AttentionInputs* inputs_out);
  // The heads as split_attention_heads lays them out -> ForwardOutput's per-position layout.
  AttentionInputs per_position_inputs(const AttentionHeads& heads, int64_t batch, int64_t length,
                                      double q_scale) const;
  int64_t n_heads_, n_kv_heads_, head_dim_;
};
TORCH_MODULE(LlamaBlock);

class LlamaModelImpl : public torch::nn::Module {
 public:
  // The config must be validated and have vocab_size > 0.
  explicit LlamaModelImpl(const LlamaConfig& config);

  // tokens: [B, T] int64 with T <= max_seq_len.
  ForwardOutput forward(const torch::Tensor& tokens, const ForwardOptions& options = {});

  const LlamaConfig& config() const { return config_; }

  // Deletes block `index` for good; the blocks after it move up one (blk.N names follow) and keep
  // their parameter tensors, so an optimizer can carry their state over (AdamW::rebind).
  void remove_block(int index);

  // What forward() hands every block for sequences of `length`: RoPE tables [length, head_dim/2]
  // and the additive causal mask [length, length].
  struct BlockContext {
    torch::Tensor cos, sin, mask;
  };
  BlockContext block_context(int64_t length, const torch::Device& device);

  torch::nn::Embedding token_embd{nullptr};
  torch::nn::ModuleList blk{nullptr};
  RMSNorm output_norm{nullptr};
  torch::nn::Linear output{nullptr};  // absent (null) when the embeddings are tied

 private:
  void initialize_weights();
  const torch::Tensor& causal_mask(int64_t length, const torch::Device& device);

  LlamaConfig config_;
  torch::Tensor rope_cos_, rope_sin_;  // [max_seq_len, head_dim/2]
  torch::Tensor mask_;                 // [T, T] cache for the last length used
};
TORCH_MODULE(LlamaModel);

}  // namespace edgedistill::model
