#!/usr/bin/python3
"""An independent reader of the GGUF K-quant blocks (Q4_K, Q5_K, Q6_K, Q8_K) and of the 5-bit
32-element blocks (Q5_0, Q5_1, llama.cpp's fallbacks for rows that are not whole K-quant
super-blocks), written from ggml's block layouts with numpy and sharing nothing with the C++ code,
for tests/test_kquants_reference.cpp.

  kquants_reference.py random TYPE BLOCKS SEED OUT   random blocks with finite scales -> OUT
  kquants_reference.py dequantize TYPE IN OUT        blocks in IN -> float32 values in OUT

Layouts (little-endian, packed):
  q5_0: f16 d, 4 bytes (uint32) of fifth bits, 16 bytes of nibbles; 32 values (q - 16) d   (22)
  q5_1: f16 d, f16 m, 4 + 16 bytes as q5_0; 32 values q d + m                             (24)
256 values per K-quant super-block:
  q4_k: f16 d, f16 dmin, 12 bytes of 6-bit scales/mins, 128 bytes of 4-bit codes      (144)
  q5_k: f16 d, f16 dmin, 12 bytes of scales/mins, 32 bytes of fifth bits, 128 bytes    (176)
  q6_k: 128 bytes low 4 bits, 64 bytes high 2 bits, 16 int8 scales, f16 d             (210)
  q8_k: f32 d, 256 int8 codes, 16 int16 sums of 16 codes                               (292)
"""
import sys

import numpy as np

SIZES = {"q5_0": 22, "q5_1": 24, "q4_k": 144, "q5_k": 176, "q6_k": 210, "q8_k": 292}
VALUES = {"q5_0": 32, "q5_1": 32}  # elements per block; 256 for the rest


def scale_min(packed, j):
    """The 6-bit scale and minimum of sub-block j from the 12 packed bytes."""
    packed = [int(b) for b in packed]
    if j < 4:
        return packed[j] & 63, packed[j + 4] & 63
    scale = (packed[j + 4] & 15) | ((packed[j - 4] >> 6) << 4)
    minimum = (packed[j + 4] >> 4) | ((packed[j] >> 6) << 4)
    return scale, minimum


def f16(raw):
    return np.frombuffer(raw, dtype="<f2")[0].astype(np.float32)


def dequantize_block(kind, b):
    out = np.zeros(VALUES.get(kind, 256), dtype=np.float32)
    if kind in ("q5_0", "q5_1"):
        d = f16(b[0:2])
        m = f16(b[2:4]) if kind == "q5_1" else None
        start = 4 if kind == "q5_1" else 2
        high = int.from_bytes(b[start:start + 4], "little")
        qs = b[start + 4:start + 20]
        for j in range(32):
            low = (qs[j] & 15) if j < 16 else (qs[j - 16] >> 4)
            q = low | (((high >> j) & 1) << 4)
            out[j] = np.float32(q - 16) * d if m is None else np.float32(q) * d + m
    elif kind in ("q4_k", "q5_k"):
        d, dmin = f16(b[0:2]), f16(b[2:4])
        scales = b[4:16]
        if kind == "q4_k":
            qh, qs = None, np.frombuffer(b[16:144], dtype=np.uint8)
        else:
            qh, qs = np.frombuffer(b[16:48], dtype=np.uint8), np.frombuffer(b[48:176], dtype=np.uint8)
        for e in range(256):
            chunk, within = divmod(e, 64)
            upper = within >= 32
            byte = qs[32 * chunk + (within - 32 if upper else within)]
            q = (int(byte) >> 4) if upper else (int(byte) & 15)
            if qh is not None:
                bit = 2 * chunk + (1 if upper else 0)
                q |= ((int(qh[within - 32 if upper else within]) >> bit) & 1) << 4
            sc, m = scale_min(scales, e // 32)
            out[e] = np.float32(d * np.float32(sc)) * np.float32(q) - np.float32(dmin * np.float32(m))
    elif kind == "q6_k":
        ql = np.frombuffer(b[0:128], dtype=np.uint8)
        qh = np.frombuffer(b[128:192], dtype=np.uint8)
        sc = np.frombuffer(b[192:208], dtype=np.int8)
        d = f16(b[208:210])
        for e in range(256):
            half, r = divmod(e, 128)
            quarter, l = divmod(r, 32)   # quarter 0..3 of the half, l the position in it
            low_byte = ql[64 * half + l + (32 if quarter in (1, 3) else 0)]
            low = (int(low_byte) >> 4) if quarter >= 2 else (int(low_byte) & 15)
            high = (int(qh[32 * half + l]) >> (2 * quarter)) & 3
            q = (low | (high << 4)) - 32
            out[e] = np.float32(d * np.float32(sc[e // 16])) * np.float32(q)
    else:
        d = np.frombuffer(b[0:4], dtype="<f4")[0]
        qs = np.frombuffer(b[4:260], dtype=np.int8)
        out[:] = d * qs.astype(np.float32)
    return out


def random_blocks(kind, count, seed):
    rng = np.random.default_rng(seed)
    blocks = []
    for _ in range(count):
        raw = bytearray(rng.integers(0, 256, SIZES[kind], dtype=np.uint8).tobytes())
        scale = np.float16(rng.uniform(1e-3, 0.5) * rng.choice([-1, 1]))
        if kind in ("q5_0", "q5_1"):
            raw[0:2] = scale.tobytes()
            if kind == "q5_1":
                raw[2:4] = np.float16(rng.uniform(-1, 1)).tobytes()
        elif kind in ("q4_k", "q5_k"):
            raw[0:2] = np.float16(abs(scale)).tobytes()
            raw[2:4] = np.float16(rng.uniform(1e-3, 0.5)).tobytes()
        elif kind == "q6_k":
            raw[208:210] = scale.tobytes()
        else:
            raw[0:4] = np.float32(abs(scale)).tobytes()
            qs = np.frombuffer(bytes(raw[4:260]), dtype=np.int8).astype(np.int16)
            raw[260:292] = qs.reshape(16, 16).sum(axis=1).astype("<i2").tobytes()
        blocks.append(bytes(raw))
    return b"".join(blocks)


def main():
    if len(sys.argv) == 6 and sys.argv[1] == "random":
        _, _, kind, count, seed, out = sys.argv
        open(out, "wb").write(random_blocks(kind, int(count), int(seed)))
    elif len(sys.argv) == 5 and sys.argv[1] == "dequantize":
        _, _, kind, src, out = sys.argv
        data = open(src, "rb").read()
        size = SIZES[kind]
        if len(data) % size:
            sys.exit(f"{src}: {len(data)} bytes is not a whole number of {kind} blocks")
        values = [dequantize_block(kind, data[i:i + size]) for i in range(0, len(data), size)]
        np.concatenate(values).astype("<f4").tofile(out)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
