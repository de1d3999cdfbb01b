"""The published 28×28 image data sets: their file layouts, published checksums and split sizes (data, no I/O).

Sources of the checksums (each :class:`Checksum` names its own): torchvision's MD5s and TensorFlow Datasets'
``url_checksums`` SHA-256s of the MNIST / Fashion-MNIST ``.gz`` files, the MD5s of the uncompressed IDX files
(what ``md5sum`` prints after ``gunzip``; the same bytes whatever the compression), Keras' SHA-256 of
``mnist.npz``, TFDS' SHA-256s of Larochelle & Murray's binarized-MNIST ``.amat`` files, and the git object id of
Burda et al.'s ``chardata.mat`` in github.com/yburda/iwae (``git hash-object`` of the file; no other checksum
is published for it).  Split sizes follow the DisARM setup (see :mod:`harness.workloads.datasets`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

SIDE = 28
PIXELS = SIDE * SIDE


@dataclass(frozen=True)
class Checksum:
    """A published checksum: ``algorithm`` of the bytes on disk (``of="file"``) or of the decompressed content."""

    algorithm: str  # md5 | sha256 | git-blob-sha1 (git's object id: sha1 of "blob <size>\0" + bytes)
    hexdigest: str
    source: str
    of: str = "file"  # file | content


@dataclass(frozen=True)
class DataFile:
    """One file of a layout: what it holds (``role``), the names it may have, its published checksums."""

    role: str  # train | valid | test | all
    names: tuple[str, ...]
    published: tuple[Checksum, ...] = ()


@dataclass(frozen=True)
class Layout:
    """One way a data set is distributed: a file format and the files it needs."""

    format: str  # idx | npz | amat | mat
    files: tuple[DataFile, ...]

    def describe(self) -> str:
        """E.g. ``train-images-idx3-ubyte[.gz] + t10k-images-idx3-ubyte[.gz] (idx)``."""
        names = [
            f"{f.names[0]}[.gz]" if f.names[1:] == (f"{f.names[0]}.gz",) else "|".join(f.names) for f in self.files
        ]
        return " + ".join(names) + f" ({self.format})"


@dataclass(frozen=True, eq=False)  # hashed by identity: the per-process cache is keyed by the catalog entry
class ImageSet:
    """A data set of 28 × 28 images: its layouts and the published split sizes."""

    name: str
    doc: str
    binary: bool  # values are 0/1 already (no binarization needed)
    counts: Mapping[str, int]  # published examples per split: train, val, test
    layouts: tuple[Layout, ...]

    @property
    def val_fraction(self) -> float:
        """Validation examples carved from the end of the training file, as a fraction of that file."""
        return self.counts["val"] / (self.counts["train"] + self.counts["val"])


def _gz(*names: str) -> tuple[str, ...]:
    return tuple(n for name in names for n in (name, f"{name}.gz"))


def idx_layout(train: tuple[Checksum, ...], test: tuple[Checksum, ...]) -> Layout:
    return Layout(
        "idx",
        (
            DataFile("train", _gz("train-images-idx3-ubyte"), train),
            DataFile("test", _gz("t10k-images-idx3-ubyte"), test),
        ),
    )


def _npz(name: str, *published: Checksum) -> Layout:
    return Layout("npz", (DataFile("all", _gz(f"{name}.npz"), published),))


TV, TFDS, RAW = (
    "torchvision (.gz MD5)",
    "TensorFlow Datasets url_checksums (.gz SHA-256)",
    "MD5 of the uncompressed file",
)
MNIST = ImageSet(
    "mnist",
    "MNIST handwritten digits (LeCun et al.), 60 000 + 10 000 greyscale 28×28",
    binary=False,
    counts={"train": 50000, "val": 10000, "test": 10000},
    layouts=(
        idx_layout(
            (
                Checksum("md5", "6bbc9ace898e44ae57da46a324031adb", RAW, "content"),
                Checksum("md5", "f68b3c2dcbeaaa9fbdd348bbdeb94873", TV),
                Checksum("sha256", "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", TFDS),
            ),
            (
                Checksum("md5", "2646ac647ad5339dbf082846283269ea", RAW, "content"),
                Checksum("md5", "9fb629c4189551a2d022fa330f9573f3", TV),
                Checksum("sha256", "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", TFDS),
            ),
        ),
        _npz(
            "mnist",
            Checksum("sha256", "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1", "Keras mnist.npz"),
            Checksum("md5", "8a61469f7ea1b51cbae51d4f78837e45", "Keras mnist.npz (s3 img-datasets)"),
        ),
    ),
)
FASHION_MNIST = ImageSet(
    "fashion_mnist",
    "Fashion-MNIST (Xiao et al. 2017), 60 000 + 10 000 greyscale 28×28 article images",
    binary=False,
    counts={"train": 50000, "val": 10000, "test": 10000},
    layouts=(
        idx_layout(
            (
                Checksum("md5", "f4a8712d7a061bf5bd6d2ca38dc4d50a", RAW, "content"),
                Checksum("md5", "8d4fb7e6c68d591d4c3dfef9ec88bf0d", TV),
                Checksum("sha256", "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84", TFDS),
            ),
            (
                Checksum("md5", "8181f5470baa50b63fa0f6fddb340f0a", RAW, "content"),
                Checksum("md5", "bef4ecab320f06d8554ea6380940ec79", TV),
                Checksum("sha256", "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073", TFDS),
            ),
        ),
        _npz("fashion_mnist"),
    ),
)
AMAT = "TensorFlow Datasets url_checksums (binarized_mnist)"
BINARIZED_MNIST = ImageSet(
    "binarized_mnist",
    "binarized MNIST of Larochelle & Murray (2011), fixed 0/1 pixels, 50 000 / 10 000 / 10 000 (.amat)",
    binary=True,
    counts={"train": 50000, "val": 10000, "test": 10000},
    layouts=(
        Layout(
            "amat",
            (
                DataFile(
                    "train",
                    _gz("binarized_mnist_train.amat"),
                    (Checksum("sha256", "ad693b29f94c14277b095f5238ddefbbdaaae0939789dd2f4f0205278cee3e4d", AMAT),),
                ),
                DataFile(
                    "valid",
                    _gz("binarized_mnist_valid.amat"),
                    (Checksum("sha256", "1de3d397c40fe8eeb33dafd4099a1f665ec01e96d9be234aaeeac8a34930e2e2", AMAT),),
                ),
                DataFile(
                    "test",
                    _gz("binarized_mnist_test.amat"),
                    (Checksum("sha256", "e6687bfea3f820c174f33b7865140b2a2dd2930ef786f35d45795fc193b5ab2c", AMAT),),
                ),
            ),
        ),
        _npz("binarized_mnist"),
    ),
)
OMNIGLOT = ImageSet(
    "omniglot",
    "Omniglot 28×28 of Burda et al. (chardata.mat, IWAE repository), 24 345 + 8 070 greyscale characters",
    binary=False,
    counts={"train": 23000, "val": 1345, "test": 8070},
    layouts=(
        Layout(
            "mat",
            (
                DataFile(
                    "all",
                    _gz("chardata.mat"),
                    (
                        Checksum(
                            "git-blob-sha1",
                            "016a3536ffe5e1d38e42563a18d7a78bfaf643ec",
                            "github.com/yburda/iwae datasets/OMNIGLOT/chardata.mat (git object id)",
                        ),
                    ),
                ),
            ),
        ),
        _npz("omniglot"),
    ),
)
IMAGE_SETS: dict[str, ImageSet] = {s.name: s for s in (MNIST, FASHION_MNIST, BINARIZED_MNIST, OMNIGLOT)}
