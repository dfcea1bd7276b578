"""The IDX file format of the MNIST files (LeCun et al.: http://yann.lecun.com/exdb/mnist/), read
and written with the standard library and NumPy; ``.gz`` files are read as they are.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of dimensions),
each dimension as a big-endian unsigned 32-bit integer, then the data, row-major, big-endian.
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np

from seqbench.errors import ConfigError

#: IDX type codes and the NumPy types they stand for (big-endian)
TYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
         0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """The array stored in the IDX file ``path`` (gzipped if it ends in .gz); a ConfigError
    naming the file when it is not one."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise ConfigError(f"cannot read {path}: {e}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in TYPES:
        raise ConfigError(f"{path} is not an IDX file (bad magic number)")
    dtype, ndim = TYPES[data[2]], data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ConfigError(f"{path} is not an IDX file (truncated header)")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    count = int(np.prod(shape, dtype=np.int64))
    if len(data) - header != count * dtype.itemsize:
        raise ConfigError(f"{path} is damaged: its header says {shape} of {dtype.itemsize}-byte "
                          f"values, it holds {len(data) - header} bytes of data")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write ``array`` as an IDX file (gzipped if ``path`` ends in .gz): tests make small MNIST
    files with it."""
    path = Path(path)
    code = next((c for c, t in TYPES.items() if t == array.dtype.newbyteorder(">")), None)
    if code is None:
        raise ValueError(f"IDX has no type for {array.dtype}")
    blob = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) \
        + array.astype(TYPES[code]).tobytes()
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as f:
        f.write(blob)
