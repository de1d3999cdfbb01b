"""Readers of the image file formats the published VAE setups use: IDX (gzip'ed or not), .npz, .amat, MATLAB .mat.

:func:`read_bytes` gives a file's bytes on disk and its content (decompressed when the name ends in ``.gz``), so
checksums of either are computed from one read; every ``decode_*`` takes the content and returns arrays with the
example axis first.  A file that is not in the format raises :class:`FormatError` naming the file and what was
wrong.  Nothing here knows which data
set a file belongs to (that is :mod:`harness.workloads.datasets`).

- IDX (LeCun's MNIST format, also Fashion-MNIST): a big-endian header ``0x00 0x00 <type> <ndim>``, ``ndim``
  uint32 sizes, then the values; ``.gz`` files are decompressed first.
- ``.npz``: NumPy's zip of arrays (Keras' ``mnist.npz`` holds ``x_train`` and ``x_test``).
- ``.amat``: Larochelle & Murray's text matrices, one example per line, values separated by blanks
  (binarized MNIST: 784 zeros and ones per line), read with :func:`numpy.loadtxt`.
- ``.mat``: MATLAB files read with :func:`scipy.io.loadmat` (Burda et al.'s Omniglot ``chardata.mat``).
"""

from __future__ import annotations

import gzip
import io
import zipfile
import zlib
from pathlib import Path

import numpy as np

# IDX type byte -> big-endian NumPy dtype (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT")
IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class FormatError(ValueError):
    """A file that cannot be read in the expected format (the message names the file)."""


def read_bytes(path: Path) -> tuple[bytes, bytes]:
    """(bytes on disk, content): the content is decompressed when the file name ends in ``.gz``."""
    disk = Path(path).read_bytes()
    if Path(path).suffix != ".gz":
        return disk, disk
    try:
        return disk, gzip.decompress(disk)
    except (OSError, EOFError, zlib.error) as exc:
        raise FormatError(f"{path}: not a valid gzip file ({exc})") from None


def decode_idx(data: bytes, path: Path) -> np.ndarray:
    """An IDX array from its (decompressed) bytes: shape from the header, values in the header's type."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in IDX_TYPES:
        raise FormatError(f"{path}: not an IDX file (magic bytes {data[:4].hex() or 'missing'})")
    dtype, ndim = np.dtype(IDX_TYPES[data[2]]), data[3]
    head = 4 + 4 * ndim
    if ndim == 0 or len(data) < head:
        raise FormatError(f"{path}: truncated IDX header ({ndim} dimensions)")
    shape = tuple(int(s) for s in np.frombuffer(data, ">u4", count=ndim, offset=4))
    want = head + int(np.prod(shape)) * dtype.itemsize
    if len(data) != want:
        raise FormatError(f"{path}: IDX header says shape {shape} ({want} bytes), the file has {len(data)} bytes")
    return np.frombuffer(data, dtype, offset=head).reshape(shape).astype(dtype.newbyteorder("="), copy=False)


def decode_npz(data: bytes, path: Path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file (pickled objects are refused)."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise FormatError(f"{path}: not a readable .npz file ({exc})") from None


def decode_amat(data: bytes, path: Path) -> np.ndarray:
    """An integer ``.amat`` text matrix (values 0..255, e.g. binarized MNIST's 0/1) -> uint8 [lines, columns]."""
    if not data.strip():
        raise FormatError(f"{path}: empty .amat file")
    try:
        a = np.loadtxt(io.BytesIO(data), dtype=np.uint8, ndmin=2)
    except ValueError as exc:
        raise FormatError(f"{path}: not a matrix of integers in [0, 255], one example a line ({exc})") from None
    return a


def decode_mat(data: bytes, path: Path) -> dict[str, np.ndarray]:
    """The numeric arrays of a MATLAB ``.mat`` file (``scipy.io.loadmat``; MATLAB's own keys dropped)."""
    from scipy import io as sio

    try:
        got = sio.loadmat(io.BytesIO(data))
    except (ValueError, TypeError, OSError, NotImplementedError) as exc:
        raise FormatError(f"{path}: not a readable MATLAB .mat file ({exc})") from None
    return {k: v for k, v in got.items() if not k.startswith("__") and isinstance(v, np.ndarray)}
