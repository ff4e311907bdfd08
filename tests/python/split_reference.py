# For each argument (hex bytes of a UTF-8 text, "-" for the empty one) prints, as JSON, the words
# Python's `regex` module finds with the GPT-2, Llama 3 and Qwen2 split expressions (the
# expressions as tokenizer.json files spell them) and with the Digits pre-tokenizer (each \p{N}
# character alone): the independent expectation for tok::split_words and tok::split_digits.
import json
import sys

import regex

PATTERNS = {
    "gpt2": r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+",
    "llama3": (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
               r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"),
    "qwen2": (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
              r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"),
}

texts = ["" if a == "-" else bytes.fromhex(a).decode("utf-8") for a in sys.argv[1:]]
out = {}
for name, pattern in PATTERNS.items():
    rows = []
    for text in texts:
        words = regex.findall(pattern, text)
        assert "".join(words) == text, (name, text)
        rows.append([w.encode("utf-8").hex() for w in words])
    out[name] = rows
out["digits"] = [[w.encode("utf-8").hex() for w in regex.split(r"(\p{N})", t) if w] for t in texts]
print(json.dumps(out))
