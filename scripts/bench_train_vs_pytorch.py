#!/usr/bin/python3
"""The same llama training step as `edgedistill bench --train-config`, in PyTorch eager.

Reads the merged recipe (the JSON `edgedistill config` prints) and measures the median step time of
forward, cross entropy, backward, gradient clipping and AdamW on random tokens. The model is the
usual eager formulation: RMSNorm, RoPE on adjacent pairs, grouped-query attention with the kv heads
repeated, SwiGLU, tied or untied head. Debian's python3-torch is the same LibTorch 1.13 build the
C++ code links, so the comparison isolates the two front ends.
"""
import argparse
import json
import math
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_tables(length, head_dim, base):
    i = torch.arange(head_dim // 2, dtype=torch.float64)
    angles = torch.outer(torch.arange(length, dtype=torch.float64), base ** (-2.0 * i / head_dim))
    return angles.cos().float(), angles.sin().float()


def apply_rope(x, cos, sin):  # x: [B, T, H, D], pairs (2i, 2i+1)
    b, t, h, d = x.shape
    pairs = x.view(b, t, h, d // 2, 2)
    even, odd = pairs[..., 0], pairs[..., 1]
    c, s = cos.view(1, t, 1, d // 2), sin.view(1, t, 1, d // 2)
    return torch.stack((even * c - odd * s, even * s + odd * c), -1).view(b, t, h, d)


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.heads, self.kv_heads = c["n_heads"], c["n_kv_heads"]
        self.head_dim = c["dim"] // c["n_heads"]
        dim, kv = c["dim"], self.kv_heads * self.head_dim
        self.attn_norm = RMSNorm(dim, c["norm_eps"])
        self.attn_q = nn.Linear(dim, dim, bias=False)
        self.attn_k = nn.Linear(dim, kv, bias=False)
        self.attn_v = nn.Linear(dim, kv, bias=False)
        self.attn_output = nn.Linear(dim, dim, bias=False)
        self.ffn_norm = RMSNorm(dim, c["norm_eps"])
        self.ffn_gate = nn.Linear(dim, c["ffn_dim"], bias=False)
        self.ffn_up = nn.Linear(dim, c["ffn_dim"], bias=False)
        self.ffn_down = nn.Linear(c["ffn_dim"], dim, bias=False)

    def forward(self, x, cos, sin, mask):
        b, t, _ = x.shape
        h = self.attn_norm(x)
        q = apply_rope(self.attn_q(h).view(b, t, self.heads, self.head_dim), cos, sin).transpose(1, 2)
        k = apply_rope(self.attn_k(h).view(b, t, self.kv_heads, self.head_dim), cos, sin).transpose(1, 2)
        v = self.attn_v(h).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        group = self.heads // self.kv_heads
        k, v = k.repeat_interleave(group, 1), v.repeat_interleave(group, 1)
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim) + mask
        context = (torch.softmax(scores, -1) @ v).transpose(1, 2).reshape(b, t, -1)
        x = x + self.attn_output(context)
        h = self.ffn_norm(x)
        return x + self.ffn_down(F.silu(self.ffn_gate(h)) * self.ffn_up(h))


class Llama(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.token_embd = nn.Embedding(c["vocab_size"], c["dim"])
        self.blk = nn.ModuleList(Block(c) for _ in range(c["n_layers"]))
        self.output_norm = RMSNorm(c["dim"], c["norm_eps"])
        self.output = None if c["tie_embeddings"] else nn.Linear(c["dim"], c["vocab_size"], bias=False)
        cos, sin = rope_tables(c["max_seq_len"], c["dim"] // c["n_heads"], c["rope_theta"])
        self.register_buffer("rope_cos", cos)
        self.register_buffer("rope_sin", sin)

    def forward(self, tokens):
        t = tokens.shape[1]
        mask = torch.full((t, t), float("-inf")).triu(1)
        x = self.token_embd(tokens)
        for block in self.blk:
            x = block(x, self.rope_cos[:t], self.rope_sin[:t], mask)
        x = self.output_norm(x)
        return self.output(x) if self.output is not None else F.linear(x, self.token_embd.weight)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("recipe", help="merged recipe JSON (edgedistill config --config FILE)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--json", help="write the result here")
    args = parser.parse_args()
    recipe = json.load(open(args.recipe))
    model_config, train = recipe["model"], recipe["train"]
    if model_config["vocab_size"] == 0:
        tokenizer = recipe["data"]["tokenizer"]
        model_config["vocab_size"] = 259 if tokenizer["kind"] == "byte" else tokenizer["vocab_size"]
    torch.set_num_threads(args.threads)
    torch.manual_seed(recipe["seed"])
    net = Llama(model_config)
    decay = [p for p in net.parameters() if p.dim() >= 2]
    no_decay = [p for p in net.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": train["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}],
        lr=train["lr"], betas=(train["beta1"], train["beta2"]), eps=train["eps"])
    batch, length = train["batch_size"], train["seq_len"]
    tokens = torch.randint(model_config["vocab_size"], (batch, length + 1))
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    times = []
    for step in range(args.warmup + args.steps):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=False)
        logits = net(inputs)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), train["grad_clip"])
        optimizer.step()
        loss.item()
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
    step_time = statistics.median(times)
    result = {"step_seconds_median": step_time, "tokens_per_s": batch * length / step_time,
              "threads": args.threads, "torch_version": torch.__version__}
    print(f"pytorch eager: {step_time * 1e3:.1f} ms per step (median of {args.steps}), "
          f"{result['tokens_per_s']:.0f} tokens/s, {args.threads} threads, torch {torch.__version__}")
    if args.json:
        json.dump(result, open(args.json, "w"), indent=2)


if __name__ == "__main__":
    sys.exit(main())
