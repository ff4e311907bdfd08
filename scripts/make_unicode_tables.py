#!/usr/bin/python3
"""Generates src/tokenizer/unicode_tables.inc, the Unicode character data of the tokenizer layer.

Run with Debian's /usr/bin/python3 (the tables carry the Unicode version of its unicodedata):

    /usr/bin/python3 scripts/make_unicode_tables.py

The only source is Python's standard unicodedata module; nothing is downloaded. What unicodedata
does not expose is derived here and checked against unicodedata.normalize:
- White_Space (PropList.txt) is the fixed list below.
- The primary composites (UAX #15 section 3, "Primary Composite": a character with a canonical
  decomposition that is not in Full_Composition_Exclusion) are the characters c with a two-code
  point canonical decomposition (a, b) for which NFC(a b) == c.
- NFC_Quick_Check / NFKC_Quick_Check / NFD_Quick_Check / NFKD_Quick_Check (UAX #15 section 9):
  "No" for the characters that never occur in the form (X(c) != c for the form X), "Maybe" for
  those that can compose with a preceding character (the second characters of primary composites,
  Hangul V and T jamo), "Yes" otherwise.
"""

import pathlib
import sys
import unicodedata

CODE_POINT_COUNT = 0x110000

# The White_Space property (Unicode PropList.txt; stable since Unicode 4.1): what \s matches in
# Oniguruma, Rust's regex and Python's `regex` module. unicodedata does not expose it.
WHITE_SPACE = set(range(0x0009, 0x000D + 1)) | {0x0020, 0x0085, 0x00A0, 0x1680} | set(
    range(0x2000, 0x200A + 1)) | {0x2028, 0x2029, 0x202F, 0x205F, 0x3000}

# CodepointFlag bits, as declared in src/tokenizer/unicode.h.
LETTER, NUMBER, MARK, PUNCTUATION, SYMBOL, SEPARATOR, OTHER, WHITESPACE = (1 << i for i in range(8))
CATEGORY_FLAGS = {
    "Lu": LETTER | 1 << 8, "Ll": LETTER | 1 << 9, "Lt": LETTER | 1 << 10, "Lm": LETTER | 1 << 11,
    "Lo": LETTER | 1 << 12, "Mn": MARK, "Mc": MARK, "Me": MARK, "Nd": NUMBER, "Nl": NUMBER,
    "No": NUMBER, "Pc": PUNCTUATION, "Pd": PUNCTUATION, "Ps": PUNCTUATION, "Pe": PUNCTUATION,
    "Pi": PUNCTUATION, "Pf": PUNCTUATION, "Po": PUNCTUATION, "Sm": SYMBOL, "Sc": SYMBOL,
    "Sk": SYMBOL, "So": SYMBOL, "Zs": SEPARATOR, "Zl": SEPARATOR, "Zp": SEPARATOR, "Cc": OTHER,
    "Cf": OTHER, "Cs": OTHER, "Co": OTHER, "Cn": OTHER,
}

# Normalization bits of a CodepointRecord, as declared in src/tokenizer/unicode.cpp.
NFD_NO, NFKD_NO, NFC_NO, NFC_MAYBE, NFKC_NO, NFKC_MAYBE = (1 << i for i in range(6))

# Hangul syllables (Unicode 14, section 3.12): composed and decomposed arithmetically.
HANGUL_S_BASE, HANGUL_S_COUNT = 0xAC00, 11172
HANGUL_V = range(0x1161, 0x1175 + 1)
HANGUL_T = range(0x11A8, 0x11C2 + 1)  # TBase + 1 .. TBase + TCount - 1


def is_hangul_syllable(code):
    return HANGUL_S_BASE <= code < HANGUL_S_BASE + HANGUL_S_COUNT


def canonical_pair(code):
    """The two code points of a two-code-point canonical decomposition, or None."""
    fields = unicodedata.decomposition(chr(code)).split()
    if len(fields) != 2 or fields[0].startswith("<"):
        return None
    return int(fields[0], 16), int(fields[1], 16)


def primary_composites():
    """{(first, second): composite} for every primary composite except the Hangul syllables."""
    pairs = {}
    for code in range(CODE_POINT_COUNT):
        pair = canonical_pair(code)
        if pair is None:
            continue
        composes = unicodedata.normalize("NFC", chr(pair[0]) + chr(pair[1])) == chr(code)
        # The rule in the module docstring, cross-checked against its equivalent "c is stable
        # under NFC": a composition-excluded character never survives NFC.
        assert composes == (unicodedata.normalize("NFC", chr(code)) == chr(code)), hex(code)
        if composes:
            pairs[pair] = code
    return pairs


def utf16(sequence):
    """The UTF-16 code units of a code point sequence (the pool stores BMP characters in one)."""
    units = []
    for code in sequence:
        if code < 0x10000:
            units.append(code)
        else:
            units += [0xD800 | (code - 0x10000) >> 10, 0xDC00 | (code - 0x10000) & 0x3FF]
    return units


def c_type(values):
    top = max(values)
    return "uint8_t" if top < 1 << 8 else "uint16_t" if top < 1 << 16 else "uint32_t"


def c_type_bytes(values):
    return {"uint8_t": 1, "uint16_t": 2, "uint32_t": 4}[c_type(values)]


class TwoLevelTable:
    """`values` in deduplicated blocks of 2**shift entries, with the shift that takes the fewest
    bytes: value(c) = blocks[page[c >> shift] << shift | (c & (2**shift - 1))]."""

    def __init__(self, values):
        best = None
        for shift in range(4, 11):
            size = 1 << shift
            block_ids, blocks, page = {}, [], []
            for start in range(0, len(values), size):
                block = tuple(values[start:start + size])
                block += (0,) * (size - len(block))
                if block not in block_ids:
                    block_ids[block] = len(blocks)
                    blocks.append(block)
                page.append(block_ids[block])
            flat = [v for block in blocks for v in block]
            size_bytes = len(page) * c_type_bytes(page) + len(flat) * c_type_bytes(flat)
            if best is None or size_bytes < best[0]:
                best = (size_bytes, shift, page, flat)
        self.bytes, self.shift, self.page, self.blocks = best
        self.limit = len(self.page) << self.shift  # the code points it covers


def c_array(name, values, hex_digits=None):
    """A constexpr array definition, values in decimal (or hex with `hex_digits`), in lines of at
    most 100 columns."""
    def spell(value):
        return f"0x{value:0{hex_digits}X}" if hex_digits else str(value)
    width = max(len(spell(v)) for v in values)
    per_line = (100 - 4) // (width + 2)
    lines = [f"constexpr {c_type(values)} {name}[{len(values)}] = {{"]
    for start in range(0, len(values), per_line):
        lines.append("    " + ", ".join(spell(v) for v in values[start:start + per_line]) + ",")
    lines.append("};")
    return "\n".join(lines)


def code_point_data(composition_seconds):
    """(records, record_of_code, decompositions): the distinct (flags, ccc, quick-check bits)
    records, each code point's record index, and {code: (canonical, compatibility)} full
    decompositions as code point tuples (Hangul syllables excepted; canonical empty when there is
    only a compatibility decomposition)."""
    records, record_ids, record_of_code, decompositions = [], {}, [], {}
    for code in range(CODE_POINT_COUNT):
        char = chr(code)
        flags = CATEGORY_FLAGS[unicodedata.category(char)]
        flags |= WHITESPACE if code in WHITE_SPACE else 0
        ccc = unicodedata.combining(char)
        nfd, nfkd = unicodedata.normalize("NFD", char), unicodedata.normalize("NFKD", char)
        nfc, nfkc = unicodedata.normalize("NFC", char), unicodedata.normalize("NFKC", char)
        bits = 0
        bits |= NFD_NO if nfd != char else 0
        bits |= NFKD_NO if nfkd != char else 0
        bits |= NFC_NO if nfc != char else 0
        bits |= NFKC_NO if nfkc != char else 0
        if code in composition_seconds:
            bits |= (NFC_MAYBE if nfc == char else 0) | (NFKC_MAYBE if nfkc == char else 0)
        # The quick-check scan in unicode.cpp restarts normalization at a character with ccc 0 and
        # "Yes" (a boundary): nothing before it may reorder or compose with it, so its
        # decomposition must begin with a starter that composes with nothing before it.
        for decomposed, not_yes in ((nfd, NFC_NO | NFC_MAYBE), (nfkd, NFKC_NO | NFKC_MAYBE)):
            if ccc == 0 and not bits & not_yes:
                assert unicodedata.combining(decomposed[0]) == 0, hex(code)
                assert ord(decomposed[0]) not in composition_seconds, hex(code)
        if nfkd != char and not is_hangul_syllable(code):
            canonical = tuple(ord(c) for c in nfd) if nfd != char else ()
            decompositions[code] = (canonical, tuple(ord(c) for c in nfkd))
        record = (flags, ccc, bits)
        if record not in record_ids:
            record_ids[record] = len(records)
            records.append(record)
        record_of_code.append(record_ids[record])
    assert len(records) <= 256
    return records, record_of_code, decompositions


def decomposition_pool(decompositions):
    """(pool, offset_of_code): the pool of UTF-16 code units holds, per distinct (canonical,
    compatibility) pair, a header unit (canonical length | compatibility length << 8 | separate
    << 15, lengths in code units), the canonical decomposition, then the compatibility one when it
    differs ("separate"; otherwise the compatibility decomposition is the same units, or the only
    ones when there is no canonical decomposition). Offset 0 means "no decomposition"."""
    pool, pool_offsets = [0], {}
    offset_of_code = [0] * (max(decompositions) + 1)
    for code, (canonical, compatibility) in sorted(decompositions.items()):
        key = (canonical, compatibility)
        if key not in pool_offsets:
            separate = bool(canonical) and canonical != compatibility
            canonical_units, compatibility_units = utf16(canonical), utf16(compatibility)
            assert len(canonical_units) < 256 and len(compatibility_units) < 128
            pool_offsets[key] = len(pool)
            pool.append(len(canonical_units) | len(compatibility_units) << 8 | separate << 15)
            pool.extend(canonical_units if canonical else compatibility_units)
            if separate:
                pool.extend(compatibility_units)
        offset_of_code[code] = pool_offsets[key]
    assert len(pool) < 1 << 16
    return pool, offset_of_code


HEADER = """\
// Generated by scripts/make_unicode_tables.py from Unicode {version} (Python {python} unicodedata).
// Do not edit: change the script and run /usr/bin/python3 scripts/make_unicode_tables.py.
//
// {total_bytes} bytes of tables in all:
// - kRecordPage / kRecordBlock ({record_table_bytes} B, blocks of {record_block} code points):
//   code point -> index into kRecords ({record_bytes} B, the {record_count} distinct
//   (flags, canonical combining class, quick-check bits) records).
// - kDecompositionPage / kDecompositionBlock ({offset_table_bytes} B, blocks of {offset_block} code
//   points): code point below kDecompositionLimit -> offset into kDecompositionPool
//   ({pool_bytes} B; 0 = none). Hangul syllables decompose arithmetically and are not there.
// - kCompositions ({pair_bytes} B): the {pair_count} primary composites other than Hangul
//   syllables, sorted by (first, second).

constexpr char kUnicodeVersion[] = "{version}";

constexpr int kRecordShift = {record_shift};
constexpr int kDecompositionShift = {offset_shift};
constexpr uint32_t kDecompositionLimit = 0x{decomposition_limit:X};
"""


def main():
    out_path = pathlib.Path(__file__).resolve().parent.parent / "src/tokenizer/unicode_tables.inc"

    composites = primary_composites()
    # The characters that can compose with a preceding one (NFC_QC / NFKC_QC "Maybe").
    composition_seconds = {second for (_, second) in composites} | set(HANGUL_V) | set(HANGUL_T)
    records, record_of_code, decompositions = code_point_data(composition_seconds)
    pool, offset_of_code = decomposition_pool(decompositions)
    pairs = sorted(composites.items())
    record_table = TwoLevelTable(record_of_code)
    offset_table = TwoLevelTable(offset_of_code)

    sizes = {
        "record_table_bytes": record_table.bytes,
        "record_bytes": len(records) * 4,  # sizeof(CodepointRecord)
        "offset_table_bytes": offset_table.bytes,
        "pool_bytes": len(pool) * 2,
        "pair_bytes": len(pairs) * 12,  # sizeof(CompositionPair)
    }
    version = unicodedata.unidata_version
    text = [HEADER.format(
        version=version, python=f"{sys.version_info.major}.{sys.version_info.minor}",
        total_bytes=sum(sizes.values()), record_block=1 << record_table.shift,
        record_count=len(records), offset_block=1 << offset_table.shift, pair_count=len(pairs),
        record_shift=record_table.shift, offset_shift=offset_table.shift,
        decomposition_limit=offset_table.limit, **sizes)]
    text.append(f"constexpr CodepointRecord kRecords[{len(records)}] = {{")
    for flags, ccc, bits in records:
        text.append(f"    {{0x{flags:04X}, {ccc}, 0x{bits:02X}}},")
    text.append("};")
    text.append(c_array("kRecordPage", record_table.page))
    text.append(c_array("kRecordBlock", record_table.blocks))
    text.append(c_array("kDecompositionPage", offset_table.page))
    text.append(c_array("kDecompositionBlock", offset_table.blocks))
    text.append(c_array("kDecompositionPool", pool, hex_digits=4))
    text.append(f"constexpr CompositionPair kCompositions[{len(pairs)}] = {{")
    for (first, second), composite in pairs:
        text.append(f"    {{0x{first:04X}, 0x{second:04X}, 0x{composite:04X}}},")
    text.append("};")
    out_path.write_text("\n".join(text) + "\n")
    print(f"wrote {out_path} ({sum(sizes.values())} bytes of tables, Unicode {version})")


if __name__ == "__main__":
    main()
