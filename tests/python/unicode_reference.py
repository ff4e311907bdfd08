# The independent expectations for tokenizer/unicode.h, from Python's unicodedata (the Unicode
# version Debian's Python carries) and, for White_Space, the `regex` module's \s.
#
#   unicode_reference.py properties
#       One line per run of code points 0..0x10FFFF with the same expected CodepointFlag bits and
#       canonical combining class: "START END FLAGS CCC", all hex, after a first line
#       "unicode VERSION".
#   unicode_reference.py normalization SEED
#       One line per test string: "INPUT NFC NFD NFKC NFKD", each the hex of its UTF-8 bytes ("-"
#       for the empty string), from unicodedata.normalize.
import random
import sys
import unicodedata

import regex

# The bits of tok::CodepointFlag (src/tokenizer/unicode.h).
GROUP_BITS = {"L": 1 << 0, "N": 1 << 1, "M": 1 << 2, "P": 1 << 3, "S": 1 << 4, "Z": 1 << 5,
              "C": 1 << 6}
WHITESPACE_BIT = 1 << 7
LETTER_BITS = {"Lu": 1 << 8, "Ll": 1 << 9, "Lt": 1 << 10, "Lm": 1 << 11, "Lo": 1 << 12}
WHITESPACE = regex.compile(r"\s")


def expected_flags(char):
    category = unicodedata.category(char)
    flags = GROUP_BITS[category[0]] | LETTER_BITS.get(category, 0)
    if WHITESPACE.fullmatch(char):
        flags |= WHITESPACE_BIT
    return flags


def print_properties():
    lines = [f"unicode {unicodedata.unidata_version}"]
    run_start, run_value = 0, None
    for code in range(0x110000):
        char = chr(code)
        value = (expected_flags(char), unicodedata.combining(char))
        if value != run_value:
            if run_value is not None:
                lines.append(f"{run_start:x} {code - 1:x} {run_value[0]:x} {run_value[1]:x}")
            run_start, run_value = code, value
    lines.append(f"{run_start:x} 10ffff {run_value[0]:x} {run_value[1]:x}")
    print("\n".join(lines))


def hex_of(text):
    return text.encode("utf-8", "surrogatepass").hex() or "-"


# Marks of several combining classes: 0316 (220, below), 0301 (230, above), 0345 (240, iota
# subscript), 0327 (202, cedilla), 05B0 (10, Hebrew sheva), 093C (7, nukta), 0F72 (130), 0F71
# (129), 1D165 (216) and 302A (218).
MARKS = ["\u0316", "\u0301", "\u0345", "\u0327", "\u05b0", "\u093c", "\u0f72", "\u0f71",
         "\U0001d165", "\u302a", "\u0300", "\u0323", "\u0308", "\u0342", "\u0313", "\u031b"]
# Combining sequences in an order canonical ordering must change (or, for the last, keep).
SCRAMBLED_SUFFIXES = ["\u0301\u0316", "\u0345\u0301\u0323", "\u0301\u093c\u0327",
                      "\u0f72\u0f71\u0301", "\u0308\u0300\u0323\u0316"]
HANGUL_L = [chr(c) for c in range(0x1100, 0x1113)]
HANGUL_V = [chr(c) for c in range(0x1161, 0x1176)]
HANGUL_T = [chr(c) for c in range(0x11A8, 0x11C3)]

# Code point ranges the random strings draw from, with weights.
RANDOM_RANGES = [
    ((0x20, 0x7E), 30),        # ASCII
    ((0xA0, 0xFF), 8),         # Latin-1
    ((0x100, 0x24F), 6),       # Latin Extended-A/B
    ((0x1E00, 0x1EFF), 4),     # Latin Extended Additional (Vietnamese)
    ((0x370, 0x3FF), 5),       # Greek
    ((0x1F00, 0x1FFF), 5),     # Greek Extended (polytonic)
    ((0x400, 0x4FF), 5),       # Cyrillic
    ((0x300, 0x36F), 10),      # combining diacritical marks
    ((0x591, 0x5C7), 2),       # Hebrew points
    ((0x900, 0x97F), 3),       # Devanagari (nukta compositions)
    ((0x9BE, 0x9D7), 2),       # Bengali vowel signs (starters that compose)
    ((0xF71, 0xF84), 2),       # Tibetan marks
    ((0xAC00, 0xD7A3), 6),     # Hangul syllables
    ((0x1100, 0x11FF), 6),     # Hangul jamo
    ((0x3131, 0x318E), 2),     # Hangul compatibility jamo (compatibility decompositions)
    ((0x4E00, 0x9FFF), 4),     # CJK ideographs
    ((0xF900, 0xFAFF), 2),     # CJK compatibility ideographs (singletons)
    ((0x2F800, 0x2FA1D), 1),   # CJK compatibility supplement
    ((0x3040, 0x30FF), 3),     # kana, with the voiced sound marks 3099/309A
    ((0xFF00, 0xFFEF), 3),     # halfwidth and fullwidth forms
    ((0xFB00, 0xFB4F), 2),     # ligatures, Hebrew presentation forms
    ((0xFE70, 0xFEFC), 1),     # Arabic presentation forms
    ((0x1D400, 0x1D7FF), 1),   # mathematical alphanumerics
    ((0x2000, 0x2BFF), 3),     # punctuation, super/subscripts, letterlike, arrows, symbols
    ((0x1F300, 0x1FAFF), 4),   # emoji
    ((0x200D, 0x200D), 1),     # zero width joiner
    ((0xFE00, 0xFE0F), 1),     # variation selectors
    ((0x1D15E, 0x1D1C0), 1),   # musical symbols (composition exclusions with marks 1D165..)
    ((0x3300, 0x33FF), 1),     # CJK compatibility squares (long compatibility decompositions)
    ((0xFDF0, 0xFDFD), 1),     # Arabic ligatures (U+FDFA: 18 code points)
]


def random_string(rng):
    ranges = [r for r, _ in RANDOM_RANGES]
    weights = [w for _, w in RANDOM_RANGES]
    chars = []
    for _ in range(rng.randint(1, 40)):
        low, high = rng.choices(ranges, weights)[0]
        code = rng.randint(low, high)
        chars.append(chr(code))
    return "".join(chars)


def normalization_inputs(seed):
    rng = random.Random(seed)
    inputs = [""]
    decomposable = [chr(c) for c in range(0x110000)
                    if unicodedata.normalize("NFKD", chr(c)) != chr(c)]
    for char in decomposable:
        inputs.append(char)
        inputs.append(char + rng.choice(SCRAMBLED_SUFFIXES))
        inputs.append(rng.choice(MARKS) + char + rng.choice(MARKS))
    # Every two-code-point canonical decomposition, composed or not, the pair apart with a mark of
    # a lower class between (composes), of the same class (blocked), and behind a mark.
    for code in range(0x110000):
        fields = unicodedata.decomposition(chr(code)).split()
        if len(fields) != 2 or fields[0].startswith("<"):
            continue
        first, second = (chr(int(f, 16)) for f in fields)
        inputs.append(first + second)
        inputs.append(unicodedata.normalize("NFD", first) + second)
        inputs.append(first + "\u0316" + second)
        inputs.append(first + "\u0301" + second)
        inputs.append(first + second + "\u0301\u0316")
        inputs.append("\u0327" + first + "\u05b0" + second)
    # Hangul (Unicode ch. 3.12): every L V and L V T, an LV syllable with each T, and partial or
    # blocked sequences.
    for l in HANGUL_L:
        for v in HANGUL_V:
            inputs.append(l + v)
            for t in HANGUL_T:
                inputs.append(l + v + t)
    for t in HANGUL_T:
        inputs.append("\uac00" + t)  # LV + T
        inputs.append("\uac01" + t)  # LVT + T: no composition
        inputs.append(t)
        inputs.append(rng.choice(HANGUL_V) + t)
    for l, v, t in ((rng.choice(HANGUL_L), rng.choice(HANGUL_V), rng.choice(HANGUL_T))
                    for _ in range(200)):
        inputs += [l, v, l + l + v, l + v + v, l + "\u0301" + v, l + v + "\u0301" + t,
                   l + v + t + t, "\uac00" + v, l + "\u1160" + t, v + l + v + t]
    # Runs of marks of several classes in scrambled order after random starters.
    starters = ["a", "e", "\u03b1", "\u0438", "\u1100", "\uac00", "\u00e9", "\u0928", "\u09c7",
                "\u0f40", "\U0001d158", ""]
    for _ in range(2000):
        marks = rng.choices(MARKS, k=rng.randint(2, 8))
        inputs.append(rng.choice(starters) + "".join(marks) + rng.choice(starters))
    # A run of marks long enough for the O(n log n) sort.
    inputs.append("o" + "".join(rng.choices(MARKS, k=300)) + "x")
    random_strings = [random_string(rng) for _ in range(4000)]
    inputs += random_strings
    # All of them in one text, so the quick-check spans meet at random places.
    inputs.append("".join(random_strings))
    return inputs


def print_normalization(seed):
    lines = []
    for text in normalization_inputs(seed):
        outputs = [unicodedata.normalize(form, text) for form in ("NFC", "NFD", "NFKC", "NFKD")]
        lines.append(" ".join(hex_of(s) for s in [text] + outputs))
    print("\n".join(lines))


if __name__ == "__main__":
    if sys.argv[1] == "properties":
        print_properties()
    elif sys.argv[1] == "normalization":
        print_normalization(int(sys.argv[2]))
    else:
        raise SystemExit(f"unknown command {sys.argv[1]!r}: expected properties or normalization")
