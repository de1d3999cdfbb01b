"""Image data sets on disk: readers of IDX/.gz/.npz/.amat/.mat, checksums, location, splits, the VAE and the CLI.

Every file here is written by the test (tests/support/image_files.py) in the published format; the published
checksum path is exercised with a catalog entry whose checksums are those of the written files.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from harness.targets import workload_truth as truth
from harness.targets.workload import WorkloadSpec
from harness.training import checkpoints
from harness.workloads import WorkloadError, datasets, get_workload
from harness.workloads import image_files as F
from harness.workloads import image_sets as S
from tests.support import image_files as W

SMALL = {"train": 60, "test": 10}
CASES = [  # (data set, format, examples)
    ("mnist", "idx", SMALL),
    ("mnist", "npz", SMALL),
    ("fashion_mnist", "idx", SMALL),
    ("fashion_mnist", "npz", {"train": 50, "valid": 10, "test": 10}),
    ("binarized_mnist", "amat", {"train": 50, "valid": 10, "test": 10}),
    ("omniglot", "mat", SMALL),
    ("omniglot", "npz", SMALL),
]
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(datasets.ENV, raising=False)
    monkeypatch.setenv("STOCHGRAD_CACHE", str(tmp_path_factory.mktemp("ckpt")))
    checkpoints._MEMO.clear()
    truth._MEMO.clear()
    yield
    checkpoints._MEMO.clear()
    truth._MEMO.clear()


# -- readers --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("gz", [False, True])
def test_idx_roundtrip_and_header_checks(tmp_path: Path, gz: bool) -> None:
    a = np.random.default_rng(0).integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    p = tmp_path / ("x.idx.gz" if gz else "x.idx")
    W.write_idx(p, a)
    disk, content = F.read_bytes(p)
    assert (disk != content) == gz and content == W.idx_bytes(a)
    np.testing.assert_array_equal(F.decode_idx(content, p), a)
    with pytest.raises(F.FormatError, match="header says shape"):
        F.decode_idx(content[:-1], p)
    with pytest.raises(F.FormatError, match="not an IDX file"):
        F.decode_idx(b"PK\x03\x04" + content[4:], p)
    big = np.arange(6, dtype=">i4").reshape(2, 3)  # other IDX types: big-endian int32
    raw = bytes([0, 0, 0x0C, 2]) + np.array([2, 3], ">u4").tobytes() + big.tobytes()
    np.testing.assert_array_equal(F.decode_idx(raw, p), big)


def test_bad_gzip_is_a_format_error(tmp_path: Path) -> None:
    p = tmp_path / "x.gz"
    p.write_bytes(b"not gzip at all")
    with pytest.raises(F.FormatError, match="not a valid gzip"):
        F.read_bytes(p)


def test_amat_roundtrip_and_errors(tmp_path: Path) -> None:
    a = (np.random.default_rng(1).random((7, 784)) < 0.3).astype(np.uint8)
    text = W.amat_bytes(a)
    assert len(text) == 7 * 1568  # the published files: 1568 bytes a line (78 400 000 for 50 000 lines)
    p = tmp_path / "x.amat"
    np.testing.assert_array_equal(F.decode_amat(text, p), a)
    np.testing.assert_array_equal(F.decode_amat(text + b"\n\n", p), a)  # trailing blank lines
    for data, msg in {b"0 1 1\n1 0\n": "not a matrix", b"0 0.5 1\n": "not a matrix", b"\n \n": "empty"}.items():
        with pytest.raises(F.FormatError, match=msg):
            F.decode_amat(data, p)
    W.write_amat(tmp_path / "binarized_mnist_train.amat", np.full((12, 784), 2))  # integers, but not binary
    W.write_amat(tmp_path / "binarized_mnist_valid.amat", a)
    W.write_amat(tmp_path / "binarized_mnist_test.amat", a)
    with pytest.raises(WorkloadError, match="only 0 and 1"):
        datasets.load("binarized_mnist", str(tmp_path), datasets.folder_digest("binarized_mnist", str(tmp_path)))


def test_npz_and_mat_readers(tmp_path: Path) -> None:
    W.write_npz(tmp_path / "a.npz", x_train=np.zeros((2, 3)))
    assert set(F.decode_npz((tmp_path / "a.npz").read_bytes(), tmp_path / "a.npz")) == {"x_train"}
    with pytest.raises(F.FormatError, match="not a readable .npz"):
        F.decode_npz(b"garbage", tmp_path / "b.npz")
    W.write_mat(tmp_path / "c.mat", data=np.ones((784, 3)))
    got = F.decode_mat((tmp_path / "c.mat").read_bytes(), tmp_path / "c.mat")
    assert list(got) == ["data"] and got["data"].shape == (784, 3)
    with pytest.raises(F.FormatError, match="not a readable MATLAB"):
        F.decode_mat(b"garbage" * 30, tmp_path / "d.mat")


# -- loading: user files (digest), splits, scale ------------------------------------------------------------
@pytest.mark.parametrize(("name", "fmt", "n"), CASES, ids=[f"{a}-{b}" for a, b, _ in CASES])
@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_own_files_need_their_digest(tmp_path: Path, name: str, fmt: str, n: dict, gz: bool) -> None:
    """Unpublished files are refused with the digest to pin; pinned, they load with the published split rule."""
    digest = W.write_set(name, tmp_path, fmt, n, gz=gz)
    with pytest.raises(WorkloadError) as info:
        datasets.load(name, str(tmp_path))
    msg = str(info.value)
    assert info.value.key == "config.data_sha256" and f'data_sha256 = "{digest}"' in msg and str(tmp_path) in msg
    imgs = datasets.load(name, str(tmp_path), digest)
    s = S.IMAGE_SETS[name]
    n_val = n.get("valid", round(n["train"] * s.val_fraction))
    n_train = n["train"] if "valid" in n else n["train"] - n_val
    assert {k: v.shape for k, v in imgs.splits.items()} == {
        "train": (n_train, 784),
        "val": (n_val, 784),
        "test": (n["test"], 784),
    }
    assert imgs.verified == "data_sha256" and imgs.digest == digest
    x = np.concatenate(list(imgs.splits.values())) / imgs.scale
    assert x.min() >= 0 and x.max() <= 1 and x.max() > 0.5
    if name == "binarized_mnist":
        assert imgs.scale == 1 and set(np.unique(x)) == {0.0, 1.0}
    with pytest.raises(WorkloadError, match="have digest") as info:
        datasets.load(name, str(tmp_path), "0" * 64)
    assert info.value.key == "config.data_sha256"


def test_images_keep_their_pixels_and_orientation(tmp_path: Path) -> None:
    """IDX, npz and chardata.mat (column-major columns) give the same upright images, in file order."""
    rng = np.random.default_rng(5)
    imgs = W.images(rng, 12)
    W.write_idx(tmp_path / "i" / "train-images-idx3-ubyte", imgs)
    W.write_idx(tmp_path / "i" / "t10k-images-idx3-ubyte", imgs[:3])
    a = datasets.load("mnist", str(tmp_path / "i"), datasets.folder_digest("mnist", str(tmp_path / "i")))
    n_val = round(12 * S.MNIST.val_fraction)
    np.testing.assert_array_equal(a.splits["train"], imgs[: 12 - n_val].reshape(-1, 784))
    np.testing.assert_array_equal(a.splits["val"], imgs[12 - n_val :].reshape(-1, 784))
    col = (imgs / 255.0).transpose(0, 2, 1).reshape(12, -1).T  # Burda et al.'s layout
    W.write_mat(tmp_path / "m" / "chardata.mat", data=col, testdata=col[:, :3])
    m = datasets.load("omniglot", str(tmp_path / "m"), datasets.folder_digest("omniglot", str(tmp_path / "m")))
    np.testing.assert_allclose(m.splits["test"] * 255, imgs[:3].reshape(3, 784), atol=1e-3)
    assert m.splits["train"].dtype == np.float32 and m.scale == 1


def test_published_checksums_are_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The published path: content MD5 of a .gz IDX, a file SHA-256, a git blob id; counts must be published."""
    W.write_set("mnist", tmp_path, "idx", {"train": 12, "test": 3}, gz=True)
    tr, te = tmp_path / "train-images-idx3-ubyte.gz", tmp_path / "t10k-images-idx3-ubyte.gz"
    blob = subprocess.run(["git", "hash-object", str(te)], capture_output=True, text=True, check=True).stdout.strip()
    assert datasets.file_hash("git-blob-sha1", te.read_bytes()) == blob  # git's object id, as GitHub publishes it
    md5_content = hashlib.md5(gzip.decompress(tr.read_bytes())).hexdigest()
    published = S.ImageSet(
        "mnist",
        "test",
        False,
        {"train": 10, "val": 2, "test": 3},
        (
            S.idx_layout(
                (S.Checksum("md5", "0" * 32, "wrong"), S.Checksum("md5", md5_content, "test", "content")),
                (S.Checksum("git-blob-sha1", blob, "test"),),
            ),
        ),
    )
    monkeypatch.setitem(datasets.IMAGE_SETS, "mnist", published)
    imgs = datasets.load("mnist", str(tmp_path))
    assert imgs.verified == "published checksums"
    assert {k: len(v) for k, v in imgs.splits.items()} == {"train": 10, "val": 2, "test": 3}
    monkeypatch.setitem(
        datasets.IMAGE_SETS, "mnist", dataclasses.replace(published, counts={"train": 10, "val": 2, "test": 4})
    )
    with pytest.raises(WorkloadError, match="split sizes"):
        datasets.load("mnist", str(tmp_path))
    W.write_idx(te, np.zeros((3, 28, 28)))  # a different file under the published name
    monkeypatch.setitem(datasets.IMAGE_SETS, "mnist", published)
    with pytest.raises(WorkloadError, match=r"not the published t10k-images-idx3-ubyte of mnist \(git-blob-sha1"):
        datasets.load("mnist", str(tmp_path))


# -- location and content errors ------------------------------------------------------------------------------
def test_location_errors_name_what_and_where(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(WorkloadError) as info:
        datasets.load("mnist")
    msg = str(info.value)
    assert info.value.key == "config.data_dir" and "$STOCHGRAD_DATA" in msg and "train-images-idx3-ubyte" in msg
    assert "mnist.npz" in msg
    monkeypatch.setenv(datasets.ENV, str(tmp_path))
    with pytest.raises(WorkloadError, match=f"no folder {tmp_path / 'mnist'} \\(from \\$STOCHGRAD_DATA/mnist\\)"):
        datasets.load("mnist")
    W.write_idx(tmp_path / "mnist" / "train-images-idx3-ubyte", W.images(np.random.default_rng(0), 12))
    with pytest.raises(WorkloadError, match="idx: missing t10k-images-idx3-ubyte"):
        datasets.load("mnist")
    W.write_idx(tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz", W.images(np.random.default_rng(1), 3))
    d = datasets.folder_digest("mnist")  # found through $STOCHGRAD_DATA/mnist
    assert datasets.load("mnist", "", d).files[1].name == "t10k-images-idx3-ubyte.gz"
    with pytest.raises(WorkloadError, match="unknown image data set 'mnits'"):
        datasets.load("mnits")


@pytest.mark.parametrize(
    ("name", "arrays", "msg"),
    [
        ("mnist", {"x_train": np.zeros((12, 27, 27), np.uint8), "x_test": np.zeros((3, 28, 28), np.uint8)}, "shape"),
        ("mnist", {"x_train": np.full((12, 784), 1.5), "x_test": np.zeros((3, 784))}, r"\[0, 1\]"),
        ("mnist", {"x_train": np.full((12, 784), 300), "x_test": np.zeros((3, 784), int)}, r"\[0, 255\]"),
        ("binarized_mnist", {"x_train": np.full((12, 784), 2), "x_test": np.zeros((3, 784), int)}, "only 0 and 1"),
        ("mnist", {"x_train": np.zeros((1, 784), np.uint8), "x_test": np.zeros((3, 784), np.uint8)}, "validation"),
        ("mnist", {"x_test": np.zeros((3, 784), np.uint8)}, "no array 'x_train'"),
        ("mnist", {"x_train": np.zeros((12, 784)), "x_test": np.zeros((3, 784), np.uint8)}, "mix integer and float"),
    ],
    ids=["27x27", "float>1", "int>255", "binary-2", "too-few", "no-train", "mixed"],
)
def test_bad_content_is_refused(tmp_path: Path, name: str, arrays: dict, msg: str) -> None:
    W.write_npz(tmp_path / f"{name}.npz", **arrays)
    with pytest.raises(WorkloadError, match=msg) as info:
        datasets.load(name, str(tmp_path), datasets.folder_digest(name, str(tmp_path)))
    assert info.value.key == "config.dataset" and str(tmp_path) in str(info.value)


# -- the VAE on a file data set --------------------------------------------------------------------------------
def _mnist(tmp_path: Path) -> tuple[str, str]:
    folder = tmp_path / "mnist"
    return str(folder), W.write_set("mnist", folder, "idx", {"train": 60, "test": 10})


def test_vae_on_a_file_data_set(tmp_path: Path) -> None:
    """784 pixels, binarized from value/255, trained checkpoints; data_dir is not part of the model's identity."""
    folder, digest = _mnist(tmp_path)
    cfg = {"dataset": "mnist", "data_dir": folder, "data_sha256": digest, "latent_dim": 3}
    for binarize in ("fixed", "dynamic"):
        ws = WorkloadSpec("vae_bernoulli", {**cfg, "binarize": binarize}, checkpoint=3, batch_size=4)
        p = ws.build()
        assert p.x["x"].shape == (4, 784) and set(np.unique(p.x["x"])) == {0.0, 1.0}
        assert p.state["enc_W0"].shape == (784, 3) and p.exact.method == "enumeration"
    wl = get_workload("vae_bernoulli")
    val = wl.dataset(wl.resolve(cfg))["val"]["x"]
    raw = {"x": np.asarray(val, np.float64)}
    fixed = wl.prepare_batch(raw, np.random.default_rng(0), wl.resolve(cfg))["x"]
    np.testing.assert_array_equal(fixed, val / 255.0 > 0.5)
    moved = tmp_path / "elsewhere"
    shutil.copytree(folder, moved)
    a, b = wl.resolve(cfg), wl.resolve({**cfg, "data_dir": str(moved)})
    assert checkpoints.state_key(wl, a, 5) == checkpoints.state_key(wl, b, 5)
    c = wl.resolve({**cfg, "data_sha256": "1" * 64})
    assert checkpoints.state_key(wl, a, 5) != checkpoints.state_key(wl, c, 5)


def test_dynamic_binarization_draws_pixels_with_their_intensity(tmp_path: Path) -> None:
    """Bernoulli(value/255) per pixel: over 4000 draws each pixel's frequency is within 5 SE (Bonferroni-safe)."""
    folder, digest = _mnist(tmp_path)
    wl = get_workload("vae_bernoulli")
    cfg = wl.resolve({"dataset": "mnist", "data_dir": folder, "data_sha256": digest, "binarize": "dynamic"})
    v = np.asarray(wl.dataset(cfg)["test"]["x"][:2], np.float64)
    rng = np.random.default_rng(11)
    draws = np.mean([wl.prepare_batch({"x": v}, rng, cfg)["x"] for _ in range(4000)], axis=0)
    p = v / 255
    se = np.sqrt(p * (1 - p) / 4000) + 1e-12
    z = np.abs(draws - p) / se
    assert z.max() < 5.5, (z.max(), "seed=11")  # 1568 pixels: P(max |z| > 5.5) < 1e-4


@pytest.mark.parametrize(
    ("config", "key", "needle"),
    [
        ({"dataset": "mnits"}, "config.dataset", "binarized_mnist"),
        ({"data_dir": "/tmp"}, "config.data_dir", "scikit-learn"),
        ({"dataset": "mnist", "data_sha256": "xyz"}, "config.data_sha256", "64 lowercase hex"),
        ({"dataset": "mnist"}, "config.data_dir", "STOCHGRAD_DATA"),
    ],
)
def test_bad_dataset_config(config: dict, key: str, needle: str) -> None:
    with pytest.raises(WorkloadError) as info:
        WorkloadSpec("vae_bernoulli", config).build()
    assert info.value.key == key and needle in str(info.value), str(info.value)


# -- the shipped suites: refused without data, nothing written; expand with it ----------------------------------
@pytest.mark.parametrize(("cmd", "suite"), [("run", "workloads_mnist"), ("train", "train_mnist")])
def test_mnist_suites_without_data_exit_2(tmp_path: Path, capsys, cmd: str, suite: str) -> None:
    from harness.cli import main

    out = tmp_path / "run"
    path = ROOT / "suites" / f"{suite}.toml"
    for extra in (["--dry-run"], []):
        assert main([cmd, str(path), "--out", str(out), *extra]) == 2
        err = capsys.readouterr().err
        assert str(path) in err and "config.data_dir" in err and "STOCHGRAD_DATA" in err, err
        assert "Traceback" not in err and not out.exists()


@pytest.mark.parametrize(("cmd", "suite"), [("run", "workloads_mnist"), ("train", "train_mnist")])
def test_mnist_suites_with_unpublished_data_exit_2(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch, cmd: str, suite: str
) -> None:
    from harness.cli import main

    _, digest = _mnist(tmp_path)
    monkeypatch.setenv(datasets.ENV, str(tmp_path))
    out = tmp_path / "run"
    assert main([cmd, str(ROOT / "suites" / f"{suite}.toml"), "--out", str(out), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "config.data_sha256" in err and digest in err and not out.exists(), err


def test_mnist_suites_expand_with_pinned_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The shipped suites with data_sha256 added (as for the measured times): D = 200, >= 2 checkpoints."""
    from harness.suite.expand import expand
    from harness.suite.training import load_train_suite

    _, digest = _mnist(tmp_path)
    monkeypatch.setenv(datasets.ENV, str(tmp_path))
    for suite in ("workloads_mnist", "train_mnist"):
        text = (ROOT / "suites" / f"{suite}.toml").read_text()
        assert text.count('dataset = "mnist"') >= 1
        pinned = tmp_path / f"{suite}.toml"
        pinned.write_text(text.replace('dataset = "mnist"', f'dataset = "mnist", data_sha256 = "{digest}"'))
        if suite == "workloads_mnist":
            cells = expand(pinned).cells
            specs = {c.target.key(): c.target for c in cells}.values()
            assert {s.config["latent_dim"] for s in specs} == {200}
            assert len({s.checkpoint for s in specs}) >= 2
        else:
            _, units = load_train_suite(pinned)
            assert {u["config"]["latent_dim"] for u in units} == {200}
            assert {u["config"]["dataset"] for u in units} == {"mnist"}


def test_small_file_suite_runs_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A measurement run on a generated MNIST-format file: cells finish, the results carry the digest."""
    from harness.cli import main
    from harness.runs.store import load_run

    _, digest = _mnist(tmp_path)
    monkeypatch.setenv(datasets.ENV, str(tmp_path))
    suite = tmp_path / "s.toml"
    suite.write_text(
        '[suite]\nname = "m"\nreplicates = 200\ntiming_max_s = 0.01\n\n[[sweep]]\nestimators = ["disarm", "arm"]\n'
        'backends = ["numpy"]\nn_samples = [2]\n\n[[sweep.workloads]]\nname = "vae_bernoulli"\n'
        f'config = {{ dataset = "mnist", data_sha256 = "{digest}", latent_dim = 3, binarize = "dynamic" }}\n'
        "checkpoints = [0, 2]\nbatch_size = 2\n"
    )
    assert main(["run", str(suite), "--out", str(tmp_path / "run")]) == 0
    df, meta = load_run(tmp_path / "run")
    assert meta["status"] == "complete" and set(df["checkpoint"]) == {0, 2}
    assert df["workload_config"].str.contains(f'"data_sha256": "{digest}"').all()
    assert df["workload_config"].str.contains('"dataset": "mnist"').all()
