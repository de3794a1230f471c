"""Parse the IDX format of (Fashion-)MNIST: http://yann.lecun.com/exdb/mnist/ ("FILE FORMATS")."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from pipeline.data.raw import FormatError

_UBYTE = 0x08  # the only element type the datasets use


def read_idx(path: Path) -> np.ndarray:
    """Read a gzipped IDX file of unsigned bytes into an array of its declared shape."""
    try:
        with gzip.open(path, "rb") as handle:
            payload = handle.read()
    except (OSError, EOFError) as error:
        raise FormatError(f"{path}: not a readable gzip file ({error})") from None
    if len(payload) < 4 or payload[0:2] != b"\x00\x00" or payload[2] != _UBYTE:
        raise FormatError(f"{path}: not an IDX file of unsigned bytes (magic {payload[:4].hex()})")
    ndim = payload[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(payload) < header:
        raise FormatError(f"{path}: truncated IDX header")
    shape = tuple(int.from_bytes(payload[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape))
    if len(payload) != expected:
        raise FormatError(f"{path}: header declares shape {shape} ({expected} bytes) but file has {len(payload)}")
    return np.frombuffer(payload, dtype=np.uint8, offset=header).reshape(shape)
