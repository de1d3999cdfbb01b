"""Image data sets on the user's disk (MNIST, Fashion-MNIST, binarized MNIST, Omniglot): found, checked, split.

Nothing is downloaded.  A data set's files are looked for in ``config.data_dir`` when it is set, otherwise in
``$STOCHGRAD_DATA/<dataset>`` (e.g. ``$STOCHGRAD_DATA/mnist/train-images-idx3-ubyte.gz``); each data set accepts
the layouts of :data:`IMAGE_SETS` (the first one complete in the folder is used).

What is checked, before anything is trained or measured:

- **identity** — with ``config.data_sha256 = ""`` (the default) every file must match one of its *published*
  checksums (:mod:`harness.workloads.image_sets` lists them with their sources).  A file of your own in the
  same format (a subset, a conversion, a generated test file) is used by naming its digest:
  ``config.data_sha256 = "<sha256>"``, the SHA-256 over the files found (:func:`files_digest`; the error for an
  unpublished file prints it).  So the configuration always names the exact bytes, the results record it (it
  is a configuration key) and cached checkpoints, keyed by the configuration, are never reused for other data.
  There is no unchecked mode.
- **format and shape** — every image is 28 × 28 = 784 pixels; greyscale values are integers in [0, 255] or
  floats in [0, 1]; binarized MNIST holds only 0 and 1.  With published files the split sizes must be the
  published ones (:attr:`ImageSet.counts`).

Splits follow the DisARM setup (Dong et al. 2020, google-research/disarm ``dataset.py``): MNIST and
Fashion-MNIST train on the first 50 000 training images and validate on the last 10 000, test on the 10 000
test images; binarized MNIST uses its own train / valid / test files (50 000 / 10 000 / 10 000); Omniglot
(``chardata.mat``, 24 345 training and 8 070 test characters) validates on the last 1 345 training images.  A
file of another size keeps the same validation fraction.  Images are stored as uint8 (greyscale, ``scale``
255, or 0/1) or float32 in [0, 1] (``scale`` 1): intensity = value / scale.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from harness.workloads import image_files as F
from harness.workloads.base import WorkloadError
from harness.workloads.image_sets import IMAGE_SETS, PIXELS, SIDE, DataFile, ImageSet, Layout

ENV = "STOCHGRAD_DATA"


@dataclass(frozen=True)
class Images:
    """A loaded data set: {split: uint8 or float32 [n, 784]}, the divisor giving intensities, where it came from."""

    splits: Mapping[str, np.ndarray]
    scale: float
    files: tuple[Path, ...]
    digest: str
    verified: str  # "published checksums" | "data_sha256"


# -- checksums --------------------------------------------------------------------------------------------
def file_hash(algorithm: str, data: bytes) -> str:
    if algorithm == "git-blob-sha1":
        return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    return hashlib.new(algorithm, data).hexdigest()


def files_digest(files: Mapping[str, bytes]) -> str:
    """The SHA-256 that ``config.data_sha256`` names: over ``"<role> <sha256 of the file>\\n"`` in layout order."""
    lines = "".join(f"{role} {hashlib.sha256(disk).hexdigest()}\n" for role, disk in files.items())
    return hashlib.sha256(lines.encode()).hexdigest()


def folder_digest(name: str, data_dir: str = "") -> str:
    """The digest of the files ``name`` would read from its folder (the value for ``config.data_sha256``)."""
    _, paths = locate(name, data_dir)
    return files_digest({role: p.read_bytes() for role, p in paths.items()})


def _matches(df: DataFile, disk: bytes, content: bytes) -> tuple[bool, str]:
    """Whether the file matches one of its published checksums, and what was compared (for the error)."""
    if not df.published:
        return False, "no checksum is published for this file"
    for c in df.published:
        if file_hash(c.algorithm, content if c.of == "content" else disk) == c.hexdigest:
            return True, ""
    c = df.published[0]
    got = file_hash(c.algorithm, content if c.of == "content" else disk)
    what = "uncompressed content" if c.of == "content" else "file"
    more = f", nor any of its {len(df.published) - 1} other published checksums" if len(df.published) > 1 else ""
    return False, f"{c.algorithm} of the {what} {got}, published {c.hexdigest} ({c.source}){more}"


# -- location ---------------------------------------------------------------------------------------------
def data_folder(name: str, data_dir: str) -> tuple[Path, str]:
    """(folder, how it was chosen): ``data_dir`` if set, else ``$STOCHGRAD_DATA/<name>``."""
    if data_dir:
        return Path(data_dir).expanduser(), "config.data_dir"
    root = os.environ.get(ENV, "")
    if not root:
        raise WorkloadError(
            "config.data_dir",
            f"dataset {name!r} reads files you already have: set config.data_dir to their folder or ${ENV} to a "
            f"folder holding {name}/ (expected there: {_expected(IMAGE_SETS[name])}); see docs/workloads.md",
        )
    return Path(root).expanduser() / name, f"${ENV}/{name}"


def _expected(s: ImageSet) -> str:
    return " or ".join(lay.describe() for lay in s.layouts)


def locate(name: str, data_dir: str) -> tuple[Layout, dict[str, Path]]:
    """The first layout of ``name`` complete in its folder, with the path of each role's file."""
    s = IMAGE_SETS[name]
    folder, how = data_folder(name, data_dir)
    if not folder.is_dir():
        raise WorkloadError(
            "config.data_dir", f"dataset {name!r}: no folder {folder} (from {how}); expected there: {_expected(s)}"
        )
    partial = []
    for lay in s.layouts:
        found = {f.role: next((folder / n for n in f.names if (folder / n).is_file()), None) for f in lay.files}
        if all(found.values()):
            return lay, {r: p for r, p in found.items() if p is not None}
        if any(found.values()):
            missing = [f.names[0] for f in lay.files if found[f.role] is None]
            partial.append(f"{lay.format}: missing {', '.join(missing)}")
    more = f" ({'; '.join(partial)})" if partial else ""
    raise WorkloadError(
        "config.data_dir",
        f"dataset {name!r}: no complete set of files in {folder} (from {how}){more}; expected: {_expected(s)}",
    )


# -- reading ----------------------------------------------------------------------------------------------
def _parts_idx(c: Mapping[str, bytes], p: Mapping[str, Path]) -> dict[str, np.ndarray]:
    return {role: F.decode_idx(c[role], p[role]) for role in c}


def _parts_amat(c: Mapping[str, bytes], p: Mapping[str, Path]) -> dict[str, np.ndarray]:
    return {role: F.decode_amat(c[role], p[role]) for role in c}


def _pick(arrays: Mapping[str, np.ndarray], keys: Mapping[str, str], optional: set[str], path: Path) -> dict:
    missing = [k for role, k in keys.items() if k not in arrays and role not in optional]
    if missing:
        raise F.FormatError(f"{path}: no array {missing[0]!r}; it holds {sorted(arrays)}")
    return {role: arrays[k] for role, k in keys.items() if k in arrays}


def _parts_npz(c: Mapping[str, bytes], p: Mapping[str, Path]) -> dict[str, np.ndarray]:
    arrays = F.decode_npz(c["all"], p["all"])
    return _pick(arrays, {"train": "x_train", "valid": "x_valid", "test": "x_test"}, {"valid"}, p["all"])


def _parts_mat(c: Mapping[str, bytes], p: Mapping[str, Path]) -> dict[str, np.ndarray]:
    """chardata.mat holds images as columns, each flattened column-major: transpose both (upright images)."""
    got = _pick(F.decode_mat(c["all"], p["all"]), {"train": "data", "test": "testdata"}, set(), p["all"])
    out = {}
    for role, a in got.items():
        if a.ndim != 2 or a.shape[0] != PIXELS:
            raise F.FormatError(
                f"{p['all']}: {role} array has shape {a.shape}; expected [{PIXELS}, n] (one image a column)"
            )
        out[role] = a.T.reshape(-1, SIDE, SIDE).transpose(0, 2, 1).reshape(-1, PIXELS)
    return out


PARTS: dict[str, Callable[[Mapping[str, bytes], Mapping[str, Path]], dict[str, np.ndarray]]] = {
    "idx": _parts_idx,
    "npz": _parts_npz,
    "amat": _parts_amat,
    "mat": _parts_mat,
}


def _images(s: ImageSet, a: np.ndarray, where: str) -> tuple[np.ndarray, float]:
    """[n, 784] uint8 or float32 and its scale; shape and value range checked."""
    if a.ndim not in (2, 3) or a.shape[1:] not in ((SIDE, SIDE), (PIXELS,)) or not len(a):
        raise WorkloadError(
            "config.dataset",
            f"{where}: images of shape {a.shape}; expected [n, {SIDE}, {SIDE}] or [n, {PIXELS}], n >= 1",
        )
    a = a.reshape(len(a), PIXELS)
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating) or a.dtype == bool):
        raise WorkloadError("config.dataset", f"{where}: pixel values of type {a.dtype}; expected numbers")
    lo, hi = (a.min(), a.max()) if a.dtype != bool else (0, 1)
    if s.binary:
        binary = lo >= 0 and hi <= 1 if not np.issubdtype(a.dtype, np.floating) else ((a == 0) | (a == 1)).all()
        if not binary:
            raise WorkloadError("config.dataset", f"{where}: {s.name} must hold only 0 and 1 (found {lo}..{hi})")
        return a.astype(np.uint8), 1.0
    if np.issubdtype(a.dtype, np.floating):
        if not (np.isfinite(a).all() and lo >= 0 and hi <= 1):
            raise WorkloadError("config.dataset", f"{where}: float pixels must be in [0, 1] (found {lo}..{hi})")
        return a.astype(np.float32), 1.0
    if lo < 0 or hi > 255:
        raise WorkloadError("config.dataset", f"{where}: integer pixels must be in [0, 255] (found {lo}..{hi})")
    return a.astype(np.uint8), 255.0


def _split(s: ImageSet, parts: Mapping[str, tuple[np.ndarray, float]], where: str) -> dict[str, np.ndarray]:
    train = parts["train"][0]
    if "valid" in parts:
        return {"train": train, "val": parts["valid"][0], "test": parts["test"][0]}
    n_val = round(len(train) * s.val_fraction)
    if not 1 <= n_val < len(train):
        raise WorkloadError(
            "config.dataset",
            f"{where}: {len(train)} training images cannot give a validation split of "
            f"{s.val_fraction:.4g} of them (need at least {int(np.ceil(1 / s.val_fraction))})",
        )
    return {"train": train[:-n_val], "val": train[-n_val:], "test": parts["test"][0]}


@cache
def _load(s: ImageSet, found: tuple[tuple[str, str, int, int], ...], fmt: str, data_sha256: str) -> Images:
    name = s.name
    lay = next(lay for lay in s.layouts if lay.format == fmt)
    paths = {role: Path(p) for role, p, _, _ in found}
    disk, content = {}, {}
    for role, p in paths.items():
        try:
            disk[role], content[role] = F.read_bytes(p)
        except F.FormatError as exc:
            raise WorkloadError("config.dataset", str(exc)) from None
    digest = files_digest(disk)
    if data_sha256:
        if digest != data_sha256:
            raise WorkloadError(
                "config.data_sha256",
                f"dataset {name!r}: the files {', '.join(map(str, paths.values()))} have digest "
                f"{digest}, the configuration names {data_sha256}",
            )
        verified = "data_sha256"
    else:
        for f in lay.files:
            ok, why = _matches(f, disk[f.role], content[f.role])
            if not ok:
                raise WorkloadError(
                    "config.data_sha256",
                    f"{paths[f.role]} is not the published {f.names[0]} of {name} ({why}). "
                    f'To use your own file in this format, set config.data_sha256 = "{digest}" (the digest of '
                    "the files found; it is recorded with the results)",
                )
        verified = "published checksums"
    try:
        raw = PARTS[fmt](content, paths)
    except F.FormatError as exc:
        raise WorkloadError("config.dataset", str(exc)) from None
    where = f"dataset {name!r} ({lay.describe()} in {next(iter(paths.values())).parent})"
    parts = {role: _images(s, a, f"{where}, {role}") for role, a in raw.items()}
    scales = {sc for _, sc in parts.values()}
    if len(scales) > 1:
        raise WorkloadError("config.dataset", f"{where}: the files mix integer and float pixels")
    splits = _split(s, parts, where)
    if not data_sha256:
        sizes = {k: len(v) for k, v in splits.items()}
        if sizes != dict(s.counts):
            raise WorkloadError("config.dataset", f"{where}: split sizes {sizes}; published {dict(s.counts)}")
    for v in splits.values():
        v.setflags(write=False)
    return Images(splits, scales.pop(), tuple(paths.values()), digest, verified)


def load(name: str, data_dir: str = "", data_sha256: str = "") -> Images:
    """The data set ``name`` from its folder, checked (see the module docstring); cached per process."""
    if name not in IMAGE_SETS:
        raise WorkloadError("config.dataset", f"unknown image data set {name!r}; valid: {sorted(IMAGE_SETS)}")
    lay, paths = locate(name, data_dir)
    found = tuple((role, str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for role, p in paths.items())
    return _load(IMAGE_SETS[name], found, lay.format, data_sha256)
