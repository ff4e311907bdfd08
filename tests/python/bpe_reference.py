# Independent writer and reference for the BPE tests (tests/test_tokenizer_bpe.cpp).
#
#   bpe_reference.py OUT_DIR
#
# Trains a small byte-level BPE vocabulary and a small character-level one (byte fallback, the
# Llama 2 layout) on a seeded multilingual corpus with a plain pair-counting trainer, writes
# tokenizer.json files for the families edgedistill reads (gpt2, llama3, qwen2, smollm, llama2),
# a GGUF file for some of them (with struct, as the format documents it), and the expected token
# ids of every test text under each family, computed the slow obvious way:
#   - added tokens cut out leftmost-longest (raw text first, normalized pieces after),
#   - the normalizer (unicodedata.normalize for NFC),
#   - the pre-tokenizer split by Python's `regex` module on the very expression in the file,
#   - BPE by repeatedly merging the adjacent pair of lowest rank (leftmost on ties), with
#     ignore_merges and byte fallback as the files say.
# Nothing here imports edgedistill. OUT_DIR receives <family>.tokenizer.json, <family>.gguf,
# texts.json (hex of each test text) and expected.json ({family: [[ids], ...]}).
import json
import os
import random
import struct
import sys
import unicodedata

import regex

GPT2_RE = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
             r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
            r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def bytes_to_unicode():
    """GPT-2's encoder.py byte -> printable character table."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) +
                 list(range(0xAE, 0x100)))
    chars = printable[:]
    n = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(printable, chars)}


BYTE_CHAR = bytes_to_unicode()


def spell(text):
    return "".join(BYTE_CHAR[b] for b in text.encode("utf-8"))


WORDS = ("the of and to in a is that for it as was with be by on not he I this are or his from at "
         "which but have an they you were her she there been one all we their has would when if "
         "so no what up out about who them do said into more time some could other can only new "
         "first its also after people like made between over did many before must through back "
         "years where much your way well down should because each just those how too little "
         "state good very make world still own see men work long get here both life being under "
         "never day same another know while last might us great old year off come since against "
         "go came right used take three going don't it's I'm we've they're you'll she'd "
         "tokenizer merges vocabulary extraordinary distillation quantization").split()
FOREIGN = ("été café naïve façade résumé Ålesund straße über Größe español mañana "
           "καλημέρα κόσμε αλφάβητο привет мир здравствуйте مرحبا بالعالم नमस्ते दुनिया "
           "日本語の文章 東京都 中文字符 测试 한국어 문장 안녕하세요 ひらがな カタカナ").split()
CODE = ["def f(x):\n    return x * 2\n", "for (int i = 0; i < n; ++i) { sum += a[i]; }",
        "if x == 3:\n\tprint('ok')", "{\"key\": [1, 2, 3], \"b\": null}", "a->b && c || !d"]
EMOJI = ["😀", "👍🏽", "👨‍👩‍👧", "🇫🇷", "❤️", "🤖"]


def corpus(seed, lines):
    rng = random.Random(seed)
    out = []
    for _ in range(lines):
        kind = rng.random()
        if kind < 0.7:
            words = [rng.choice(WORDS) for _ in range(rng.randint(3, 14))]
            if rng.random() < 0.3:
                words.insert(rng.randint(0, len(words)), str(rng.randint(0, 99999)))
            if rng.random() < 0.2:
                words.insert(rng.randint(0, len(words)), rng.choice(FOREIGN))
            line = " ".join(words)
            line = line[0].upper() + line[1:] + rng.choice([".", ",", "!", "?", ";", ""])
        elif kind < 0.85:
            line = " ".join(rng.choice(FOREIGN) for _ in range(rng.randint(2, 8)))
        elif kind < 0.95:
            line = rng.choice(CODE)
        else:
            line = " ".join(rng.choice(EMOJI + WORDS) for _ in range(5))
        out.append(line)
    return "\n".join(out)


def train(words_with_counts, merges_wanted):
    """Plain BPE training: merge the most frequent adjacent pair (ties: smallest pair)."""
    words = [(list(w), c) for w, c in words_with_counts.items()]
    merges = []
    for _ in range(merges_wanted):
        counts = {}
        for symbols, c in words:
            for a, b in zip(symbols, symbols[1:]):
                counts[(a, b)] = counts.get((a, b), 0) + c
        if not counts:
            break
        best = max(counts.items(), key=lambda kv: (kv[1], [-ord(ch) for ch in kv[0][0] + kv[0][1]]))[0]
        merges.append(best)
        joined = best[0] + best[1]
        for symbols, _ in words:
            i = 0
            while i + 1 < len(symbols):
                if symbols[i] == best[0] and symbols[i + 1] == best[1]:
                    symbols[i:i + 2] = [joined]
                else:
                    i += 1
    return merges


def bpe_word(symbols, ranks, vocab, ignore_merges):
    word = "".join(symbols)
    if ignore_merges and word in vocab:
        return [word]
    symbols = list(symbols)
    while len(symbols) > 1:
        best = None
        for i in range(len(symbols) - 1):
            rank = ranks.get((symbols[i], symbols[i + 1]))
            if rank is not None and (best is None or rank < best[0]):
                best = (rank, i)
        if best is None:
            break
        i = best[1]
        symbols[i:i + 2] = [symbols[i] + symbols[i + 1]]
    return symbols


def split_added(text, added, parse_special=True):
    """Leftmost-longest cut of added tokens: [(text, None) | (content, id)]."""
    out, plain, i = [], 0, 0
    while i < len(text):
        best = None
        for token in added:
            content = token["content"]
            if text.startswith(content, i) and (best is None or len(content) > len(best["content"])):
                best = token
        if best is None:
            i += 1
            continue
        start, stop = i, i + len(best["content"])
        i = stop
        if best["special"] and not parse_special:
            continue
        if best.get("lstrip"):
            while start > plain and text[start - 1].isspace():
                start -= 1
        if best.get("rstrip"):
            while stop < len(text) and text[stop].isspace():
                stop += 1
            i = stop
        if plain < start:
            out.append((text[plain:start], None))
        out.append((text[start:stop], best["id"]))
        plain = stop
    if plain < len(text):
        out.append((text[plain:], None))
    return out


class Family:
    """Added tokens cut out of the text first (they are their ids), the rest by encode_piece."""

    def encode(self, text, parse_special=True):
        ids = []
        for piece, token_id in split_added(text, self.added, parse_special):
            ids.extend([token_id] if token_id is not None else self.encode_piece(piece))
        return ids


class ByteLevelFamily(Family):
    def __init__(self, name, merges, extra_words, added, split, digits=False, nfc=False,
                 ignore_merges=False, bos=None):
        self.name = name
        alphabet = [BYTE_CHAR[b] for b in range(256)]
        vocab = {}
        for s in alphabet + [a + b for a, b in merges] + [spell(w) for w in extra_words]:
            vocab.setdefault(s, len(vocab))
        self.vocab = vocab
        self.merges = merges
        self.ranks = {pair: r for r, pair in enumerate(merges)}
        self.added = [dict(t, id=len(vocab) + k) for k, t in enumerate(added)]
        self.split = split
        self.digits = digits
        self.nfc = nfc
        self.ignore_merges = ignore_merges
        self.bos = bos

    def tokenizer_json(self):
        pre = []
        if self.digits:
            pre.append({"type": "Digits", "individual_digits": True})
        if self.split is not None:
            pre.append({"type": "Split", "pattern": {"Regex": self.split}, "behavior": "Isolated",
                        "invert": False})
            pre.append({"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                        "use_regex": False})
        else:
            pre.append({"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                        "use_regex": True})
        post = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True}
        if self.bos is not None:
            bos_id = next(t["id"] for t in self.added if t["content"] == self.bos)
            post = {"type": "TemplateProcessing",
                    "single": [{"SpecialToken": {"id": self.bos, "type_id": 0}},
                               {"Sequence": {"id": "A", "type_id": 0}}],
                    "pair": [], "special_tokens": {self.bos: {"id": self.bos, "ids": [bos_id],
                                                              "tokens": [self.bos]}}}
        return {
            "version": "1.0", "truncation": None, "padding": None,
            "added_tokens": [dict(t, single_word=False, normalized=False) for t in self.added],
            "normalizer": {"type": "NFC"} if self.nfc else None,
            "pre_tokenizer": pre[0] if len(pre) == 1 else {"type": "Sequence", "pretokenizers": pre},
            "post_processor": post,
            "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                        "use_regex": True},
            "model": {"type": "BPE", "dropout": None, "unk_token": None,
                      "continuing_subword_prefix": None, "end_of_word_suffix": None,
                      "fuse_unk": False, "byte_fallback": False,
                      "ignore_merges": self.ignore_merges, "vocab": self.vocab,
                      "merges": [a + " " + b for a, b in self.merges]},
        }

    def words(self, text):
        pieces = [text]
        if self.digits:
            pieces = [w for p in pieces for w in regex.split(r"(\p{N})", p) if w]
        pattern = self.split or GPT2_RE
        out = []
        for p in pieces:
            # findall covers the whole text for these expressions; check it.
            found = regex.findall(pattern, p)
            assert "".join(found) == p, (pattern, p)
            out.extend(found)
        return out

    def encode_piece(self, piece):
        if self.nfc:
            piece = unicodedata.normalize("NFC", piece)
        ids = []
        for word in self.words(piece):
            symbols = [BYTE_CHAR[b] for b in word.encode("utf-8")]
            ids.extend(self.vocab[s] for s in bpe_word(symbols, self.ranks, self.vocab,
                                                         self.ignore_merges))
        return ids


class CharFamily(Family):
    """Llama 2's tokenizer.json layout: U+2581 for spaces, character BPE, byte fallback."""

    def __init__(self, merges, chars):
        vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
        for b in range(256):
            vocab["<0x%02X>" % b] = len(vocab)
        for s in chars + [a + b for a, b in merges]:
            vocab.setdefault(s, len(vocab))
        self.vocab = vocab
        self.merges = merges
        self.ranks = {pair: r for r, pair in enumerate(merges)}
        self.added = [{"id": 0, "content": "<unk>", "special": True},
                      {"id": 1, "content": "<s>", "special": True},
                      {"id": 2, "content": "</s>", "special": True}]

    def tokenizer_json(self):
        return {
            "version": "1.0", "truncation": None, "padding": None,
            "added_tokens": [dict(t, single_word=False, lstrip=False, rstrip=False,
                                  normalized=False) for t in self.added],
            "normalizer": {"type": "Sequence", "normalizers": [
                {"type": "Prepend", "prepend": "\u2581"},
                {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
            "pre_tokenizer": None,
            "post_processor": {"type": "TemplateProcessing",
                               "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                          {"Sequence": {"id": "A", "type_id": 0}}],
                               "pair": [], "special_tokens": {"<s>": {"id": "<s>", "ids": [1],
                                                                       "tokens": ["<s>"]}}},
            "decoder": {"type": "Sequence", "decoders": [
                {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
                {"type": "ByteFallback"}, {"type": "Fuse"},
                {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
            "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>",
                      "continuing_subword_prefix": None, "end_of_word_suffix": None,
                      "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
                      "vocab": self.vocab, "merges": [[a, b] for a, b in self.merges]},
        }

    def encode_piece(self, piece):
        normalized = ("\u2581" + piece).replace(" ", "\u2581")
        symbols = []
        for ch in normalized:
            if ch in self.vocab:
                symbols.append(ch)
            else:
                symbols.extend("<0x%02X>" % b for b in ch.encode("utf-8"))
        return [self.vocab[s] for s in bpe_word(symbols, self.ranks, self.vocab, False)]


def llama_cpp_text(data):
    """llama.cpp's unicode_cpts_from_utf8: a lead byte with its continuation bytes is a character
    whatever the value (overlongs decode); any other byte is U+FFFD; then back to UTF-8."""
    out, i = [], 0
    while i < len(data):
        b = data[i]
        n = 1 if b < 0x80 else 0 if b < 0xC0 else 2 if b < 0xE0 else 3 if b < 0xF0 else 4 if b < 0xF8 else 0
        if n > 1 and (i + n > len(data) or any(c & 0xC0 != 0x80 for c in data[i + 1:i + n])):
            n = 0
        if n == 0:
            out.append("\ufffd")
            i += 1
            continue
        code = b if n == 1 else b & (0x7F >> n)
        for c in data[i + 1:i + n]:
            code = (code << 6) | (c & 0x3F)
        out.append("\ufffd" if 0xD800 <= code <= 0xDFFF or code > 0x10FFFF else chr(code))
        i += n
    return "".join(out)


def gguf_string(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def write_gguf(path, kv):
    """A tensor-less GGUF v3 file: the header and the key/value records (the format's doc)."""
    body = b""
    for key, (kind, value) in kv.items():
        body += gguf_string(key)
        if kind == "str":
            body += struct.pack("<I", 8) + gguf_string(value)
        elif kind == "u32":
            body += struct.pack("<II", 4, value)
        elif kind == "bool":
            body += struct.pack("<IB", 7, 1 if value else 0)
        elif kind == "strs":
            body += struct.pack("<IIQ", 9, 8, len(value)) + b"".join(gguf_string(v) for v in value)
        elif kind == "i32s":
            body += struct.pack("<IIQ", 9, 5, len(value)) + b"".join(struct.pack("<i", v) for v in value)
        else:
            raise ValueError(kind)
    with open(path, "wb") as f:
        f.write(b"GGUF" + struct.pack("<IQQ", 3, 0, len(kv)) + body)


def gguf_of(family, pre):
    tokens = [None] * (len(family.vocab) + len(family.added))
    types = [1] * len(tokens)
    for s, i in family.vocab.items():
        tokens[i] = s
    for t in family.added:
        tokens[t["id"]] = t["content"]
        types[t["id"]] = 3 if t["special"] else 4
    kv = {"general.architecture": ("str", "llama"),
          "tokenizer.ggml.model": ("str", "gpt2"),
          "tokenizer.ggml.pre": ("str", pre),
          "tokenizer.ggml.tokens": ("strs", tokens),
          "tokenizer.ggml.token_type": ("i32s", types),
          "tokenizer.ggml.merges": ("strs", [a + " " + b for a, b in family.merges])}
    if family.bos is not None:
        kv["tokenizer.ggml.bos_token_id"] = ("u32", next(t["id"] for t in family.added
                                                           if t["content"] == family.bos))
    kv["tokenizer.ggml.eos_token_id"] = ("u32", next(t["id"] for t in family.added
                                                       if t["content"] == "<|endoftext|>"))
    return kv


TEXTS = [
    "Hello world! This is a test of the tokenizer.",
    "I'm sure it's fine; we've seen they're ready, you'll see. I'M SURE IT'S FINE. ſ'ſ 'ſ",
    "Numbers: 1 12 123 1234 12345 3.14159 1,000,000 and ١٢٣ ²³ Ⅻ",
    "   leading spaces, trailing spaces   ",
    "tabs\tand\nnewlines\r\n\r\nand  double  spaces\n\n\n",
    "  \n  \t \u3000full\u00a0width\u2003spaces\u3000",
    "été café naïve straße Größe español mañana",
    "καλημέρα κόσμε, привет мир! مرحبا بالعالم नमस्ते दुनिया",
    "日本語の文章と中文字符と한국어 문장",
    "emoji 😀👍🏽 family 👨‍👩‍👧 flag 🇫🇷 heart ❤️ robot🤖",
    "def f(x):\n    return x * 2\n\nfor (int i = 0; i < n; ++i) { sum += a[i]; }",
    "e\u0301te\u0301 compose: A\u030a o\u0308 \u1100\u1161\u11a8",
    "<|endoftext|> in the middle <|endoftext|>and<|begin_of_text|>again <custom> x <mask> y </s> <s>x",
    "extraordinary tokenizer vocabulary Extraordinary",
    "a",
    " ",
    "?!...,,;;::",
    "mixed123abc456 x1y2z3 ١٢٣٤",
]
INVALID = [b"bad \xff byte", b"cut \xe2\x82 sequence", b"\xc0\xaf overlong", b"tail \xf0\x9f\x98"]


def main():
    out_dir = sys.argv[1]
    text = corpus(7, 3000)
    counts = {}
    for w in regex.findall(GPT2_RE, text):
        s = spell(w)
        counts[s] = counts.get(s, 0) + 1
    merges = train(counts, 700)

    added = [{"content": "<|endoftext|>", "special": True, "lstrip": False, "rstrip": False},
             {"content": "<|begin_of_text|>", "special": True, "lstrip": False, "rstrip": False},
             {"content": "<custom>", "special": False, "lstrip": False, "rstrip": False},
             {"content": "<mask>", "special": True, "lstrip": True, "rstrip": True}]
    extra = [" extraordinary", " vocabulary", "tokenizer"]
    families = {
        "gpt2": ByteLevelFamily("gpt2", merges, [], added, None),
        "llama3": ByteLevelFamily("llama3", merges, extra, added, LLAMA3_RE, ignore_merges=True,
                                  bos="<|begin_of_text|>"),
        "qwen2": ByteLevelFamily("qwen2", merges, [], added, QWEN2_RE, nfc=True),
        "smollm": ByteLevelFamily("smollm", merges, [], added, None, digits=True),
    }
    # The character vocabulary leaves out CJK, Hangul and emoji, so those go through byte fallback.
    char_counts = {}
    for w in text.replace("\n", " ").split(" "):
        if w and all(ord(ch) < 0x3000 for ch in w):
            key = "\u2581" + w
            char_counts[key] = char_counts.get(key, 0) + 1
    chars = sorted({ch for w in char_counts for ch in w})
    families["llama2"] = CharFamily(train(char_counts, 500), chars)

    texts = [t.encode("utf-8") for t in TEXTS] + INVALID
    expected = {}
    for name, family in families.items():
        with open(os.path.join(out_dir, name + ".tokenizer.json"), "w", encoding="utf-8") as f:
            json.dump(family.tokenizer_json(), f, ensure_ascii=False)
        # Bad bytes reach Hugging Face tokenizers as Python str: decode("utf-8", "replace").
        expected[name] = [family.encode(t.decode("utf-8", "replace")) for t in texts]
        expected[name + ":no-special"] = [family.encode(t.decode("utf-8", "replace"), False)
                                          for t in texts]
    for name, pre in [("gpt2", "gpt-2"), ("llama3", "llama-bpe"), ("smollm", "smollm")]:
        write_gguf(os.path.join(out_dir, name + ".gguf"), gguf_of(families[name], pre))
        # llama.cpp reads bad bytes its own way and knows no lstrip/rstrip for <mask>.
        family = families[name]
        family.added = [dict(t, lstrip=False, rstrip=False) for t in family.added]
        expected[name + ":gguf"] = [family.encode(llama_cpp_text(t)) for t in texts]
    # What decoding the ids must give back for the texts without added tokens: the text itself,
    # after NFC for qwen2.
    expected["decoded:qwen2"] = [unicodedata.normalize("NFC", t.decode("utf-8", "replace")).encode("utf-8").hex()
                                 for t in texts]
    with open(os.path.join(out_dir, "texts.json"), "w") as f:
        json.dump([t.hex() for t in texts], f)
    with open(os.path.join(out_dir, "expected.json"), "w") as f:
        json.dump(expected, f)


if __name__ == "__main__":
    main()
