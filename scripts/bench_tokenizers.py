#!/usr/bin/env python3
"""Tokenizer encoding speed against peers, on the same text, in the same run, one thread.

Called by scripts/bench_tokenizers.sh, which builds edgedistill, installs tokenizers.js (Hugging
Face's JavaScript implementation of tokenizer.json) into the cache and passes its directory.

  bench_tokenizers.py WORK_DIR EDGEDISTILL TOKENIZERS_JS_DIR ROUNDS

Steps (each cached in WORK_DIR):
  1. The text: the King James Bible from the `bible` program (one verse per line, ~4.3 MB of
     English), and a training corpus: the Bible plus the WordNet glosses.
  2. A byte-level BPE vocabulary of 50,000 tokens (256 bytes + 49,744 merges) trained on the
     corpus split by the GPT-2 expression (a plain pair-counting trainer with a heap), written as
     tokenizer.json twice: GPT-2's layout (ByteLevel with its regex) and Llama 3's (Split with the
     Llama 3 expression, then ByteLevel, ignore_merges).
  3. SentencePiece models trained by Python's sentencepiece on the corpus: BPE 32,000 with the
     settings `edgedistill data` uses (identity normalization, byte fallback), and unigram 32,000
     with the library's defaults (nmt_nfkc).
  4. Rounds, interleaved: edgedistill bench --tokenizer (one thread, every line encoded), the peer
     on the same lines (sentencepiece's encode for the SentencePiece models, tokenizers.js for
     tokenizer.json), and the ids of both compared line by line.
Writes WORK_DIR/results.json and prints the Markdown table (the shell script puts it into
docs/results/tokenizers.md).
"""
import heapq
import json
import os
import statistics
import subprocess
import sys
import time
from collections import defaultdict

import regex
import sentencepiece as spm

# The tests' reference module: GPT-2's byte alphabet and the split expressions.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "python"))
from bpe_reference import BYTE_CHAR, GPT2_RE, LLAMA3_RE  # noqa: E402

BPE_VOCAB = 50000
SPM_VOCAB = 32000


def log(*args):
    print("bench_tokenizers:", *args, file=sys.stderr, flush=True)


def texts(work):
    kjv = os.path.join(work, "kjv.txt")
    if not os.path.exists(kjv):
        out = subprocess.run(["bible", "-l", "4000", "gen1:1-rev22:21"], check=True,
                             capture_output=True, text=True).stdout
        verses = []
        for line in out.splitlines():
            # "  1 In the beginning ..." -> the verse text; "Genesis 1" headers and blank lines
            # are skipped.
            parts = line.strip().split(" ", 1)
            if len(parts) == 2 and parts[0].isdigit() and line.startswith(" "):
                verses.append(parts[1].strip())
        with open(kjv, "w", encoding="utf-8") as f:
            f.write("\n".join(verses) + "\n")
    corpus = os.path.join(work, "corpus.txt")
    if not os.path.exists(corpus):
        glosses = []
        for part in ("noun", "verb", "adj", "adv"):
            with open(f"/usr/share/wordnet/data.{part}", encoding="latin-1") as f:
                for line in f:
                    if line.startswith("  ") or "|" not in line:
                        continue
                    glosses.append(line.split("|", 1)[1].strip())
        with open(kjv, encoding="utf-8") as f:
            bible = f.read()
        with open(corpus, "w", encoding="utf-8") as f:
            f.write(bible + "\n".join(glosses) + "\n")
    return kjv, corpus


def train_bpe(corpus_file, merges_wanted):
    """Merges the most frequent adjacent pair (ties: the smaller pair) until `merges_wanted`."""
    counts = defaultdict(int)
    with open(corpus_file, encoding="utf-8") as f:
        for line in f:
            for word in regex.findall(GPT2_RE, line.rstrip("\n")):
                counts["".join(BYTE_CHAR[b] for b in word.encode("utf-8"))] += 1
    words = [list(w) for w in counts]
    freq = list(counts.values())
    pairs = defaultdict(int)
    where = defaultdict(set)
    for i, w in enumerate(words):
        for p in zip(w, w[1:]):
            pairs[p] += freq[i]
            where[p].add(i)
    heap = [(-c, p) for p, c in pairs.items()]
    heapq.heapify(heap)
    merges = []
    while len(merges) < merges_wanted and heap:
        negative, pair = heapq.heappop(heap)
        if pairs.get(pair, 0) != -negative or negative == 0:
            continue
        merges.append(pair)
        joined = pair[0] + pair[1]
        touched = set()
        for i in list(where[pair]):
            w, c = words[i], freq[i]
            if len(w) < 2:
                continue
            for p in zip(w, w[1:]):
                pairs[p] -= c
                touched.add(p)
            merged, k = [], 0
            while k < len(w):
                if k + 1 < len(w) and w[k] == pair[0] and w[k + 1] == pair[1]:
                    merged.append(joined)
                    k += 2
                else:
                    merged.append(w[k])
                    k += 1
            words[i] = merged
            for p in zip(merged, merged[1:]):
                pairs[p] += c
                where[p].add(i)
                touched.add(p)
        for p in touched:
            if pairs[p] > 0:
                heapq.heappush(heap, (-pairs[p], p))
        if len(merges) % 5000 == 0:
            log(f"  {len(merges)} merges")
    return merges


def write_tokenizer_json(path, merges, layout):
    vocab = {}
    for s in [BYTE_CHAR[b] for b in range(256)] + [a + b for a, b in merges]:
        vocab.setdefault(s, len(vocab))
    end = len(vocab)
    if layout == "gpt2":
        pre = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    else:
        pre = {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": LLAMA3_RE}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
    data = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": end, "content": "<|endoftext|>", "single_word": False,
                          "lstrip": False, "rstrip": False, "normalized": False, "special": True}],
        "normalizer": None, "pre_tokenizer": pre,
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
                           "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None, "fuse_unk": False,
                  "byte_fallback": False, "ignore_merges": layout == "llama3", "vocab": vocab,
                  "merges": [a + " " + b for a, b in merges]},
    }
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False)


def ours(edgedistill, tokenizer, text_file, rounds, ids_file):
    out = subprocess.run([edgedistill, "-q", "bench", "--tokenizer", tokenizer, "--text-file",
                          text_file, "-r", str(rounds), "--json", "--ids-out", ids_file],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def sentencepiece_peer(model, lines, rounds, ids_file):
    sp = spm.SentencePieceProcessor(model_file=model)
    seconds = []
    for _ in range(rounds):
        start = time.perf_counter()
        ids = sp.encode(lines, num_threads=1)
        seconds.append(time.perf_counter() - start)
    with open(ids_file, "w") as f:
        for row in ids:
            f.write(" ".join(map(str, row)) + "\n")
    return seconds


def tokenizers_js_peer(js_dir, tokenizer, text_file, rounds, ids_file):
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_tokenizers_js.mjs")
    out = subprocess.run(["node", script, tokenizer, text_file, str(rounds), ids_file],
                         check=True, capture_output=True, text=True,
                         env=dict(os.environ, TOKENIZERS_JS_DIR=js_dir)).stdout
    return json.loads(out)["seconds"]


def agreement(a_file, b_file):
    with open(a_file) as a, open(b_file) as b:
        rows_a, rows_b = a.read().splitlines(), b.read().splitlines()
    same = sum(1 for x, y in zip(rows_a, rows_b) if x == y)
    first = next((i for i, (x, y) in enumerate(zip(rows_a, rows_b)) if x != y), None)
    return {"lines": len(rows_a), "same": same, "first_difference": first,
            "all": same == len(rows_a) == len(rows_b)}


def main():
    work, edgedistill, js_dir, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    os.makedirs(work, exist_ok=True)
    kjv, corpus = texts(work)
    with open(kjv, encoding="utf-8") as f:
        lines = f.read().rstrip("\n").split("\n")  # the lines edgedistill bench encodes
    size = os.path.getsize(kjv)

    gpt2_json = os.path.join(work, "bpe50k-gpt2.tokenizer.json")
    llama3_json = os.path.join(work, "bpe50k-llama3.tokenizer.json")
    if not os.path.exists(llama3_json):
        log(f"training a byte-level BPE vocabulary of {BPE_VOCAB} tokens on {corpus}")
        merges = train_bpe(corpus, BPE_VOCAB - 256)
        write_tokenizer_json(gpt2_json, merges, "gpt2")
        write_tokenizer_json(llama3_json, merges, "llama3")
    models = {}
    for kind, extra in (("bpe", {"normalization_rule_name": "identity",
                                 "remove_extra_whitespaces": False, "byte_fallback": True,
                                 "split_digits": True}),
                        ("unigram", {})):
        prefix = os.path.join(work, f"spm-{kind}-32k")
        if not os.path.exists(prefix + ".model"):
            log(f"training SentencePiece {kind} {SPM_VOCAB} on {corpus}")
            spm.SentencePieceTrainer.train(input=corpus, model_prefix=prefix, model_type=kind,
                                           vocab_size=SPM_VOCAB, num_threads=2, minloglevel=2,
                                           **extra)
        models[kind] = prefix + ".model"

    rows = []
    cases = [
        ("byte-level BPE 50k, GPT-2 split (tokenizer.json)", gpt2_json, "tokenizers.js"),
        ("byte-level BPE 50k, Llama 3 split (tokenizer.json)", llama3_json, "tokenizers.js"),
        ("SentencePiece BPE 32k (tokenizer.model)", models["bpe"], "sentencepiece"),
        ("SentencePiece unigram 32k, nmt_nfkc (tokenizer.model)", models["unigram"], "sentencepiece"),
    ]
    for name, path, peer in cases:
        log(name)
        ours_ids = os.path.join(work, "ours.ids")
        peer_ids = os.path.join(work, "peer.ids")
        ours_s, peer_s, tokens, description = [], [], 0, ""
        for _ in range(2):  # interleaved passes
            report = ours(edgedistill, path, kjv, rounds, ours_ids)
            ours_s += report["seconds"]
            tokens, description = report["tokens"], report["description"]
            if peer == "sentencepiece":
                peer_s += sentencepiece_peer(path, lines, rounds, peer_ids)
            else:
                peer_s += tokenizers_js_peer(js_dir, path, kjv, rounds, peer_ids)
        same = agreement(ours_ids, peer_ids)
        ours_mb = size / 1e6 / statistics.median(ours_s)
        peer_mb = size / 1e6 / statistics.median(peer_s)
        rows.append({"tokenizer": name, "file": os.path.basename(path), "description": description,
                     "bytes": size, "lines": len(lines), "tokens": tokens,
                     "ours_seconds": ours_s, "peer": peer, "peer_seconds": peer_s,
                     "ours_mb_per_s": ours_mb, "peer_mb_per_s": peer_mb,
                     "ratio": ours_mb / peer_mb, "ids": same})
    with open(os.path.join(work, "results.json"), "w") as f:
        json.dump({"rounds": rounds, "rows": rows}, f, indent=2)

    print("| tokenizer | tokens | edgedistill MB/s | peer | peer MB/s | ratio | ids identical |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        ids = (f"{r['ids']['same']:,} / {r['ids']['lines']:,} lines" + ("" if r["ids"]["all"] else
               f" (first difference: line {r['ids']['first_difference']})"))
        print(f"| {r['tokenizer']} | {r['tokens']:,} | {r['ours_mb_per_s']:.1f} | {r['peer']} | "
              f"{r['peer_mb_per_s']:.1f} | {r['ratio']:.2f}x | {ids} |")


if __name__ == "__main__":
    main()
