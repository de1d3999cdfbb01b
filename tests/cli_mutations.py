"""Bad CLI invocations for the mutation battery: option values, paths, resume mismatches, a held lock, corrupt
run directories, and a run whose every cell fails (exit 1).  Run by tests/mutation_harness.py."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from suite_mutations import BASE, IS_ROOT, READONLY_DIR_ROOT, Case, Setup, mutate, to_toml

# -- CLI cases -------------------------------------------------------------------------------------------------
_TEMPLATES: dict[str, Path] = {"root": Path()}  # set by run_case: where finished runs are kept for reuse


def _with_run(then: Callable[[Path, Path], list[str]], *run_args: str, base: Mapping[str, Any] = BASE) -> Setup:
    """A case that first makes a finished run (work/run) and then invokes the CLI on it.

    The run is made once per (suite, options) and copied for later cases (same suite text, so resumable)."""

    def setup(d: Path) -> list[str]:
        import hashlib
        import shutil

        from harness.cli.main import main

        f = d / "suite.toml"
        f.write_text(to_toml(base))
        tag = hashlib.sha256((to_toml(base) + repr(run_args)).encode()).hexdigest()[:12]
        template = _TEMPLATES["root"] / f"template-{tag}"
        if template.is_dir():
            shutil.copytree(template, d / "run")
            return then(d, d / "run")
        with open(os.devnull, "w") as null:
            saved = sys.stderr, sys.stdout
            sys.stderr = sys.stdout = null
            try:
                rc = main(["run", str(f), "--out", str(d / "run"), *run_args])
            finally:
                sys.stderr, sys.stdout = saved
        if rc != 0:
            raise RuntimeError(f"setup run failed with {rc}")
        if _TEMPLATES["root"] != Path():
            shutil.copytree(d / "run", template)
        return then(d, d / "run")

    return setup


def _plain(*argv: str) -> Setup:
    def setup(d: Path) -> list[str]:
        f = d / "suite.toml"
        f.write_text(to_toml(BASE))
        return [a.replace("{suite}", str(f)).replace("{d}", str(d)) for a in argv]

    return setup


def _corrupt(which: str, how: str) -> Callable[[Path, Path], None]:
    def apply(run: Path) -> None:
        p = run / which
        data = p.read_bytes()
        p.write_bytes({"truncated": data[: len(data) // 2], "empty": b"", "garbage": bytes(range(256)) * 3}[how])

    return apply


TIMED = mutate("suite.timing", True, mutate("suite.timing_max_s", 0.01))


def cli_cases() -> list[Case]:
    """At least 45 bad invocations: option values, paths, resume mismatches, locks, corrupt run directories."""
    run = ["run", "{suite}", "--results-dir", "{d}/results"]
    cases = [
        Case(f"run {' '.join(extra)}", _plain(*run, *extra))
        for extra in (
            ["--replicates", "0"],
            ["--replicates", "-5"],
            ["--replicates", "abc"],
            ["--replicates", "2.5"],
            ["--replicates", "1"],
            ["--replicates", str(10**15)],
            ["--seed", "-1"],
            ["--seed", "abc"],
            ["--seed", "1.5"],
            ["--backend", "tensorflow"],
            ["--backend", ","],
            ["--device", "tpu"],
            ["--precision", "-1"],
            ["--precision", "nan"],
            ["--precision", "inf"],
            ["--precision", "abc"],
            ["--max-replicates", "0"],
            ["--max-replicates", "2.5"],
            ["--max-seconds", "nan"],
            ["--max-seconds", "inf"],
            ["--max-seconds", "0"],
            ["--max-memory", "nan"],
            ["--max-memory", "inf"],
            ["--max-memory", "-1"],
            ["--threads", "0"],
            ["--threads", "abc"],
            ["--dtype", "float16"],
            ["--resume"],
            ["--resume", "--out", "{d}/nothing"],
            ["--out", "{d}/suite.toml"],
            ["--results-dir", "{d}/suite.toml"],
        )
    ]
    ro = READONLY_DIR_ROOT if IS_ROOT else "{d}/ro"

    def readonly(*extra: str) -> Setup:
        inner = _plain(*extra)

        def setup(d: Path) -> list[str]:
            if not IS_ROOT:
                (d / "ro").mkdir()
                (d / "ro").chmod(0o555)
            return inner(d)

        return setup

    cases += [
        Case("run --out in a read-only dir", readonly(*run, "--out", f"{ro}/stochgrad-run")),
        Case("run --results-dir read-only", readonly("run", "{suite}", "--results-dir", f"{ro}/stochgrad-results")),
        Case("unknown command", _plain("frobnicate")),
        Case("run: no suite", _plain("run", "{d}/missing.toml", "--results-dir", "{d}/results")),
        Case("show: missing run", _plain("show", "{d}/norun")),
        Case("show: a file", _plain("show", "{suite}")),
        Case("report: missing run", _plain("report", "{d}/norun")),
        Case("compare: missing runs", _plain("compare", "{d}/a", "{d}/b")),
        Case("check: unknown estimator", _plain("check", "pathwize")),
        Case("check: bad backend", _plain("check", "pathwise", "--backend", "tensorflow")),
        Case("check: replicates 0", _plain("check", "pathwise", "--replicates", "0")),
    ]
    sfx = ["--results-dir", "{d}/results"]

    def on_run(*argv: str, prepare: Callable[[Path], None] | None = None) -> Callable[[Path, Path], list[str]]:
        def then(d: Path, r: Path) -> list[str]:
            if prepare:
                prepare(r)
            return [
                a.replace("{run}", str(r)).replace("{suite}", str(d / "suite.toml")).replace("{d}", str(d))
                for a in argv
            ]

        return then

    resume = ["run", "{suite}", "--resume", "--out", "{run}"]
    cases += [
        Case("resume --seed 7", _with_run(on_run(*resume, "--seed", "7"))),
        Case("resume --replicates 60", _with_run(on_run(*resume, "--replicates", "60"))),
        Case("resume --dtype float32", _with_run(on_run(*resume, "--dtype", "float32"))),
        Case("resume --precision 0.1", _with_run(on_run(*resume, "--precision", "0.1"))),
        Case("resume without --no-timing", _with_run(on_run(*resume), "--no-timing", base=TIMED)),
        Case("resume --no-timing", _with_run(on_run(*resume, "--no-timing"), base=TIMED)),
        Case("run --out an existing run", _with_run(on_run("run", "{suite}", "--out", "{run}"))),
        Case("resume while locked", _with_run(on_run(*resume, prepare=_hold_lock))),
        Case("show --param unknown", _with_run(on_run("show", "{run}", "--param", "nope"))),
        Case("show --sort unknown", _with_run(on_run("show", "{run}", "--sort", "nope"))),
        Case("report -o a directory", _with_run(on_run("report", "{run}", "-o", "{d}"))),
    ]
    for which in ("results.parquet", "meta.json"):
        for how in ("truncated", "empty", "garbage"):
            for cmd in (["show", "{run}"], ["report", "{run}"], ["compare", "{run}", "{run}"]):
                cases.append(Case(f"{cmd[0]} on {how} {which}", _with_run(on_run(*cmd, prepare=_corrupt(which, how)))))
    cases.append(Case("all cells fail: exit 1", _all_fail, expect_rc=1, may_write=True))
    del sfx
    return cases


LOCK_NAME = ".lock"


def _hold_lock(run: Path) -> None:
    """Hold the run directory's lock as a concurrent run would (a second open file description)."""
    import fcntl

    fd = os.open(run / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    _HELD.append(fd)


_HELD: list[int] = []


def _all_fail(d: Path) -> list[str]:
    """A valid suite whose only estimator raises in every cell."""
    from harness.registry import register_estimator

    est = register_estimator("hardening_always_fails", distributions=("normal",), unbiased=True)

    @est.implementation("numpy")
    def _fails(ctx: Any) -> dict:
        raise RuntimeError("this estimator always fails")

    data = mutate("sweep.0.estimators", ["hardening_always_fails"])
    (d / "suite.toml").write_text(to_toml(data))
    return ["run", str(d / "suite.toml"), "--out", str(d / "run")]
