"""A small safetensors reader in pure Python (json + numpy).

A safetensors file is an 8-byte little-endian header length n, n bytes of
JSON naming each tensor's dtype, shape and [begin, end) byte range in the
data that follows, then the data: row-major, little-endian.

    f = SafeTensors("trace.safetensors")
    f.names()                 # sorted tensor names
    f.shape("logits")         # (L, V)
    x = f["logits"]           # numpy array; BF16 comes back as float32
    tensors = load("trace.safetensors")   # {name: array}
"""

import json
import struct

import numpy as np

_DTYPES = {
    "F64": "<f8",
    "F32": "<f4",
    "F16": "<f2",
    "I64": "<i8",
    "I32": "<i4",
    "I16": "<i2",
    "I8": "i1",
    "U8": "u1",
    "BOOL": "?",
}


class SafeTensors:
    """The tensors of one file, read on demand."""

    def __init__(self, path):
        self.path = path
        with open(path, "rb") as f:
            raw = f.read(8)
            if len(raw) != 8:
                raise ValueError(f"{path}: shorter than the 8-byte header length")
            (n,) = struct.unpack("<Q", raw)
            header = json.loads(f.read(n))
        self.metadata = header.pop("__metadata__", {})
        self._entries = header
        self._data_start = 8 + n

    def names(self):
        return sorted(self._entries)

    def __contains__(self, name):
        return name in self._entries

    def dtype(self, name):
        return self._entries[name]["dtype"]

    def shape(self, name):
        return tuple(self._entries[name]["shape"])

    def __getitem__(self, name):
        if name not in self._entries:
            raise KeyError(f"{self.path}: no tensor named {name}")
        e = self._entries[name]
        begin, end = e["data_offsets"]
        with open(self.path, "rb") as f:
            f.seek(self._data_start + begin)
            raw = f.read(end - begin)
        if e["dtype"] == "BF16":  # the upper half of a float32
            bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            values = bits.view(np.float32)
        elif e["dtype"] in _DTYPES:
            values = np.frombuffer(raw, dtype=_DTYPES[e["dtype"]])
        else:
            raise ValueError(f"{self.path}: tensor {name} has dtype {e['dtype']}, which this reader does not know")
        return values.reshape(e["shape"]).copy()


def load(path):
    """Every tensor of the file, as {name: numpy array}."""
    f = SafeTensors(path)
    return {name: f[name] for name in f.names()}
