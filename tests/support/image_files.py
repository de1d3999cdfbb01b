"""Write image data sets in the published formats (IDX, .gz, .npz, .amat, .mat) with generated pixels.

Tests write small files with these; ``python -m tests.support.image_files DIR`` writes every data set at its
published size (60 000 × 784 etc.) under ``DIR/<dataset>/`` and prints each set's ``data_sha256`` — what the
suite headers' wall-clock times were measured on (docs/workloads.md, "Measured on files of the real size").
"""

from __future__ import annotations

import argparse
import gzip
import io
import struct
from pathlib import Path

import numpy as np
from scipy import io as sio

from harness.workloads import datasets


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)


def idx_bytes(a: np.ndarray) -> bytes:
    """uint8 array -> IDX bytes (magic 0x0000 08 <ndim>, big-endian sizes)."""
    a = np.ascontiguousarray(a, np.uint8)
    return bytes([0, 0, 0x08, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes()


def write_idx(path: Path, a: np.ndarray) -> None:
    _write(path, idx_bytes(a))


def write_npz(path: Path, **arrays: np.ndarray) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    _write(path, buf.getvalue())


def amat_bytes(a: np.ndarray) -> bytes:
    """0..9 [n, d] -> the binarized-MNIST text layout: one-digit values separated by one blank, one example a line."""
    chars = np.full((len(a), 2 * a.shape[1]), ord(" "), np.uint8)
    chars[:, 0::2] = ord("0") + np.asarray(a, np.uint8)
    chars[:, -1] = ord("\n")
    return chars.tobytes()


def write_amat(path: Path, a: np.ndarray) -> None:
    _write(path, amat_bytes(a))


def write_mat(path: Path, **arrays: np.ndarray) -> None:
    buf = io.BytesIO()
    sio.savemat(buf, arrays)
    _write(path, buf.getvalue())


def images(rng: np.random.Generator, n: int) -> np.ndarray:
    """n greyscale 28×28 uint8 images: a bright blob on a dark background (so binarization is non-trivial)."""
    yy, xx = np.mgrid[:28, :28]
    c = rng.uniform(8, 20, size=(n, 2, 1, 1))
    r2 = (yy - c[:, 0]) ** 2 + (xx - c[:, 1]) ** 2
    base = 255 * np.exp(-r2 / rng.uniform(10, 40, size=(n, 1, 1)))
    return np.clip(base + rng.normal(0, 20, size=base.shape), 0, 255).astype(np.uint8)


def write_set(name: str, folder: Path, fmt: str, n: dict[str, int], seed: int = 0, gz: bool = False) -> str:
    """Write data set ``name`` in format ``fmt`` with ``n`` = {train, test[, valid]} examples; returns its digest.

    For idx / mat / npz without ``valid`` the training file holds train + val (the loader carves val).
    """
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    z = ".gz" if gz else ""
    x = {k: images(rng, v) for k, v in n.items()}
    if name == "binarized_mnist":
        x = {k: (v > 127).astype(np.uint8) for k, v in x.items()}
    if fmt == "idx":
        write_idx(folder / f"train-images-idx3-ubyte{z}", x["train"])
        write_idx(folder / f"t10k-images-idx3-ubyte{z}", x["test"])
    elif fmt == "npz":
        write_npz(folder / f"{name}.npz{z}", **{f"x_{k}": v for k, v in x.items()})
    elif fmt == "amat":
        for k, v in x.items():
            write_amat(folder / f"binarized_mnist_{k}.amat{z}", v.reshape(len(v), -1))
    elif fmt == "mat":  # chardata.mat: float [784, n] columns, each image flattened column-major
        col = {k: (v.astype(np.float64) / 255).transpose(0, 2, 1).reshape(len(v), -1).T for k, v in x.items()}
        write_mat(folder / f"chardata.mat{z}", data=col["train"], testdata=col["test"])
    else:
        raise ValueError(f"unknown format {fmt!r}")
    return datasets.folder_digest(name, str(folder))


REAL = {  # the published sizes, in the first layout of each data set
    "mnist": ("idx", {"train": 60000, "test": 10000}),
    "fashion_mnist": ("idx", {"train": 60000, "test": 10000}),
    "binarized_mnist": ("amat", {"train": 50000, "valid": 10000, "test": 10000}),
    "omniglot": ("mat", {"train": 24345, "test": 8070}),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("root", type=Path, help="folder to write <dataset>/ folders into (use as $STOCHGRAD_DATA)")
    ap.add_argument("--only", nargs="*", default=list(REAL), choices=list(REAL))
    ap.add_argument("--gz", action="store_true", help="gzip the files")
    a = ap.parse_args()
    for name in a.only:
        fmt, n = REAL[name]
        print(f"{name} data_sha256 = {write_set(name, a.root / name, fmt, n, gz=a.gz)}")


if __name__ == "__main__":
    main()
