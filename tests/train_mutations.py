"""Mutation battery for training runs, output paths, caches and run kinds (issue 22): run by tests/mutation_harness.py.

Every case states its promise as a :class:`suite_mutations.Case`: exit 2 with one ``error:`` line, no traceback and
nothing written under the case's directory (the default), or another exit code where the promise is one (a
``--dry-run`` over the limits with ``--yes``, ``show`` of a training run).  Cases whose promise includes a resumable
run directory after a fault (disk full) are also checked in detail by tests/test_run_dirs.py.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from suite_mutations import BASE, IS_ROOT, READONLY_DIR_ROOT, Case, Setup, mutate, to_toml

TRAIN_BASE: dict[str, Any] = {
    "suite": {"name": "tmut", "seed": 0},
    "train": [
        {
            "workload": "vae_bernoulli",
            "config": {"latent_dim": 3},
            "estimators": ["disarm"],
            "steps": 4,
            "log_every": 2,
            "batch_size": 4,
            "val_size": 10,
            "test_size": 10,
            "test_samples": 2,
        }
    ],
}
WORKLOAD_BASE: dict[str, Any] = {
    "suite": {"name": "wmut", "seed": 0, "replicates": 20, "timing": False},
    "sweep": [
        {
            "estimators": ["disarm"],
            "backends": ["numpy"],
            "n_samples": [2],
            "workloads": [{"name": "vae_bernoulli", "config": {"latent_dim": 2}, "checkpoints": [0], "batch_size": 1}],
        }
    ],
}
TEMPLATES: dict[str, Path] = {"root": Path()}  # set by the harness: finished runs kept for reuse


def _cache_outside(d: Path) -> None:
    """Point $STOCHGRAD_CACHE outside the case's snapshotted tree (the child process's environment only)."""
    os.environ["STOCHGRAD_CACHE"] = str(d.parents[2] / "cache")


def _quiet(fn: Callable[[], int]) -> int:
    with open(os.devnull, "w") as null:
        saved = sys.stderr, sys.stdout
        sys.stderr = sys.stdout = null
        try:
            return fn()
        finally:
            sys.stderr, sys.stdout = saved


def _fill(argv: list[str], d: Path, run: Path | None = None, other: Path | None = None) -> list[str]:
    rep = {"{d}": str(d), "{train}": str(d / "train.toml"), "{suite}": str(d / "suite.toml")}
    if run is not None:
        rep["{run}"] = str(run)
    if other is not None:
        rep["{other}"] = str(other)
    out = []
    for a in argv:
        for k, v in rep.items():
            a = a.replace(k, v)
        out.append(a)
    return out


def _train(*argv: str, base: Mapping[str, Any] = TRAIN_BASE, prepare: Callable[[Path], None] | None = None) -> Setup:
    """A case with a training suite at {train} (and the benchmark BASE suite at {suite})."""

    def setup(d: Path) -> list[str]:
        _cache_outside(d)
        (d / "train.toml").write_text(to_toml(base))
        (d / "suite.toml").write_text(to_toml(BASE))
        if prepare is not None:
            prepare(d)
        return _fill(list(argv), d)

    return setup


def _made(kind: str, d: Path, name: str) -> Path:
    """A finished run of ``kind`` (training: TRAIN_BASE; benchmark: BASE) at d/name, copied from a template."""
    import shutil

    from harness.cli.main import main

    target = d / name
    template = TEMPLATES["root"] / f"made-{kind}"
    if template.is_dir():
        shutil.copytree(template, target)
        return target
    if kind == "training":
        argv = ["train", str(d / "train.toml"), "--out", str(target)]
    else:
        argv = ["run", str(d / "suite.toml"), "--out", str(target)]
    rc = _quiet(lambda: main(argv))
    if rc != 0:
        raise RuntimeError(f"setup {kind} run failed with {rc}")
    if TEMPLATES["root"] != Path():
        shutil.copytree(target, template)
    return target


def _on(kind: str, *argv: str, other: str | None = None, prepare: Callable[[Path], None] | None = None) -> Setup:
    """A case that first makes a finished run of ``kind`` at {run} (and of ``other`` at {other})."""

    def setup(d: Path) -> list[str]:
        _cache_outside(d)
        (d / "train.toml").write_text(to_toml(TRAIN_BASE))
        (d / "suite.toml").write_text(to_toml(BASE))
        run = _made(kind, d, "run")
        second = _made(other, d, "other") if other else None
        if prepare is not None:
            prepare(run)
        return _fill(list(argv), d, run, second)

    return setup


def _hold_lock(run: Path) -> None:
    import fcntl

    fd = os.open(run / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    _HELD.append(fd)


_HELD: list[int] = []


def disk_full_after(n_files: int) -> None:
    """Fault injection: every atomic file write after the first ``n_files`` fails with ENOSPC (the disk stays full)."""
    import harness.files.atomic as atomic

    real = atomic._open_tmp
    count = {"n": 0}

    class Full:
        def __init__(self, fh: Any) -> None:
            self.fh = fh

        def write(self, data: Any) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")  # as write(2) reports it: no file name

        def __getattr__(self, name: str) -> Any:
            return getattr(self.fh, name)

        def __enter__(self) -> Full:
            return self

        def __exit__(self, *exc: Any) -> None:
            self.fh.close()

    def opening(path: Path) -> tuple[Any, str]:
        fh, tmp = real(path)
        count["n"] += 1
        return (fh, tmp) if count["n"] <= n_files else (Full(fh), tmp)

    atomic._open_tmp = opening  # type: ignore[assignment]


def _foreign(name: str) -> Callable[[Path], None]:
    def prepare(d: Path) -> None:
        (d / "out").mkdir()
        (d / "out" / name).write_bytes(b"someone else's data")

    return prepare


def _env(var: str, value: Callable[[Path], str]) -> Callable[[Path], None]:
    def prepare(d: Path) -> None:
        os.environ[var] = value(d)

    return prepare


def _file(d: Path) -> str:
    (d / "afile").write_text("x")
    return str(d / "afile")


def _readonly_cache(d: Path) -> str:
    if IS_ROOT:
        return READONLY_DIR_ROOT + "/stochgrad-cache"
    (d / "ro").mkdir()
    (d / "ro").chmod(0o555)
    return str(d / "ro" / "cache")


def _link(kind: str) -> Callable[[Path], None]:
    def prepare(d: Path) -> None:
        if kind == "dangling":
            os.symlink(d / "nowhere", d / "out")
        else:
            os.symlink(d / "out", d / "out")

    return prepare


def train_cases() -> list[Case]:
    """Bad training requests, output paths, run kinds, caches, limits and faults."""
    t = ["train", "{train}"]
    muts = {
        "train: lr = inf": mutate("train.0.lr", [float("inf")], TRAIN_BASE),
        "train: lr = -inf": mutate("train.0.lr", [float("-inf")], TRAIN_BASE),
        "train: lr = nan": mutate("train.0.lr", [float("nan")], TRAIN_BASE),
        "train: steps = 1e13": mutate("train.0.steps", 10**13, TRAIN_BASE),
        "train: latent_dim = 1e6": mutate("train.0.config", {"latent_dim": 10**6}, TRAIN_BASE),
        "train: n_samples = 1e8": mutate("train.0.n_samples", 10**8, TRAIN_BASE),
        "train: name ../../escape": mutate("suite.name", "../../escape", TRAIN_BASE),
        "train: name absolute": mutate("suite.name", "/tmp/stochgrad-escape", TRAIN_BASE),
        "train: name ..": mutate("suite.name", "..", TRAIN_BASE),
        "train: name int": mutate("suite.name", 3, TRAIN_BASE),
        "train: seed -1": mutate("suite.seed", -1, TRAIN_BASE),
        "train: batch_size 0": mutate("train.0.batch_size", 0, TRAIN_BASE),
        "train: estimators []": mutate("train.0.estimators", [], TRAIN_BASE),
        "train: backends numpy": mutate("train.0.backends", ["numpy"], TRAIN_BASE),  # no numpy training engine
    }
    cases = [Case(name, _train(*t, base=data)) for name, data in muts.items()]
    for name in ("train: steps = 1e13", "train: latent_dim = 1e6"):
        cases.append(Case(f"{name} --dry-run", _train(*t, "--dry-run", base=muts[name])))
    cases.append(
        Case(
            "train: steps = 1e13 --yes --dry-run", _train(*t, "--yes", "--dry-run", base=muts["train: steps = 1e13"]), 0
        )
    )
    ro = READONLY_DIR_ROOT if IS_ROOT else "{d}/ro"

    def readonly(d: Path) -> None:
        if not IS_ROOT:
            (d / "ro").mkdir()
            (d / "ro").chmod(0o555)

    cases += [
        Case("train --out ''", _train(*t, "--out", "")),
        Case("train --out ' '", _train(*t, "--out", " ")),
        Case("run --out ''", _train("run", "{suite}", "--out", "")),
        Case("train --out a file", _train(*t, "--out", "{train}")),
        Case("train --out under a file", _train(*t, "--out", "{train}/run")),
        Case("train --out read-only", _train(*t, "--out", f"{ro}/stochgrad-run", prepare=readonly)),
        Case("train --out dangling link", _train(*t, "--out", "{d}/out", prepare=_link("dangling"))),
        Case("train --out symlink loop", _train(*t, "--out", "{d}/out", prepare=_link("loop"))),
        Case(
            "train --out foreign results.parquet", _train(*t, "--out", "{d}/out", prepare=_foreign("results.parquet"))
        ),
        Case("train --out foreign curves.parquet", _train(*t, "--out", "{d}/out", prepare=_foreign("curves.parquet"))),
        Case(
            "run --out foreign results.parquet",
            _train("run", "{suite}", "--out", "{d}/out", prepare=_foreign("results.parquet")),
        ),
        Case("train --resume without --out", _train(*t, "--resume")),
        Case("train --resume into nothing", _train(*t, "--resume", "--out", "{d}/nothing")),
        Case("train --workers and --scheduler", _train(*t, "--workers", "2", "--scheduler", "tcp://127.0.0.1:1")),
        Case("train: suite is a directory", _train("train", "{d}")),
        Case("train: suite missing", _train("train", "{d}/missing.toml")),
        Case(
            "train: UTF-16 suite",
            _train(
                "train",
                "{d}/u16.toml",
                prepare=lambda d: (d / "u16.toml").write_bytes(to_toml(TRAIN_BASE).encode("utf-16")),
            ),
        ),
        Case("train: empty suite", _train("train", "{d}/e.toml", prepare=lambda d: (d / "e.toml").write_bytes(b""))),
        Case(
            "train: invalid TOML",
            _train("train", "{d}/b.toml", prepare=lambda d: (d / "b.toml").write_text("[[train]\n")),
        ),
    ]
    # the cache directory, checked up front (training and workload suites)
    for label, value in (
        ("/dev/null", lambda d: "/dev/null"),
        ("a file", _file),
        ("/proc", lambda d: "/proc/stochgrad-cache"),
        ("read-only", _readonly_cache),
    ):
        cases.append(Case(f"train: STOCHGRAD_CACHE {label}", _train(*t, prepare=_env("STOCHGRAD_CACHE", value))))

        def wl_suite(d: Path, value: Callable[[Path], str] = value) -> None:
            (d / "wl.toml").write_text(to_toml(WORKLOAD_BASE))
            os.environ["STOCHGRAD_CACHE"] = value(d)

        cases.append(Case(f"run workloads: STOCHGRAD_CACHE {label}", _train("run", "{d}/wl.toml", prepare=wl_suite)))
    cases.append(
        Case(
            "run workloads: checkpoint 1e14",
            _train(
                "run",
                "{d}/wl.toml",
                prepare=lambda d: (d / "wl.toml").write_text(
                    to_toml(mutate("sweep.0.workloads.0.checkpoints", [10**14], WORKLOAD_BASE))
                ),
            ),
        )
    )
    # run kinds, resume identity, locks (on finished runs)
    cases += [
        Case("train --resume into a benchmark run", _on("benchmark", *t, "--resume", "--out", "{run}")),
        Case("run --resume into a training run", _on("training", "run", "{suite}", "--resume", "--out", "{run}")),
        Case("train --out an existing training run", _on("training", *t, "--out", "{run}")),
        Case("train --out an existing benchmark run", _on("benchmark", *t, "--out", "{run}")),
        Case(
            "train --resume with other units",
            _on(
                "training",
                "train",
                "{d}/other.toml",
                "--resume",
                "--out",
                "{run}",
                prepare=lambda r: (r.parent / "other.toml").write_text(to_toml(mutate("train.0.steps", 6, TRAIN_BASE))),
            ),
        ),
        Case("train --resume while locked", _on("training", *t, "--resume", "--out", "{run}", prepare=_hold_lock)),
        Case("compare training vs benchmark", _on("training", "compare", "{run}", "{other}", other="benchmark")),
        Case("compare benchmark vs training", _on("training", "compare", "{other}", "{run}", other="benchmark")),
        Case("show a training run", _on("training", "show", "{run}"), expect_rc=0),
        Case("show a training run --sort nope", _on("training", "show", "{run}", "--sort", "nope")),
        Case("show a training run --sort estimator", _on("training", "show", "{run}", "--sort", "estimator"), 0),
        Case("report training + benchmark", _on("training", "report", "{run}", "{other}", other="benchmark")),
    ]
    # a full disk: one line, exit 2, and a resumable interrupted run (details in tests/test_run_dirs.py)
    for n in (1, 2):
        cases.append(
            Case(
                f"train: disk full after {n} file(s)",
                _train(*t, "--out", "{d}/out", prepare=lambda d, n=n: disk_full_after(n)),
                may_write=True,
            )
        )
    cases.append(
        Case(
            "run: disk full after 2 files",
            _train("run", "{suite}", "--out", "{d}/out", prepare=lambda d: disk_full_after(2)),
            may_write=True,
        )
    )
    return cases + fault_cases()


def _write(name: str, data: bytes | Callable[[], bytes]) -> Callable[[Path], None]:
    def prepare(d: Path) -> None:
        (d / name).write_bytes(data() if callable(data) else data)

    return prepare


def _deep(depth: int) -> bytes:
    return ('[suite]\nname = "x"\na = ' + "{b = " * depth + "1" + "}" * depth + "\n").encode()


def fault_cases() -> list[Case]:
    """Suite files that are not text files, workload limits, run options and schedulers (issue 22, rows 10-16)."""
    cases: list[Case] = []
    for cmd, base in (("run", BASE), ("train", TRAIN_BASE)):
        cases += [
            Case(f"suite file ({cmd}): a FIFO", _train(cmd, "{d}/f.toml", prepare=lambda d: os.mkfifo(d / "f.toml"))),
            Case(f"suite file ({cmd}): /dev/zero", _train(cmd, "/dev/zero")),
            Case(f"suite file ({cmd}): a directory", _train(cmd, "{d}")),
            Case(
                f"suite file ({cmd}): nested 1000 deep",
                _train(cmd, "{d}/deep.toml", prepare=_write("deep.toml", _deep(1000))),
            ),
            Case(
                f"suite file ({cmd}): UTF-8 BOM",
                _train(
                    cmd,
                    "{d}/bom.toml",
                    prepare=_write("bom.toml", lambda b=base: b"\xef\xbb\xbf" + to_toml(b).encode()),
                ),
            ),
            Case(
                f"suite file ({cmd}): UTF-16",
                _train(cmd, "{d}/u16.toml", prepare=_write("u16.toml", lambda b=base: to_toml(b).encode("utf-16"))),
            ),
            Case(
                f"suite file ({cmd}): 5 MiB of comments",
                _train(
                    cmd,
                    "{d}/big.toml",
                    prepare=_write("big.toml", lambda b=base: to_toml(b).encode() + b"#" * 5 * 2**20),
                ),
            ),
        ]

    def wl(**changes: Any) -> Callable[[Path], None]:
        data = WORKLOAD_BASE
        for path, value in changes.items():
            data = mutate(path.replace("__", "."), value, data)
        return _write("wl.toml", lambda: to_toml(data).encode())

    cases += [
        Case(
            "workloads: latent_dim = 1024 --dry-run",
            _train("run", "{d}/wl.toml", "--dry-run", prepare=wl(sweep__0__workloads__0__config={"latent_dim": 1024})),
            expect_rc=0,
        ),
        Case(
            "workloads: latent_dim = 1e6 --dry-run",
            _train("run", "{d}/wl.toml", "--dry-run", prepare=wl(sweep__0__workloads__0__config={"latent_dim": 10**6})),
        ),
        Case(
            "workloads: batch_size = 0", _train("run", "{d}/wl.toml", prepare=wl(sweep__0__workloads__0__batch_size=0))
        ),
        Case(
            "workloads: batch_size = -1",
            _train("run", "{d}/wl.toml", prepare=wl(sweep__0__workloads__0__batch_size=-1)),
        ),
        Case(
            "run options: --torch-compile bogus",
            _train(
                "run",
                "{d}/t.toml",
                "--torch-compile",
                "bogus",
                prepare=_write("t.toml", to_toml(mutate("sweep.0.backends", ["torch"])).encode()),
            ),
        ),
        Case("dask: --scheduler http://", _train("run", "{suite}", "--scheduler", "http://127.0.0.1:1")),
        Case("dask: train --scheduler http://", _train("train", "{train}", "--scheduler", "http://127.0.0.1:1")),
    ]
    return cases
