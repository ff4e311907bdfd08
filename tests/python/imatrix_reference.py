#!/usr/bin/python3
"""An independent writer and reader of llama.cpp's importance-matrix files, for the C++ tests.

Written from the formats' descriptions (llama-imatrix's GGUF output and its legacy .dat), with
struct and numpy only; it shares no code with edgedistill's reader and writer.

  imatrix_reference.py write-gguf OUT SPEC.json   SPEC: {"datasets": [...], "chunk_count": n,
                                                   "chunk_size": n, "entries": {name:
                                                   {"sums": [...], "counts": [...]}}}
  imatrix_reference.py write-dat OUT SPEC.json    (entries: {name: {"values": [...], "ncall": n}})
  imatrix_reference.py read FILE                  prints JSON {"format", "datasets",
                                                   "chunk_count", "chunk_size", "importance":
                                                   {name: [mean squares]}}
"""
import json
import struct
import sys

import numpy as np

GGUF_MAGIC = b"GGUF"
T_UINT32, T_STRING, T_ARRAY = 4, 8, 9
GGML_F32 = 0
ALIGN = 32


def gguf_string(text):
    data = text.encode("utf-8")
    return struct.pack("<Q", len(data)) + data


def write_gguf(out, spec):
    kvs = [
        ("general.type", struct.pack("<I", T_STRING) + gguf_string("imatrix")),
        ("imatrix.datasets",
         struct.pack("<II", T_ARRAY, T_STRING) + struct.pack("<Q", len(spec["datasets"])) +
         b"".join(gguf_string(d) for d in spec["datasets"])),
        ("imatrix.chunk_count", struct.pack("<II", T_UINT32, spec["chunk_count"])),
        ("imatrix.chunk_size", struct.pack("<II", T_UINT32, spec["chunk_size"])),
    ]
    tensors = []  # (name, dims, float32 bytes)
    # llama-imatrix writes entries in its own order; use reversed sorted order here so a reader
    # that assumes sorted names is caught.
    for name in sorted(spec["entries"], reverse=True):
        e = spec["entries"][name]
        counts = np.asarray(e["counts"], dtype=np.float32)
        sums = np.asarray(e["sums"], dtype=np.float32)
        n_mat = len(counts)
        tensors.append((name + ".in_sum2", [len(sums) // n_mat, n_mat], sums.tobytes()))
        tensors.append((name + ".counts", [1, n_mat], counts.tobytes()))
    header = GGUF_MAGIC + struct.pack("<IQQ", 3, len(tensors), len(kvs))
    for key, value in kvs:
        header += gguf_string(key) + value
    offset = 0
    infos = b""
    for name, dims, data in tensors:
        infos += gguf_string(name) + struct.pack("<I", len(dims))
        infos += b"".join(struct.pack("<Q", d) for d in dims)
        infos += struct.pack("<IQ", GGML_F32, offset)
        offset += (len(data) + ALIGN - 1) // ALIGN * ALIGN
    blob = header + infos
    blob += b"\0" * (-len(blob) % ALIGN)
    for _, _, data in tensors:
        blob += data + b"\0" * (-len(data) % ALIGN)
    with open(out, "wb") as f:
        f.write(blob)


def write_dat(out, spec):
    blob = struct.pack("<i", len(spec["entries"]))
    for name, e in spec["entries"].items():
        raw = name.encode("utf-8")
        values = np.asarray(e["values"], dtype=np.float32)
        blob += struct.pack("<i", len(raw)) + raw + struct.pack("<ii", e["ncall"], len(values))
        blob += values.tobytes()
    if "chunk_count" in spec:
        blob += struct.pack("<i", spec["chunk_count"])
        dataset = spec["datasets"][-1].encode("utf-8") if spec.get("datasets") else b""
        blob += struct.pack("<i", len(dataset)) + dataset
    with open(out, "wb") as f:
        f.write(blob)


class Cursor:
    def __init__(self, data):
        self.data, self.at = data, 0

    def take(self, fmt):
        values = struct.unpack_from("<" + fmt, self.data, self.at)
        self.at += struct.calcsize("<" + fmt)
        return values if len(values) > 1 else values[0]

    def string(self):
        n = self.take("Q")
        text = self.data[self.at:self.at + n].decode("utf-8")
        self.at += n
        return text


def read_value(c, vtype):
    sizes = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q",
             12: "d"}
    if vtype == T_STRING:
        return c.string()
    if vtype == T_ARRAY:
        etype, n = c.take("I"), c.take("Q")
        return [read_value(c, etype) for _ in range(n)]
    return c.take(sizes[vtype])


def read_gguf(data):
    c = Cursor(data)
    c.at = 4
    version, n_tensors, n_kv = c.take("IQQ")
    assert version == 3, version
    meta = {}
    for _ in range(n_kv):
        key = c.string()
        meta[key] = read_value(c, c.take("I"))
    align = meta.get("general.alignment", ALIGN)
    infos = []
    for _ in range(n_tensors):
        name = c.string()
        dims = [c.take("Q") for _ in range(c.take("I"))]
        ttype, offset = c.take("IQ")
        assert ttype == GGML_F32, (name, ttype)
        infos.append((name, dims, offset))
    base = (c.at + align - 1) // align * align
    arrays = {}
    for name, dims, offset in infos:
        n = int(np.prod(dims))
        arrays[name] = np.frombuffer(data, dtype="<f4", count=n, offset=base + offset).reshape(
            dims[::-1])
    importance = {}
    for name in arrays:
        if name.endswith(".in_sum2"):
            stem = name[:-len(".in_sum2")]
            sums, counts = arrays[name], arrays[stem + ".counts"].reshape(-1)
            importance[stem] = [float(v) for row, k in zip(sums, counts) for v in row / k]
    return {"format": "gguf", "datasets": meta["imatrix.datasets"],
            "chunk_count": meta["imatrix.chunk_count"], "chunk_size": meta["imatrix.chunk_size"],
            "general.type": meta["general.type"], "importance": importance}


def read_dat(data):
    c = Cursor(data)
    importance = {}
    for _ in range(c.take("i")):
        n = c.take("i")
        name = data[c.at:c.at + n].decode("utf-8")
        c.at += n
        ncall, nval = c.take("ii")
        values = np.frombuffer(data, dtype="<f4", count=nval, offset=c.at)
        c.at += 4 * nval
        importance[name] = [float(v) for v in values / ncall]
    out = {"format": "dat", "importance": importance, "datasets": [], "chunk_count": 0}
    if c.at < len(data):
        out["chunk_count"] = c.take("i")
        n = c.take("i")
        out["datasets"] = [data[c.at:c.at + n].decode("utf-8")] if n > 0 else []
    return out


def main():
    command, path = sys.argv[1], sys.argv[2]
    if command == "read":
        with open(path, "rb") as f:
            data = f.read()
        print(json.dumps(read_gguf(data) if data[:4] == GGUF_MAGIC else read_dat(data)))
        return
    with open(sys.argv[3]) as f:
        spec = json.load(f)
    {"write-gguf": write_gguf, "write-dat": write_dat}[command](path, spec)


if __name__ == "__main__":
    main()
