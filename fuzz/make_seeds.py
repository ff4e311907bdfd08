#!/usr/bin/env python3
"""Seed corpora for the fuzz targets, one directory per target under OUT (argv[1]):

  fuzz_gguf           a GGUF file with tensors (the imatrix writer of tests/python), a GGUF with a
                      gpt2 vocabulary (the BPE reference's writer), and small GGUF files under
                      runs/ (our own exports) when there are any
  fuzz_safetensors    safetensors written by tests/python/hf_model.py's writer (F32, F16, BF16,
                      a 0-d scalar), and small weights.safetensors under runs/
  fuzz_tokenizer_json hf_model.py's byte-level BPE tokenizer.json, with and without a
                      tokenizer_config.json after a NUL byte
  fuzz_sentencepiece  small models trained by Python's sentencepiece (BPE and unigram)
  fuzz_config         the target's own recipe shape with --set lines, and the shipped configs/

Every seed is kept under 64 KB so that the fuzzer's inputs stay small.
"""
import glob
import json
import os
import struct
import sys
import tempfile

here = os.path.dirname(os.path.abspath(__file__))
repo = os.path.dirname(here)
sys.path.insert(0, os.path.join(repo, "tests", "python"))

import numpy as np  # noqa: E402

import bpe_reference  # noqa: E402
import hf_model  # noqa: E402
import imatrix_reference  # noqa: E402

LIMIT = 64 << 10


def put(out, target, name, data):
    if len(data) > LIMIT:
        return
    directory = os.path.join(out, target)
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, name), "wb") as f:
        f.write(data)


def via_file(write):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "seed")
        write(path)
        return open(path, "rb").read()


def gguf_seeds(out):
    spec = {"datasets": ["kjv"], "chunk_count": 4, "chunk_size": 128,
            "entries": {"blk.0.attn_q.weight": {"sums": [1.0, 2.0, 3.0, 4.0], "counts": [512.0]},
                        "blk.0.ffn_gate_exps.weight": {"sums": list(np.arange(8, dtype=np.float32)),
                                                       "counts": [3.0, 5.0]}}}
    put(out, "fuzz_gguf", "imatrix.gguf", via_file(lambda p: imatrix_reference.write_gguf(p, spec)))
    tokens = ["<|endoftext|>"] + [chr(c) for c in range(ord("a"), ord("z") + 1)] + ["Ġ", "Ġt", "he", "Ġthe"]
    kv = {"general.architecture": ("str", "llama"),
          "tokenizer.ggml.model": ("str", "gpt2"),
          "tokenizer.ggml.pre": ("str", "gpt-2"),
          "tokenizer.ggml.tokens": ("strs", tokens),
          "tokenizer.ggml.token_type": ("i32s", [3] + [1] * (len(tokens) - 1)),
          "tokenizer.ggml.merges": ("strs", ["Ġ t", "h e", "Ġt he"]),
          "tokenizer.ggml.eos_token_id": ("u32", 0)}
    put(out, "fuzz_gguf", "vocab-gpt2.gguf", via_file(lambda p: bpe_reference.write_gguf(p, kv)))
    for i, path in enumerate(sorted(glob.glob(os.path.join(repo, "runs", "**", "*.gguf"), recursive=True))):
        if os.path.getsize(path) <= LIMIT:
            put(out, "fuzz_gguf", f"run-{i}.gguf", open(path, "rb").read())


def safetensors_seeds(out):
    rng = np.random.default_rng(7)
    tensors = [("model.embed_tokens.weight", "F32", [4, 8], rng.standard_normal(32).astype(np.float32).tobytes()),
               ("model.norm.weight", "F16", [8], rng.standard_normal(8).astype(np.float16).tobytes()),
               ("lm_head.weight", "BF16", [2, 8],
                hf_model.to_bf16_bits(rng.standard_normal(16).astype(np.float32)).tobytes()),
               ("scalar", "F32", [], struct.pack("<f", 1.5))]
    put(out, "fuzz_safetensors", "mixed.safetensors",
        via_file(lambda p: hf_model.write_safetensors(p, tensors)))
    put(out, "fuzz_safetensors", "empty.safetensors", via_file(lambda p: hf_model.write_safetensors(p, [])))
    for i, path in enumerate(sorted(glob.glob(os.path.join(repo, "runs", "**", "*.safetensors"), recursive=True))):
        if os.path.getsize(path) <= LIMIT:
            put(out, "fuzz_safetensors", f"run-{i}.safetensors", open(path, "rb").read())


def tokenizer_json_seeds(out):
    tokenizer = json.dumps(hf_model.tokenizer_json(300)).encode()
    config = json.dumps({"add_bos_token": False, "eos_token": "<|endoftext|>"}).encode()
    put(out, "fuzz_tokenizer_json", "bpe.json", tokenizer)
    put(out, "fuzz_tokenizer_json", "bpe-with-config.json", tokenizer + b"\0" + config)


def sentencepiece_seeds(out):
    import sentencepiece as spm
    text = "\n".join(f"the cat sat on the mat number {i} and the dog ran {i * 7 % 13} times" for i in range(200))
    with tempfile.TemporaryDirectory() as tmp:
        corpus = os.path.join(tmp, "corpus.txt")
        open(corpus, "w").write(text)
        for kind, size in (("bpe", 320), ("unigram", 50)):
            prefix = os.path.join(tmp, kind)
            spm.SentencePieceTrainer.train(input=corpus, model_prefix=prefix, vocab_size=size, model_type=kind,
                                           byte_fallback=kind == "bpe", normalization_rule_name="identity",
                                           minloglevel=2)
            put(out, "fuzz_sentencepiece", f"{kind}.model", open(prefix + ".model", "rb").read())


def config_seeds(out):
    recipe = {"name": "seed", "seed": 3, "train": {"steps": 5, "batch_size": 2, "lr": 0.01, "flag": True},
              "sources": [{"kind": "text_file", "path": "a.txt", "weight": 2.0}, {"kind": "kjv"}]}
    put(out, "fuzz_config", "recipe.json", json.dumps(recipe).encode())
    put(out, "fuzz_config", "recipe-set.json", json.dumps(recipe).encode() + b"\0train.steps=7\n"
        b"sources[1].weight=0.5\nname=\"x y\"\ntrain.flag=false\n")
    for i, path in enumerate(sorted(glob.glob(os.path.join(repo, "configs", "**", "*.json"), recursive=True))):
        put(out, "fuzz_config", f"shipped-{i}.json", open(path, "rb").read())


def main():
    out = sys.argv[1]
    gguf_seeds(out)
    safetensors_seeds(out)
    tokenizer_json_seeds(out)
    sentencepiece_seeds(out)
    config_seeds(out)
    for target in sorted(os.listdir(out)):
        print(f"make_seeds: {target}: {len(os.listdir(os.path.join(out, target)))} seeds", file=sys.stderr)


if __name__ == "__main__":
    main()
