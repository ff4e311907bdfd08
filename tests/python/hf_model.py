# Independent writer and reference forward pass for Hugging Face model folders (tests/test_import.cpp).
#
#   hf_model.py write DIR ARCH SEED [key=value ...]
#       Writes a random-weight model folder the way transformers lays one out: config.json,
#       model.safetensors (or shards=N: model-0000i-of-0000N.safetensors with
#       model.safetensors.index.json), tokenizer.json (a byte-level BPE vocabulary) and
#       tokenizer_config.json. ARCH is llama, qwen2 or mistral. Options (defaults below in DEFAULTS):
#       dim, layers, heads, kv_heads, ffn, vocab, tokens (tokenizer size <= vocab), dtype
#       (f32|f16|bf16), tied (0|1), rope (none|linear|llama3), factor, theta, eps, shards, std,
#       inv_freq (1: also store rotary_emb.inv_freq buffers, as older checkpoints do), embed_std
#       (the embedding's standard deviation; 1 makes small tied models' logits far from uniform).
#   hf_model.py forward DIR ID,ID,...
#       Prints {"logits": [[...], ...]} (float32 values as float64 JSON) for the token ids, computed
#       by a plain PyTorch-eager forward pass of the Hugging Face layout: rotate_half RoPE on
#       (i, i + D/2) pairs, repeat_kv GQA, q/k/v biases when present, RMSNorm, SwiGLU.
#
# Nothing here imports edgedistill: safetensors is written and read with json + struct + numpy, as
# the format documents it (8-byte little-endian header length, JSON header, raw bytes).
import json
import math
import os
import struct
import sys

import numpy as np
import torch

from bpe_reference import bytes_to_unicode  # GPT-2's byte -> printable character table

DEFAULTS = dict(dim=64, layers=2, heads=4, kv_heads=2, ffn=96, vocab=320, tokens=0, dtype="f32",
                tied=0, rope="none", factor=4.0, theta=10000.0, eps=1e-5, shards=1, std=0.35,
                inv_freq=0, context=256, embed_std=1.0)

ARCHITECTURES = {"llama": ("LlamaForCausalLM", "llama"), "qwen2": ("Qwen2ForCausalLM", "qwen2"),
                 "mistral": ("MistralForCausalLM", "mistral")}


def tokenizer_json(size):
    """A byte-level BPE vocabulary of `size` entries: the 256 byte characters, merges of pairs of
    lowercase letters (with and without the GPT-2 space mark), then merges of pairs of those
    two-letter tokens (enough for real-sized vocabularies), and <|endoftext|> last."""
    byte_char = bytes_to_unicode()
    vocab = {byte_char[b]: b for b in range(256)}
    merges = []
    letters = "etaoinshrdlucmfwypvbgkjqxz"
    space = byte_char[ord(" ")]
    pairs = [a + b for a in letters for b in letters]

    def candidates():
        for a in letters:
            yield space, a
        for a in letters:
            for b in letters:
                yield a, b
        for left in pairs:
            for right in pairs:
                yield left, right

    for left, right in candidates():
        if len(vocab) >= size - 1:
            break
        vocab[left + right] = len(vocab)
        merges.append(left + " " + right)
    assert len(vocab) == size - 1, "tokens must be between 257 and 457,935"
    eos = {"id": size - 1, "content": "<|endoftext|>", "single_word": False, "lstrip": False,
           "rstrip": False, "normalized": False, "special": True}
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": [eos],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                          "use_regex": True},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
                           "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": "", "end_of_word_suffix": "", "fuse_unk": False,
                  "byte_fallback": False, "vocab": vocab, "merges": merges},
    }


def to_bf16_bits(values):
    """float32 -> bfloat16 bit patterns, round to nearest even."""
    bits = values.astype(np.float32).view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.astype(np.uint16)


def encode_tensor(values, dtype):
    if dtype == "f32":
        return "F32", values.astype("<f4").tobytes()
    if dtype == "f16":
        return "F16", values.astype("<f2").tobytes()
    return "BF16", to_bf16_bits(values).astype("<u2").tobytes()


def write_safetensors(path, tensors):
    """tensors: [(name, dtype string, shape, bytes)] in file order."""
    header, offset = {}, 0
    for name, dtype, shape, data in tensors:
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    header["__metadata__"] = {"format": "pt"}
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for _, _, _, data in tensors:
            f.write(data)


def read_safetensors(path):
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        raw = blob[base + begin:base + end]
        if info["dtype"] == "F32":
            values = np.frombuffer(raw, "<f4")
        elif info["dtype"] == "F16":
            values = np.frombuffer(raw, "<f2").astype(np.float32)
        elif info["dtype"] == "BF16":
            values = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            raise ValueError(name + ": " + info["dtype"])
        out[name] = torch.from_numpy(values.astype(np.float32).reshape(info["shape"]).copy())
    return out


def write(folder, arch, seed, options):
    o = dict(DEFAULTS)
    for key, value in options.items():
        o[key] = type(DEFAULTS[key])(float(value)) if not isinstance(DEFAULTS[key], str) else value
    rng = np.random.default_rng(seed)
    dim, heads, kv, ffn, vocab = o["dim"], o["heads"], o["kv_heads"], o["ffn"], o["vocab"]
    head_dim = dim // heads
    tokens = o["tokens"] or vocab
    std = o["std"]

    def matrix(rows, cols):
        return rng.normal(0.0, std, size=(rows, cols)).astype(np.float32)

    tensors = [("model.embed_tokens.weight", rng.normal(0.0, o["embed_std"], size=(vocab, dim)).astype(np.float32))]
    for i in range(o["layers"]):
        p = "model.layers.%d." % i
        tensors += [
            (p + "input_layernorm.weight", (1.0 + 0.2 * rng.normal(size=dim)).astype(np.float32)),
            (p + "self_attn.q_proj.weight", matrix(heads * head_dim, dim)),
            (p + "self_attn.k_proj.weight", matrix(kv * head_dim, dim)),
            (p + "self_attn.v_proj.weight", matrix(kv * head_dim, dim)),
            (p + "self_attn.o_proj.weight", matrix(dim, heads * head_dim)),
            (p + "post_attention_layernorm.weight", (1.0 + 0.2 * rng.normal(size=dim)).astype(np.float32)),
            (p + "mlp.gate_proj.weight", matrix(ffn, dim)),
            (p + "mlp.up_proj.weight", matrix(ffn, dim)),
            (p + "mlp.down_proj.weight", matrix(dim, ffn)),
        ]
        if arch == "qwen2":
            tensors += [(p + "self_attn.%s_proj.bias" % name, rng.normal(0.0, 0.5, size=rows).astype(np.float32))
                        for name, rows in (("q", heads * head_dim), ("k", kv * head_dim), ("v", kv * head_dim))]
        if o["inv_freq"]:
            tensors.append((p + "self_attn.rotary_emb.inv_freq",
                            (1.0 / o["theta"] ** (np.arange(0, head_dim, 2) / head_dim)).astype(np.float32)))
    tensors.append(("model.norm.weight", (1.0 + 0.2 * rng.normal(size=dim)).astype(np.float32)))
    if not o["tied"]:
        tensors.append(("lm_head.weight", matrix(vocab, dim)))

    architecture, model_type = ARCHITECTURES[arch]
    config = {
        "architectures": [architecture], "model_type": model_type, "hidden_size": dim,
        "intermediate_size": ffn, "num_hidden_layers": o["layers"], "num_attention_heads": heads,
        "num_key_value_heads": kv, "vocab_size": vocab, "max_position_embeddings": o["context"],
        "rms_norm_eps": o["eps"], "rope_theta": o["theta"], "tie_word_embeddings": bool(o["tied"]),
        "hidden_act": "silu", "torch_dtype": {"f32": "float32", "f16": "float16", "bf16": "bfloat16"}[o["dtype"]],
        "bos_token_id": tokens - 1, "eos_token_id": tokens - 1,
    }
    if arch == "mistral":
        config["sliding_window"] = None
    if arch == "qwen2":
        config["use_sliding_window"] = False
    if o["rope"] == "linear":
        config["rope_scaling"] = {"type": "linear", "factor": o["factor"]}
    elif o["rope"] == "llama3":
        config["rope_scaling"] = {"rope_type": "llama3", "factor": o["factor"], "low_freq_factor": 1.0,
                                  "high_freq_factor": 4.0, "original_max_position_embeddings": 32}
    else:
        config["rope_scaling"] = None

    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    with open(os.path.join(folder, "tokenizer.json"), "w") as f:
        json.dump(tokenizer_json(tokens), f)
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump({"eos_token": "<|endoftext|>", "bos_token": None, "add_bos_token": False,
                   "model_max_length": o["context"]}, f)

    encoded = [(name, *encode_tensor(values, o["dtype"]), values.shape) for name, values in tensors]
    encoded = [(name, dtype, shape, data) for name, dtype, data, shape in encoded]
    shards = int(o["shards"])
    if shards == 1:
        write_safetensors(os.path.join(folder, "model.safetensors"), encoded)
        return
    weight_map, per = {}, math.ceil(len(encoded) / shards)
    for s in range(shards):
        name = "model-%05d-of-%05d.safetensors" % (s + 1, shards)
        part = encoded[s * per:(s + 1) * per]
        write_safetensors(os.path.join(folder, name), part)
        for tensor in part:
            weight_map[tensor[0]] = name
    total = sum(len(t[3]) for t in encoded)
    with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)


def load_weights(folder):
    index = os.path.join(folder, "model.safetensors.index.json")
    if not os.path.exists(index):
        return read_safetensors(os.path.join(folder, "model.safetensors"))
    with open(index) as f:
        files = sorted(set(json.load(f)["weight_map"].values()))
    weights = {}
    for name in files:
        weights.update(read_safetensors(os.path.join(folder, name)))
    return weights


def inverse_frequencies(config, head_dim):
    theta = config["rope_theta"]
    inv = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    scaling = config.get("rope_scaling") or {}
    kind = scaling.get("rope_type", scaling.get("type"))
    if kind == "linear":
        return inv / scaling["factor"]
    if kind == "llama3":
        factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
        old = scaling["original_max_position_embeddings"]
        wavelen = 2 * math.pi / inv
        scaled = torch.where(wavelen > old / low, inv / factor, inv)
        smooth = (old / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = (wavelen >= old / high) & (wavelen <= old / low)
        return torch.where(medium, smoothed, scaled)
    return inv


def rms_norm(x, weight, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def forward(folder, ids):
    with open(os.path.join(folder, "config.json")) as f:
        config = json.load(f)
    w = load_weights(folder)
    dim, heads, kv = config["hidden_size"], config["num_attention_heads"], config["num_key_value_heads"]
    head_dim = config.get("head_dim") or dim // heads
    eps = config["rms_norm_eps"]
    t = len(ids)
    angles = torch.outer(torch.arange(t, dtype=torch.float64), inverse_frequencies(config, head_dim))
    emb = torch.cat((angles, angles), dim=-1)
    cos, sin = emb.cos().float(), emb.sin().float()
    mask = torch.full((t, t), float("-inf")).triu(1)
    x = w["model.embed_tokens.weight"][torch.tensor(ids)]
    for i in range(config["num_hidden_layers"]):
        p = "model.layers.%d." % i
        h = rms_norm(x, w[p + "input_layernorm.weight"], eps)

        def project(name, n):
            y = h @ w[p + "self_attn.%s_proj.weight" % name].T
            if p + "self_attn.%s_proj.bias" % name in w:
                y = y + w[p + "self_attn.%s_proj.bias" % name]
            return y.view(t, n, head_dim).transpose(0, 1)  # [n, T, D]

        q, k, v = project("q", heads), project("k", kv), project("v", kv)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(heads // kv, dim=0)
        v = v.repeat_interleave(heads // kv, dim=0)
        scores = q @ k.transpose(1, 2) / math.sqrt(head_dim) + mask
        context = (torch.softmax(scores, dim=-1) @ v).transpose(0, 1).reshape(t, heads * head_dim)
        x = x + context @ w[p + "self_attn.o_proj.weight"].T
        h = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        gate = h @ w[p + "mlp.gate_proj.weight"].T
        up = h @ w[p + "mlp.up_proj.weight"].T
        x = x + (torch.nn.functional.silu(gate) * up) @ w[p + "mlp.down_proj.weight"].T
    x = rms_norm(x, w["model.norm.weight"], eps)
    head = w.get("lm_head.weight", w["model.embed_tokens.weight"])
    return x @ head.T


def main():
    torch.set_num_threads(1)
    if sys.argv[1] == "write":
        options = dict(a.split("=", 1) for a in sys.argv[5:])
        write(sys.argv[2], sys.argv[3], int(sys.argv[4]), options)
    elif sys.argv[1] == "forward":
        ids = [int(i) for i in sys.argv[3].split(",")]
        with torch.no_grad():
            logits = forward(sys.argv[2], ids)
        print(json.dumps({"logits": logits.double().tolist()}))
    else:
        raise SystemExit("usage: hf_model.py write DIR ARCH SEED [k=v ...] | forward DIR IDS")


if __name__ == "__main__":
    main()
