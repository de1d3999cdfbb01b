"""``stochgrad`` command line: run | list | show | check | report | compare | train.

Bad input (suite files, arguments) prints ``error: ...`` naming the file, key and valid choices and
exits with status 2, without a traceback and without writing anything.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from harness.cli_paths import UsageError, check_output_file, readable_run, writing
from harness.problems import ProblemError

EXIT_BAD_INPUT = 2


def _number(kind: type, low: float, strict: bool, what: str):
    """argparse type: a ``kind`` number > low (strict) or >= low, else an error naming ``what``."""

    def parse(s: str):
        try:
            v = kind(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {s!r}") from None
        if not math.isfinite(v) or not (v > low if strict else v >= low):
            raise argparse.ArgumentTypeError(f"expected {what}, got {s!r}")
        return v

    return parse


_pos_int = _number(int, 0, True, "a positive integer")
_nonneg_int = _number(int, 0, False, "a non-negative integer")
_pos_float = _number(float, 0.0, True, "a positive number")


def _csv(s: str) -> list[str]:
    vals = [x.strip() for x in s.split(",") if x.strip()]
    if not vals:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of names, got {s!r}")
    return vals


_precision = _number(float, 0.0, False, "a finite number >= 0 (0 = fixed R)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="stochgrad", description="Benchmark Monte Carlo gradient estimators.")
    sub = ap.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run a suite and write results/<run-id>/")
    r.add_argument("suite", help="suite TOML file, e.g. suites/default.toml")
    r.add_argument("--backend", type=_csv, help="comma-separated backends to keep (numpy,torch,jax)")
    r.add_argument("--device", type=_csv, help="comma-separated devices, overriding the suite's (cpu,cuda,gpu:1)")
    r.add_argument("--out", type=Path, help="run directory (default: results/<suite>-<timestamp>)")
    r.add_argument("--results-dir", type=Path, default=Path("results"), help="root for new run directories")
    r.add_argument("--replicates", type=_pos_int, help="replicates R per cell (overrides the suite)")
    r.add_argument("--seed", type=_nonneg_int, help="suite seed (overrides the suite)")
    r.add_argument("--dtype", choices=["float64", "float32"], help="measurement dtype (default float64)")
    r.add_argument(
        "--precision", type=_precision, nargs="?", const=0.05, metavar="P",
        help="add replicates (R is the minimum) until every variance's 95%% CI half-width <= P x variance; "
        "--precision alone means 0.05, 0 forces a fixed R (default: the suite's `precision`, else fixed R)",
    )  # fmt: skip
    r.add_argument("--max-replicates", type=_pos_int, help="cap on replicates per cell with --precision (default 2^20)")
    r.add_argument("--max-seconds", type=_pos_float, help="time cap per cell of the --precision loop (default 60)")
    r.add_argument("--max-memory", type=_pos_float, help="memory budget per vectorized chunk in MiB (default 256)")
    r.add_argument("--threads", type=_pos_int,
                   help="threads for every backend (torch, XLA via CPU affinity, BLAS); default: all available CPUs")  # fmt: skip
    r.add_argument("--torch-compile", metavar="BACKEND",
                   help="experimental: wrap torch estimators in torch.compile(backend=BACKEND), e.g. inductor")  # fmt: skip
    r.add_argument("--no-timing", action="store_true", help="skip per-call timing")
    r.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    r.add_argument("--dry-run", action="store_true", help="expand and print the cell count, run nothing")
    r.add_argument("--workers", type=_pos_int, metavar="N",
                   help="run cells on a local Dask cluster of N single-threaded worker processes")  # fmt: skip
    r.add_argument("--scheduler", metavar="ADDRESS", help="run cells on an existing Dask cluster, e.g. tcp://host:8786")
    r.add_argument("--cell-timeout", type=_pos_float, metavar="SECONDS",
                   help="fail a cell that runs longer than this (needs --workers or --scheduler)")  # fmt: skip
    r.add_argument("--yes", action="store_true",
                   help="run a suite over the size limits (cells or estimated time; see docs/notes/hardening.md)")  # fmt: skip

    ls = sub.add_parser("list", help="estimators, distributions, objectives, backends, devices, failed plugins")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.add_argument("pattern", nargs="?", default="*", help="fnmatch filter on estimator names")

    sh = sub.add_parser("show", help="print a readable table of a run")
    sh.add_argument("run", type=Path)
    sh.add_argument("--param", help="only this parameter")
    sh.add_argument("--sort", default="problem", help="column to sort by (default: problem)")

    ck = sub.add_parser("check", help="validate an estimator on every applicable shipped problem")
    ck.add_argument("estimator")
    ck.add_argument("--backend", type=_csv, help="backends to check (default: all it is registered on)")
    ck.add_argument("--replicates", type=_pos_int, default=None, help="initial replicates R (default 20000)")
    ck.add_argument("--max-replicates", type=_pos_int, default=None,
                    help="cap of the power-driven escalation of R (default 1000000), as in the tests")  # fmt: skip
    ck.add_argument("--samples", type=_pos_int, default=None, help="L per estimate (default 4)")
    ck.add_argument("--seed", type=_nonneg_int, default=0)

    rp = sub.add_parser("report", help="write a self-contained HTML report of one or more runs")
    rp.add_argument("runs", nargs="+", type=Path)
    rp.add_argument("-o", "--output", type=Path, default=None, help="HTML file (default: <first run>/report.html)")
    rp.add_argument("--workers", type=_nonneg_int, metavar="N", help="processes drawing figures (default: all CPUs)")

    tr = sub.add_parser("train", help="run a training suite ([[train]] tables) and write curves + summaries")
    tr.add_argument("suite", help="training suite TOML file, e.g. suites/train.toml")
    tr.add_argument("--out", type=Path, help="run directory (default: results/<suite>-<timestamp>)")
    tr.add_argument("--resume", action="store_true", help="continue an interrupted training run in --out")
    tr.add_argument("--dry-run", action="store_true", help="validate and print the units, train nothing")
    tr.add_argument("--workers", type=_pos_int, metavar="N", help="train units on a local Dask cluster of N processes")
    tr.add_argument("--scheduler", metavar="ADDRESS", help="train units on an existing Dask cluster")

    cp = sub.add_parser("compare", help="compare two runs cell by cell (variance and time ratios with CIs)")
    cp.add_argument("run_a", type=Path)
    cp.add_argument("run_b", type=Path)
    cp.add_argument("-o", "--output", type=Path, default=None, help="also write an HTML page")
    return ap


def cmd_run(a: argparse.Namespace) -> int:
    from harness.execute import RunRequest, plan, run_suite
    from harness.store import load_run

    if a.precision is not None and not a.precision >= 0:
        raise UsageError(f"--precision: expected a number >= 0 (0 = fixed R), got {a.precision!r}")
    req = RunRequest(
        suite=a.suite,
        backends=a.backend,
        devices=a.device,
        out=a.out,
        results_dir=a.results_dir,
        replicates=a.replicates,
        seed=a.seed,
        dtype=a.dtype,
        options={
            "precision": a.precision,  # 0 overrides a suite's precision with a fixed R
            "max_replicates": a.max_replicates,
            "max_seconds": a.max_seconds,
            "max_memory": a.max_memory,  # MiB, like the suite key
            "compile_backend": a.torch_compile,
        },
        threads=a.threads,
        timing=not a.no_timing,
        resume=a.resume,
        confirm=a.yes,
        cli_args={k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()},
        workers=a.workers,
        scheduler=a.scheduler,
        cell_timeout=a.cell_timeout,
    )
    exp = plan(req)
    print(exp.summary(), file=sys.stderr)
    if a.dry_run:
        return 0
    from harness.executors import ExecutorError

    try:
        run_dir = run_suite(req, exp=exp)
    except ExecutorError as exc:  # the cluster went away mid-run: finished cells are saved
        print(f"error: {exc}", file=sys.stderr)
        return 1
    _, meta = load_run(run_dir)
    print(
        f"{meta['cells_done']} cells measured, {len(meta['skipped'])} skipped, {len(meta['failed'])} failed",
        file=sys.stderr,
    )
    print(f"results: {run_dir / 'results.parquet'}")
    print(f"metadata: {run_dir / 'meta.json'}")
    return run_exit_code(meta)


def run_exit_code(meta: dict[str, Any]) -> int:
    """0: every cell measured or skipped; 1: some cells failed or the run is incomplete (2 is bad input)."""
    if meta["failed"]:
        print(f"{len(meta['failed'])} of {meta.get('cells_total')} cells FAILED (see meta.json 'failed'): exit 1",
              file=sys.stderr)  # fmt: skip
        return 1
    return 0 if meta["status"] == "complete" else 1


def cmd_list(a: argparse.Namespace) -> int:
    from harness.listing import print_listing

    return print_listing(a.pattern, a.json)


def cmd_show(a: argparse.Namespace) -> int:
    import pandas as pd

    from harness.store import load_run

    try:
        df, meta = load_run(a.run)
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None
    print(
        f"run {meta.get('run_id')}  suite {meta.get('suite')}  commit {meta.get('git_commit')}  "
        f"status {meta.get('status')}  cells {meta.get('cells_done')}/{meta.get('cells_total')}"
    )
    for s in meta.get("skipped", []):
        print(f"  skipped: {s['cell']}: {s['reason']}")
    for f in meta.get("failed", []):
        print(f"  FAILED: {f['cell']}: {f['error']}")
    if df.empty:
        print("(no results)")
        return 0
    if a.param:
        valid = sorted(df["param"].unique()) if "param" in df.columns else []
        if a.param not in valid:
            raise UsageError(f"--param: unknown parameter {a.param!r} in {a.run}; valid: {valid}")
        df = df[df["param"] == a.param]
    if a.sort not in df.columns:
        raise UsageError(f"--sort: unknown column {a.sort!r}; valid: {sorted(df.columns)}")
    cols = [
        "problem",
        "estimator",
        "backend",
        "device",
        "n_samples",
        "param",
        "exact_grad",
        "grad_mean",
        "bias_p",
        "variance",
        "variance_ci_low",
        "variance_ci_high",
        "heavy_tail",
        "oracle",
        "time_median_s",
        "efficiency",
    ]
    cols += [c for c in df.columns if c.startswith("h_")]
    view = df.sort_values([a.sort, "param", "variance"])[[c for c in cols if c in df.columns]]
    with pd.option_context(
        "display.max_rows",
        500,
        "display.width",
        250,
        "display.max_colwidth",
        48,
        "display.float_format",
        "{:.4g}".format,
    ):
        print(view.to_string(index=False))
    return 0


def cmd_check(a: argparse.Namespace) -> int:
    from harness.problems import DISTRIBUTIONS
    from harness.registry import get_declaration
    from harness.validate import POLICY, applicable_problems, check_estimator, overall_verdict

    est = get_declaration(a.estimator)
    if a.backend:
        bad = [b for b in a.backend if b not in est.backends]
        if bad:
            raise UsageError(f"--backend: {a.estimator} has no {bad[0]!r} implementation; available: {est.backends}")
    specs = [est.impls[b] for b in (a.backend or est.backends)]
    if not applicable_problems(specs[0]):
        raise UsageError(
            f"estimator {a.estimator!r} (distributions {list(est.distributions)}, requires {list(est.requires)}) "
            f"applies to no shipped problem; valid distribution names: {sorted(DISTRIBUTIONS)}"
        )
    policy = POLICY.with_(R=a.replicates, L=a.samples, max_R=a.max_replicates)
    verdicts = []
    for s in specs:
        unbiased = est.is_unbiased()
        print(f"{s.name} [{s.backend}] — {'unbiased' if unbiased else 'declared biased'}; ref: {s.reference or '-'}")
        results = check_estimator(s.name, s.backend, policy=policy, seed=a.seed)
        for res in results:
            verdict = "biased (as declared)" if not unbiased and res.verdict == "biased" else res.verdict
            print("  " + res.line().replace(res.verdict, verdict, 1))
        verdicts.append(overall_verdict(results, unbiased))
    final = "FAIL" if "FAIL" in verdicts else "UNDERPOWERED" if "UNDERPOWERED" in verdicts else "PASS"
    if final == "UNDERPOWERED":
        print(
            f"underpowered: raise --max-replicates (now {policy.max_R}) so a {policy.detectable:.0%} bias is detectable"
        )
    print("verdict:", final)
    return {"PASS": 0, "FAIL": 1, "UNDERPOWERED": 3}[final]


def cmd_report(a: argparse.Namespace) -> int:
    from harness.report import build_report

    for r in a.runs:  # read every run before writing anything
        readable_run(r)
    out = a.output or (a.runs[0] / "report.html")
    check_output_file("-o", out)
    with writing("-o", out):
        path = build_report(a.runs, out, workers=a.workers)
    print(f"report: {path}")
    return 0


def cmd_compare(a: argparse.Namespace) -> int:
    from harness.report.compare import compare_runs

    for r in (a.run_a, a.run_b):
        readable_run(r)
    if a.output is not None:
        check_output_file("-o", a.output)
    with writing("-o", a.output):
        text, path = compare_runs(a.run_a, a.run_b, a.output)
    print(text)
    if path:
        print(f"compare report: {path}")
    return 0


def cmd_train(a: argparse.Namespace) -> int:
    import time

    from harness.training import load_train_suite, run_training

    suite, units = load_train_suite(a.suite)
    if a.dry_run:
        for u in units:
            print(f"{u['workload']} {u['estimator']} seed={u['seed']} lr={u['lr']} {u['backend']}:{u['device']}")
        print(f"{len(units)} training units")
        return 0
    out = a.out or Path("results") / f"{suite.get('name', Path(a.suite).stem)}-{time.strftime('%Y%m%d-%H%M%S')}"
    if (out / "meta.json").exists() and not a.resume:
        raise UsageError(f"{out}: a run directory already exists; continue it with --resume")
    from harness.executors import ExecutorError, make_executor, registering_modules
    from harness.training.run import executor_runner

    try:
        kw = {"preload": registering_modules(), "exclusive_timing": False} if a.workers else {}
        ex = make_executor(a.workers, a.scheduler, **kw)
    except ExecutorError as exc:
        raise UsageError(f"--scheduler/--workers: {exc}") from None
    with ex:
        _, results = run_training(suite, units, out, resume=a.resume, runner=executor_runner(ex))
    print(f"training run: {out} ({len(results)} of {len(units)} units finished)")
    return 0 if len(results) == len(units) else 1


COMMANDS = {
    "run": cmd_run,
    "list": cmd_list,
    "show": cmd_show,
    "check": cmd_check,
    "report": cmd_report,
    "compare": cmd_compare,
    "train": cmd_train,
}


def main(argv: list[str] | None = None) -> int:
    from harness.execute import RunError
    from harness.registry import RegistryError
    from harness.store import RunDirError
    from harness.suite import SuiteError

    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (SuiteError, ProblemError, RunError, RegistryError, UsageError, FileNotFoundError, RunDirError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("\ninterrupted; finished cells are saved — continue with --resume --out RUN_DIR", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
