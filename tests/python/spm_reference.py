# The independent reference for tests/test_tokenizer_spm.cpp: Debian's python3-sentencepiece
# 0.1.97 (the libsentencepiece the project used to link).
#
#   spm_reference.py DIR [NAME... | FILE.model...]
#
# Writes a seeded, generated multilingual corpus into DIR, trains one small SentencePiece model per
# setting of the matrix below (or only the named ones) into DIR/NAME.model, loads the given model
# files as they are (hand-made vocabularies), and prints one JSON object on stdout:
#   {"texts": [hex, ...],                         the inputs, as bytes (some are not UTF-8)
#    "models": [{"name": ..., "file": path,
#                "ids": [[id, ...], ...],         sp.encode(text) per text (no BOS/EOS)
#                "decoded": [hex, ...],           sp.decode(ids) of those ids, as UTF-8 bytes
#                "normalized": [hex, ...],        the normalizer's output (see normalized_of)
#                "decode_cases": [{"ids": [...], "text": hex}, ...]}]}   sp.decode of chosen ids
# Text travels as hex so that nothing (JSON escapes, invalid UTF-8) can change a byte.
import json
import multiprocessing
import os
import random
import sys

import sentencepiece as spm

SEED = 20240601

# Vocabulary sizes are kept small so that the whole matrix trains in a few seconds; the corpus
# needs ~300 pieces for its characters alone, so hard_vocab_limit is off.
BASE = dict(vocab_size=1200, hard_vocab_limit=False, minloglevel=2, num_threads=2,
            character_coverage=0.9995)


def settings_matrix():
    """Returns [(name, trainer kwargs)]: the full cross of the main settings plus one model per
    less common option."""
    models = []
    for model_type in ("bpe", "unigram"):
        for rule in ("identity", "nmt_nfkc", "nfkc_cf"):
            for byte_fallback in (True, False):
                for remove_extra in (True, False):
                    name = "%s-%s-%s-%s" % (model_type, rule,
                                            "bytes" if byte_fallback else "nobytes",
                                            "trim" if remove_extra else "keepspace")
                    models.append((name, dict(model_type=model_type,
                                              normalization_rule_name=rule,
                                              byte_fallback=byte_fallback,
                                              remove_extra_whitespaces=remove_extra)))
        models += [
            # User-defined pieces are taken whole, even where the normalizer would change them
            # ("ﬁ", full-width "Ａ") and inside words; "<s>" is also the BOS control piece's
            # spelling in text.
            (model_type + "-user-defined",
             dict(model_type=model_type, user_defined_symbols=[
                 "<sep>", "<mask>", "ﬁ", "Ａ", "42", "東京", "▁the", "[[", "[[x]]"])),
            (model_type + "-user-defined-bytes",
             dict(model_type=model_type, byte_fallback=True, normalization_rule_name="identity",
                  remove_extra_whitespaces=False,
                  user_defined_symbols=["<sep>", "<|im_start|>", "\t", "  "])),
            (model_type + "-control",
             dict(model_type=model_type, control_symbols=["<ctl>", "<2ja>", "[INST]"])),
            (model_type + "-split-digits",
             dict(model_type=model_type, split_digits=True)),
            (model_type + "-suffix",
             dict(model_type=model_type, treat_whitespace_as_suffix=True)),
            (model_type + "-suffix-keepspace",
             dict(model_type=model_type, treat_whitespace_as_suffix=True,
                  remove_extra_whitespaces=False, byte_fallback=True)),
            (model_type + "-no-prefix",
             dict(model_type=model_type, add_dummy_prefix=False)),
            (model_type + "-no-prefix-keepspace",
             dict(model_type=model_type, add_dummy_prefix=False, remove_extra_whitespaces=False,
                  normalization_rule_name="identity")),
            # Llama 2's settings: BPE over identity-normalized text, byte fallback, spaces kept,
            # digits split, ids 0..2 for <unk>, <s>, </s>.
            (model_type + "-llama",
             dict(model_type=model_type, normalization_rule_name="identity", byte_fallback=True,
                  remove_extra_whitespaces=False, split_digits=True, add_dummy_prefix=True,
                  allow_whitespace_only_pieces=True, pad_id=-1)),
            # Pieces marked unused after training (SetVocabulary), which encoding must avoid.
            # (SetVocabulary turns kept byte pieces into normal ones, which breaks a model with
            # byte_fallback, so this one has none.)
            (model_type + "-unused", dict(model_type=model_type)),
            # A custom unknown surface and ids in another order.
            (model_type + "-unk-surface",
             dict(model_type=model_type, unk_surface="<?>", unk_id=3, bos_id=0, eos_id=1,
                  pad_id=2)),
        ]
    models += [
        # Spaces stay spaces: the trainers refuse escape_whitespaces=false, so it is set in the
        # trained model (see main).
        ("unigram-no-escape", dict(model_type="unigram")),
        ("bpe-no-escape", dict(model_type="bpe", byte_fallback=True)),
        ("char", dict(model_type="char", vocab_size=400)),
        ("char-bytes", dict(model_type="char", vocab_size=400, byte_fallback=True,
                            user_defined_symbols=["<sep>"])),
        ("word", dict(model_type="word", vocab_size=1500, control_symbols=["<ctl>"])),
        # A denormalizer (decoding maps "x" to "ks") and a custom normalization rule ("ö" to "oe").
        ("unigram-denormalizer", dict(model_type="unigram", denormalization_rule_tsv="DENORM")),
        ("bpe-custom-rule", dict(model_type="bpe", normalization_rule_tsv="NORM",
                                 byte_fallback=True)),
    ]
    return models


# Words of many scripts; lines are random mixtures so that every script gets merges.
LATIN = ("the quick brown fox jumps over lazy dog and then some more words about tokenizers "
         "café naïve résumé façade jalapeño über straße ångström crème brûlée déjà vu "
         "señor niño coração ação Łódź Dvořák Ærøskøbing").split()
GREEK = "καλημέρα κόσμε λόγος θάλασσα ἄνθρωπος φιλοσοφία Ελλάδα γλώσσα".split()
CYRILLIC = "привет мир хорошо язык слово Москва интернет ёлка щука".split()
ARABIC = "مرحبا بالعالم كتاب اللغة العربية مدرسة سلام".split()
HINDI = "नमस्ते दुनिया भारत हिन्दी भाषा किताब विद्यालय".split()
CJK = "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可她里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长知民样现分将外但身些与高意进把法此实回二理美点月明其种声全工己话儿者向情部正名定女问力机给等几很业最间新什打便位因重被走电四第门相次东政海口使教西再平真听世气信北少关并内加化由却代军产入先山五太水万市眼体别处总才场师书比住员九笑性通目华报立马命张活难神数件安表原车白应路期叫死常提感金何更反合放做系计或司利受光王果亲界及今京务制解各任至清物台象记边共风战干接它许八特觉望直服毛林题建南度统色字请交爱让认算论百吃义科怎元社术结六功指思非流每青管夫连远资队跟带花快条院变联言权往展该领传近留红治决周保达办运武半候七必城父强步完革深区即求品士转量空甚众技轻程告江语英基派满式李息写呢识极令黄德收脸钱党倒未持取设始版双历越史商千片容研像找友孩站广改议形委早房音火际则首单据导影失拿网香似斯专石若兵弟谁校读志飞观争究包组造落视济喜离虽坏兴切".strip()
KANA = "あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほまみむめもやゆよらりるれろわをんアイウエオカキクケコサシスセソタチツテトナニヌネノハヒフヘホマミムメモヤユヨラリルレロワヲンー"
HANGUL_WORDS = "안녕하세요 세계 한국어 사랑 학교 컴퓨터 대한민국 감사합니다".split()
CODE = ["def f(x):", "return x + 1;", "if (a == b) {", "}", "std::vector<int> v;", "x = [1, 2, 3]",
        "#include <stdio.h>", "for (i = 0; i < n; ++i)", "printf(\"%d\\n\", i);", "a->b", "x != y",
        "foo_bar(baz)", "// comment", "0x1F", "3.14159"]
SYMBOLS = ["!", "?", ",", ".", ";", ":", "-", "(", ")", "\"", "'", "«", "»", "—", "…", "%", "$", "€"]
EMOJI = ["😀", "🎉", "👍", "👍🏽", "🙂", "❤️", "🚀"]


def corpus_line(rng):
    parts = []
    for _ in range(rng.randint(4, 14)):
        kind = rng.random()
        if kind < 0.30:
            parts.append(rng.choice(LATIN))
        elif kind < 0.36:
            parts.append(rng.choice(GREEK))
        elif kind < 0.42:
            parts.append(rng.choice(CYRILLIC))
        elif kind < 0.47:
            parts.append(rng.choice(ARABIC))
        elif kind < 0.52:
            parts.append(rng.choice(HINDI))
        elif kind < 0.62:
            parts.append("".join(rng.choice(CJK) for _ in range(rng.randint(1, 4))))
        elif kind < 0.68:
            parts.append("".join(rng.choice(KANA) for _ in range(rng.randint(2, 5))))
        elif kind < 0.73:
            parts.append(rng.choice(HANGUL_WORDS))
        elif kind < 0.80:
            parts.append(str(rng.randint(0, 10 ** rng.randint(1, 6))))
        elif kind < 0.86:
            parts.append(rng.choice(CODE))
        elif kind < 0.95:
            parts.append(rng.choice(SYMBOLS))
        elif kind < 0.97:
            parts.append(rng.choice(EMOJI))
        else:
            parts.append(rng.choice(["ﬁne", "Ｆｕｌｌ", "①", "x²", "㎏", "ｶﾀｶﾅ", "Ⅻ"]))
    return " ".join(parts)


def test_texts(rng):
    """The inputs every model encodes: bytes, since some are deliberately not UTF-8."""
    texts = [
        "", " ", "  ", "\t", "\n", "a", "hello world", "Hello World!", "the quick brown fox",
        " leading space", "trailing space ", "  two leading", "two trailing  ",
        "inner  double   triple    spaces", "tab\tseparated\tvalues", "line\nbreak\r\nwindows",
        "\u3000full-width space\u3000", "no\u00a0break\u00a0space", "\u2581literal lower block",
        "ends with block\u2581", "\u2581", "\u2581\u2581 \u2581",
        "café naïve résumé Ærøskøbing Łódź", "Καλημέρα κόσμε", "Привет, мир!", "مرحبا بالعالم",
        "नमस्ते दुनिया", "中文测试，你好世界。", "日本語のテキスト、カタカナとひらがな", "안녕하세요 세계",
        "0 12 345 6789 3.14159 1,000,000 2024-06-01", "x1y22z333",
        "😀 🎉 👍🏽 👨\u200d👩\u200d👧\u200d👦 🇯🇵🇫🇷 🏳️\u200d🌈 ❤️",
        "def f(x):\n    return x + 1  # comment\n", "if (a==b) { printf(\"%d\\n\", a->c); }",
        "ﬁne ﬂow ﬀ", "Ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３", "x² H₂O ½ ①②③ ㎏ ㍻ Ⅻ ｶﾀｶﾅ",
        "e\u0301 combining vs é, Å vs A\u030a", "ǅ ǈ ß ẞ İ ı ﬆ",
        "<s> </s> <unk> <pad> <sep> <mask> <ctl> <2ja> [INST] <|im_start|> <0x41>",
        "a<sep>b<mask>c ﬁx Ａ 42 東京 [[x]] [[", "the theme", "\t\tindented  \t",
        "  \u3000 \u00a0 ", "x" * 300, "ab" * 200, "\U0001F600" * 20, "漢" * 50,
        "kinda unknown: \U0001D54F \U00010348 \U0001F9EC \u2603 \u00bf",
        "ks x ox oe ö Ö",
        # For the hand-made vocabularies of tests/test_tokenizer_spm.cpp.
        "abc", "ababc", "abcabc", "cab", "a b", "xa b", "ba b", "a b a b", "#a#", "a#", "bcd",
        "abcd", "ab c",
    ]
    encoded = [t.encode("utf-8") for t in texts]
    # Invalid UTF-8: lone continuation bytes, truncated sequences, overlongs, surrogates, bytes
    # that never occur, and a valid U+FFFD beside them.
    encoded += [b"\xff", b"a\x80b", b"\xe2\x82", b"\xe2\x82 x", b"\xc0\xaf", b"\xed\xa0\x80",
                b"\xf4\x90\x80\x80", b"\xf0\x9f\x98", b"ok\xc3", b"\xef\xbf\xbd\xff",
                b"caf\xe9 latin-1", b"  \xfe\xfe  x", b"\xe2\x96\x81\xe2\x96"]
    # Held-out corpus lines (another seed) and random strings from the corpus alphabet.
    encoded += [corpus_line(rng).encode("utf-8") for _ in range(120)]
    alphabet = "".join(LATIN + GREEK + CYRILLIC) + CJK[:40] + KANA[:20] + " \t\u3000\u00a0ﬁ①Ａ1234"
    for _ in range(40):
        encoded.append("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 30))).encode())
    return encoded


def write_rule_files(directory):
    # TSV rules: source code points TAB target code points, hex (SentencePiece's
    # normalization_rule_tsv format).
    norm = os.path.join(directory, "norm.tsv")
    with open(norm, "w") as f:
        f.write("F6\t6F 65\n")   # ö -> oe
        f.write("D6\t4F 45\n")   # Ö -> OE
        f.write("3000\t20\n")    # ideographic space -> space
        f.write("FB01\t66 69\n")  # ﬁ -> fi
    denorm = os.path.join(directory, "denorm.tsv")
    with open(denorm, "w") as f:
        f.write("78\t6B 73\n")    # x -> ks
    return norm, denorm


def normalized_of(sp, text):
    """The normalized text the model segmented: the concatenation of the pieces, where a byte
    piece stands for its byte (an unknown run keeps its text as the piece when there is no byte
    fallback, so this is exact)."""
    out = b""
    for piece, piece_id in zip(sp.encode(text, out_type=str), sp.encode(text)):
        piece = piece if isinstance(piece, bytes) else piece.encode("utf-8")
        out += bytes([int(piece[3:5], 16)]) if sp.is_byte(piece_id) else piece
    return out


def decode_cases(sp, rng):
    """Id sequences whose decoding is a rule of its own: byte pieces that form invalid UTF-8,
    control pieces first, unknown pieces, pieces that start with U+2581, every id at once."""
    n = sp.get_piece_size()
    by_piece = {sp.id_to_piece(i): i for i in range(n)}
    byte_id = lambda b: by_piece.get("<0x%02X>" % b)
    cases = [[i] for i in range(n)]
    cases.append(list(range(n)))
    cases.append(list(reversed(range(n))))
    controls = [i for i in range(n) if sp.is_control(i)]
    space_pieces = [i for i in range(n) if sp.id_to_piece(i).startswith("\u2581")][:20]
    words = [i for i in range(n) if not sp.is_control(i) and not sp.is_byte(i)][:50]
    for _ in range(60):
        cases.append([rng.randrange(n) for _ in range(rng.randint(1, 12))])
    for c in controls:
        for s in space_pieces[:5]:
            cases.append([c, s, s])
            cases.append([c, c, s, c, s])
    for s in space_pieces:
        cases.append([s, s])
        cases.append([s] + words[:3])
    unk = sp.unk_id()
    cases.append([unk, unk])
    cases.append([unk] + space_pieces[:2])
    if byte_id(0x41) is not None:
        seqs = [[0xE2, 0x82, 0x41], [0xFF], [0xF0, 0x9F, 0x98], [0xC3], [0xE2, 0x96, 0x81],
                [0xF0, 0x9F, 0x98, 0x80, 0x80], [0xC0, 0xAF], [0xED, 0xA0, 0x80], [0x20, 0x41],
                [0xEF, 0xBF, 0xBD, 0xBF]]
        for seq in seqs:
            ids = [byte_id(b) for b in seq]
            cases.append(ids)
            if space_pieces:
                cases.append(ids + [space_pieces[0]] + ids)
                cases.append([space_pieces[0]] + ids)
            if controls:
                cases.append([controls[0]] + ids + [controls[0]] + ids)
    return [{"ids": ids, "text": sp.decode(ids).encode("utf-8").hex()} for ids in cases]


def train_and_run(job):
    directory, name, options, norm, denorm, texts = job
    if options is None:  # a given model file
        return run_model(name, name, texts)
    kwargs = dict(BASE)
    kwargs.update(options)
    for key, value in list(kwargs.items()):
        if value == "NORM":
            kwargs[key] = norm
        elif value == "DENORM":
            kwargs[key] = denorm
    prefix = os.path.join(directory, name)
    spm.SentencePieceTrainer.train(input=os.path.join(directory, "corpus.txt"),
                                   model_prefix=prefix, **kwargs)
    if name.endswith("-no-escape"):
        # A second normalizer_spec (field 3) holding escape_whitespaces (field 5) = false:
        # protobuf merges repeated occurrences of a message field, so this overrides one flag.
        with open(prefix + ".model", "ab") as f:
            f.write(bytes([3 << 3 | 2, 2, 5 << 3 | 0, 0]))
    sp = spm.SentencePieceProcessor(model_file=prefix + ".model")
    if name.endswith("-unused"):
        # Keeps every third multi-character piece; SetVocabulary marks the rest UNUSED.
        keep = [sp.id_to_piece(i) for i in range(sp.get_piece_size()) if i % 3 == 0]
        sp.set_vocabulary(keep)
        with open(prefix + ".model", "wb") as f:
            f.write(sp.serialized_model_proto())
    return run_model(name, prefix + ".model", texts)


def run_model(name, file, texts):
    sp = spm.SentencePieceProcessor(model_file=file)
    ids = [sp.encode(t) for t in texts]
    return {
        "name": name,
        "file": file,
        "ids": ids,
        "decoded": [sp.decode(i).encode("utf-8").hex() for i in ids],
        "normalized": [normalized_of(sp, t).hex() for t in texts],
        "decode_cases": decode_cases(sp, random.Random(SEED + 2)),
    }


def main():
    directory = sys.argv[1]
    only = set(sys.argv[2:])
    rng = random.Random(SEED)
    corpus = os.path.join(directory, "corpus.txt")
    with open(corpus, "w", encoding="utf-8") as f:
        for _ in range(2500):
            f.write(corpus_line(rng) + "\n")
        # Whitespace-only pieces and runs appear only if the corpus has them.
        for _ in range(100):
            f.write("  " + corpus_line(rng) + "\t\t" + corpus_line(rng) + "  \n")
    norm, denorm = write_rule_files(directory)
    texts = test_texts(random.Random(SEED + 1))
    files = [arg for arg in sys.argv[2:] if arg.endswith(".model")]
    jobs = [(directory, name, options, norm, denorm, texts)
            for name, options in settings_matrix() if not only or name in only]
    jobs += [(directory, file, None, norm, denorm, texts) for file in files]
    # Two processes: training dominates and each model is independent.
    with multiprocessing.Pool(2) as pool:
        models = pool.map(train_and_run, jobs)
    out = {"texts": [t.hex() for t in texts], "models": models}
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
