"""Do two checkouts give identical numbers?  A suite's cell keys and variances, and every estimator's raw estimates.

Refactorings that must not change a number (issue 18: "behaviour and numbers stay as they are") are checked by
running the same fixed-seed work in two source trees and comparing the outputs exactly::

    git archive <base-commit> | tar -x -C /tmp/base          # a read-only copy of the base tree
    python -m suites.benchmarks.identical /tmp/base .          # base tree vs this checkout
    python -m suites.benchmarks.identical /tmp/base . --suite suites/smoke.toml --no-estimates
    python -m suites.benchmarks.identical /tmp/base . --work /tmp/ident --parallel   # resumable, both at once

Each tree runs in its own interpreter with ``PYTHONPATH`` set to it (this file is run as a script there, so only
its command line and the harness functions it calls must exist in both trees):

1. ``stochgrad run SUITE --no-timing`` (default ``suites/smoke.toml``): the results' ``cell_key`` sets must be
   equal and every row's ``variance`` (and ``grad_mean``) identical, bit for bit;
2. unless ``--no-estimates``: every registered implementation on every shipped example problem it applies to, R
   estimates of L samples with a fixed seed (JAX jitted as in runs; ``--no-jit`` runs it eagerly; ``--estimators``
   narrows them), compared bit for bit, NaN equal to NaN; an implementation that raises must raise the same error
   type in both trees.

Exit status 0 when everything is identical, 1 otherwise (the differences are printed).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve()


def dump(out: Path, suite: str, estimates: bool, R: int, L: int, seed: int, jit: bool, pattern: str) -> None:
    """In the tree on ``PYTHONPATH``: run ``suite`` into ``out/run`` and save raw estimates under ``out/estimates``.

    Resumable: a finished suite run and every implementation already saved (one ``.npz`` + ``.json`` each) are
    kept, so a dump killed on a loaded machine continues where it stopped."""
    from harness.cli.main import main

    out.mkdir(parents=True, exist_ok=True)
    if not (out / "run_rc.txt").exists():
        rc = main(
            ["run", suite, "--out", str(out / "run"), "--no-timing"] + (["--resume"] if (out / "run").exists() else [])
        )
        (out / "run_rc.txt").write_text(str(rc))
    if not estimates:
        return
    from harness import registry
    from harness.measure.check import applicable_problems, draw

    edir = out / "estimates"
    edir.mkdir(exist_ok=True)
    for impl in registry.implementations(pattern):
        stem = edir / f"{impl.name}__{impl.backend}"
        if stem.with_suffix(".json").exists():
            continue
        arrays: dict[str, np.ndarray] = {}
        errors: dict[str, str] = {}
        for spec in applicable_problems(impl):
            key = f"{impl.name}|{impl.backend}|{spec.label()}"
            try:
                G = draw(impl, spec.build(), L=max(L, impl.min_samples), R=R, seed=seed, jit=jit)
            except Exception as exc:  # recorded: the other tree must fail the same way
                errors[key] = type(exc).__name__
                continue
            for param, a in G.items():
                arrays[f"{key}|{param}"] = np.asarray(a)
        np.savez(stem.with_suffix(".npz"), **arrays)
        stem.with_suffix(".json").write_text(json.dumps(errors, indent=1, sort_keys=True))  # written last: done


def _run_tree(tree: Path, out: Path, args: argparse.Namespace) -> None:
    env = {**os.environ, "PYTHONPATH": str(tree), "STOCHGRAD_CACHE": str(out / "cache")}
    cmd = [sys.executable, str(HERE), "dump", str(out), "--suite", args.suite, "--R", str(args.R), "--L", str(args.L)]
    cmd += ["--seed", str(args.seed), "--estimators", args.pattern]
    cmd += ([] if args.estimates else ["--no-estimates"]) + ([] if args.jit else ["--no-jit"])
    print(f"[{tree}] {' '.join(cmd[1:])}", file=sys.stderr)
    subprocess.run(cmd, cwd=tree, env=env, check=True, stdout=subprocess.DEVNULL)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and bool(np.array_equal(a, b, equal_nan=True))


def compare_runs(a: Path, b: Path) -> list[str]:
    """Differences between two run directories' cell keys and per-row variance / grad_mean (exact)."""
    import pandas as pd

    da, db = pd.read_parquet(a / "results.parquet"), pd.read_parquet(b / "results.parquet")
    diffs = []
    ka, kb = set(da["cell_key"]), set(db["cell_key"])
    if ka != kb:
        diffs.append(f"cell keys differ: {len(ka - kb)} only in base, {len(kb - ka)} only in head")
    ia, ib = da.set_index(["cell_key", "param"]).sort_index(), db.set_index(["cell_key", "param"]).sort_index()
    common = ia.index.intersection(ib.index)
    for col in ("variance", "grad_mean"):
        x, y = ia.loc[common, col].to_numpy(), ib.loc[common, col].to_numpy()
        bad = ~((x == y) | (np.isnan(x) & np.isnan(y)))
        for (key, param), u, v in zip(common[bad], x[bad], y[bad]):
            diffs.append(f"{col} differs for cell {key} param {param}: {u!r} vs {v!r}")
    print(f"suite run: {len(ka)} cells in base, {len(kb)} in head, {len(common)} rows compared", file=sys.stderr)
    return diffs


def compare_estimates(a: Path, b: Path) -> list[str]:
    """Differences between two trees' raw estimates (bit for bit) and their error types."""
    diffs: list[str] = []
    ea: dict[str, str] = {}
    eb: dict[str, str] = {}
    A: dict[str, np.ndarray] = {}
    B: dict[str, np.ndarray] = {}
    for d, errs, arrays in ((a, ea, A), (b, eb, B)):
        for f in sorted((d / "estimates").glob("*.json")):
            errs.update(json.loads(f.read_text()))
            with np.load(f.with_suffix(".npz")) as z:
                arrays.update({k: z[k] for k in z.files})
    for k in sorted(set(ea) | set(eb)):
        if ea.get(k) != eb.get(k):
            diffs.append(f"error differs for {k}: {ea.get(k)} vs {eb.get(k)}")
    for k in sorted(set(A) ^ set(B)):
        diffs.append(f"estimate only in {'base' if k in A else 'head'}: {k}")
    for k in sorted(set(A) & set(B)):
        if not _same(A[k], B[k]):
            d = np.nanmax(np.abs(A[k] - B[k])) if A[k].shape == B[k].shape else "shape"
            diffs.append(f"estimates differ for {k}: max |diff| {d}")
    print(f"estimates: {len(set(A) & set(B))} arrays compared, {len(ea)} erroring cases", file=sys.stderr)
    return diffs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("base", help="base source tree (or 'dump' to write one tree's outputs: internal)")
    ap.add_argument("head", nargs="?", default=".", help="head source tree (default: .)")
    ap.add_argument("--suite", default="suites/smoke.toml", help="suite run in both trees (relative to each tree)")
    ap.add_argument("--no-estimates", dest="estimates", action="store_false", help="compare the suite run only")
    ap.add_argument("--estimators", dest="pattern", default="*", help="fnmatch pattern of estimators (default *)")
    ap.add_argument("--no-jit", dest="jit", action="store_false", help="run JAX estimators eagerly")
    ap.add_argument("--R", type=int, default=64, help="replicates per raw-estimate case (default 64)")
    ap.add_argument("--L", type=int, default=3, help="samples per estimate (default 3; at least min_samples)")
    ap.add_argument("--seed", type=int, default=12345)
    ap.add_argument("--work", type=Path, help="keep the outputs here and resume an interrupted comparison")
    ap.add_argument("--parallel", action="store_true", help="dump both trees at once (two processes)")
    args = ap.parse_args(argv)
    if args.base == "dump":
        dump(Path(args.head), args.suite, args.estimates, args.R, args.L, args.seed, args.jit, args.pattern)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        outs = [work / "base", work / "head"]
        jobs = [(Path(tree).resolve(), out) for tree, out in zip((args.base, args.head), outs)]
        if args.parallel:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(2) as pool:
                list(pool.map(lambda j: _run_tree(j[0], j[1], args), jobs))
        else:
            for tree, out in jobs:
                _run_tree(tree, out, args)
        rcs = [(o / "run_rc.txt").read_text() for o in outs]
        diffs = [f"run exit codes differ: {rcs}"] if rcs[0] != rcs[1] else []
        diffs += compare_runs(outs[0] / "run", outs[1] / "run")
        if args.estimates:
            diffs += compare_estimates(*outs)
    for d in diffs:
        print(d)
    print("IDENTICAL" if not diffs else f"{len(diffs)} DIFFERENCES")
    return 0 if not diffs else 1


if __name__ == "__main__":
    sys.exit(main())
