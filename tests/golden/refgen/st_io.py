"""Safetensors writing in the reference layout, checked by reading back with the safetensors library.

Layout (what the C++ reader is tested against): 8-byte little-endian header length N, N bytes of compact
JSON with `__metadata__` first and the tensors in insertion order, 8-byte dtypes (F64, I64) stored before
4-byte ones so every tensor is naturally aligned, header padded with spaces to a multiple of 8, no holes.
"""
import json
import os
import struct

import torch
from safetensors.torch import load_file

_DTYPE_NAMES = {torch.float64: "F64", torch.float32: "F32", torch.int64: "I64", torch.float16: "F16",
                torch.bfloat16: "BF16", torch.int32: "I32", torch.uint8: "U8", torch.bool: "BOOL"}


def write(path, tensors, metadata=None):
    """Writes `tensors` (name -> tensor, insertion order kept within each element size) atomically."""
    items = []
    for name, t in tensors.items():
        t = t.detach().cpu().contiguous()
        if t.dtype not in _DTYPE_NAMES:
            raise TypeError(f"{path}: {name} has unsupported dtype {t.dtype}")
        items.append((name, t))
    items.sort(key=lambda kv: -kv[1].element_size())  # stable: insertion order within a size
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name, t in items:
        data = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": _DTYPE_NAMES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)
    # Independent read-back: the safetensors library must return every tensor bit-exactly.
    back = load_file(path)
    if set(back) != {n for n, _ in items}:
        raise RuntimeError(f"{path}: read-back names differ")
    for name, t in items:
        if back[name].dtype != t.dtype or back[name].shape != t.shape or not torch.equal(back[name], t):
            raise RuntimeError(f"{path}: {name} differs after read-back")


def write_f64(path, tensors, metadata=None):
    """A float64 run's outputs: every floating tensor stored as F64 (some quantities, like diffusers' float32
    sinusoid or a float accuracy, come out of a float64 run as float32)."""
    write(path, {k: (v.double() if v.is_floating_point() else v) for k, v in tensors.items()}, metadata)


def describe(path):
    """[(name, dtype, shape)] in header order, and the metadata."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    meta = header.pop("__metadata__", {})
    return [(k, v["dtype"], v["shape"]) for k, v in header.items()], meta


def tensor_list(path, indent="  - "):
    """Markdown bullet list of a file's tensors, as the case READMEs show them."""
    rows, _ = describe(path)
    return "\n".join(f"{indent}`{n}` {d} {s}" for n, d, s in rows)


def one_line(path):
    rows, _ = describe(path)
    return ", ".join(f"`{n}` {d}{s}" for n, d, s in rows)
