"""``stochgrad`` command line: run | list | show | check | report | compare | train | recommend.

A thin layer over the public API (:mod:`stochgrad`): argument parsing, printing and exit codes only.  Bad input
(suite files, arguments) prints ``error: ...`` naming the file, key and valid choices and exits with status 2,
without a traceback and without writing anything.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import Any

import stochgrad as sg
from harness.cli.listing import print_listing
from harness.cli.paths import UsageError
from stochgrad.recommend import PROBLEM_SYNTAX, parse_config

EXIT_BAD_INPUT = 2
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell reports for a writer whose reader closed the pipe
# errors that are bad input (exit 2): suite files, problems, run requests, names, run directories
BAD_INPUT = (
    sg.SuiteError,
    sg.ProblemError,
    sg.RunError,
    sg.RegistryError,
    FileNotFoundError,
    sg.RunDirError,
    sg.WorkloadError,
)


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
    r.add_argument("--out", help="run directory (default: results/<suite>-<timestamp>)")
    r.add_argument("--results-dir", type=Path, default=Path("results"), help="root for new run directories")
    r.add_argument("--replicates", type=_pos_int, help="replicates R per cell (overrides the suite)")
    r.add_argument("--seed", type=_nonneg_int, help="suite seed (overrides the suite)")
    r.add_argument("--dtype", choices=["float64", "float32"], help="measurement dtype (default float64)")
    r.add_argument(
        "--precision",
        type=_precision,
        nargs="?",
        const=0.05,
        metavar="P",
        help="add replicates (R is the minimum) until every variance's 95%% CI half-width <= P x variance; "
        "--precision alone means 0.05, 0 forces a fixed R (default: the suite's `precision`, else fixed R)",
    )
    r.add_argument("--max-replicates", type=_pos_int, help="cap on replicates per cell with --precision (default 2^20)")
    r.add_argument("--max-seconds", type=_pos_float, help="time cap per cell of the --precision loop (default 60)")
    r.add_argument("--max-memory", type=_pos_float, help="memory budget per vectorized chunk in MiB (default 256)")
    r.add_argument(
        "--threads",
        type=_pos_int,
        help="threads for every backend (torch, XLA via CPU affinity, BLAS); default: all available CPUs",
    )
    r.add_argument(
        "--torch-compile",
        metavar="BACKEND",
        help="experimental: wrap torch estimators in torch.compile(backend=BACKEND), e.g. inductor",
    )
    r.add_argument("--no-timing", action="store_true", help="skip per-call timing")
    r.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    r.add_argument("--dry-run", action="store_true", help="expand and print the cell count, run nothing")
    r.add_argument(
        "--workers",
        type=_pos_int,
        metavar="N",
        help="run cells on a local Dask cluster of N single-threaded worker processes",
    )
    r.add_argument("--scheduler", metavar="ADDRESS", help="run cells on an existing Dask cluster, e.g. tcp://host:8786")
    r.add_argument(
        "--cell-timeout",
        type=_pos_float,
        metavar="SECONDS",
        help="fail a cell that runs longer than this (needs --workers or --scheduler)",
    )
    r.add_argument(
        "--yes",
        action="store_true",
        help="run a suite over the size limits (cells or estimated time; see docs/notes/hardening.md)",
    )

    ls = sub.add_parser("list", help="estimators, distributions, objectives, backends, devices, failed plugins")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.add_argument("pattern", nargs="?", default="*", help="fnmatch filter on estimator names")

    sh = sub.add_parser("show", help="print a readable table of a run")
    sh.add_argument("run", type=Path)
    sh.add_argument("--param", help="only this parameter")
    sh.add_argument("--sort", help="column to sort by (default: problem, or workload for a training run)")

    ck = sub.add_parser("check", help="validate an estimator on every applicable shipped problem")
    ck.add_argument("estimator")
    ck.add_argument("--backend", type=_csv, help="backends to check (default: all it is registered on)")
    ck.add_argument("--replicates", type=_pos_int, default=None, help="initial replicates R (default 20000)")
    ck.add_argument(
        "--max-replicates",
        type=_pos_int,
        default=None,
        help="cap of the power-driven escalation of R (default 1000000), as in the tests",
    )
    ck.add_argument("--samples", type=_pos_int, default=None, help="L per estimate (default 4)")
    ck.add_argument("--seed", type=_nonneg_int, default=0)

    rp = sub.add_parser("report", help="write a self-contained HTML report of one or more runs")
    rp.add_argument("runs", nargs="+", type=Path)
    rp.add_argument("-o", "--output", type=Path, default=None, help="HTML file (default: <first run>/report.html)")
    rp.add_argument("--workers", type=_nonneg_int, metavar="N", help="processes drawing figures (default: all CPUs)")
    rp.add_argument(
        "--rank-by",
        choices=list(sg.RANK_BY),
        default=None,
        help="what every 'best' is measured by: time (equal time, variance x time per call), evals (equal "
        "evaluations) or samples (variance at equal L); default: the suite's [suite] rank_by, else time",
    )

    tr = sub.add_parser("train", help="run a training suite ([[train]] tables) and write curves + summaries")
    tr.add_argument("suite", help="training suite TOML file, e.g. suites/train.toml")
    tr.add_argument("--out", help="run directory (default: results/<suite>-<timestamp>)")
    tr.add_argument("--resume", action="store_true", help="continue an interrupted training run in --out")
    tr.add_argument("--dry-run", action="store_true", help="validate and print the units, train nothing")
    tr.add_argument("--workers", type=_pos_int, metavar="N", help="train units on a local Dask cluster of N processes")
    tr.add_argument("--scheduler", metavar="ADDRESS", help="train units on an existing Dask cluster")
    tr.add_argument(
        "--yes",
        action="store_true",
        help="train a suite over the size limits (memory per unit or estimated time; see docs/notes/hardening.md)",
    )

    rc = sub.add_parser(
        "recommend",
        help="which estimator for this target at this budget: race the applicable ones at equal cost",
        description="Race every applicable unbiased, non-oracle estimator on TARGET by successive elimination at "
        "equal cost, and name the best (docs/notes/recommend.md).",
    )
    rc.add_argument(
        "target",
        nargs="?",
        help=f"a problem, {PROBLEM_SYNTAX}; or a suite file (.toml: one answer per problem or workload); "
        "or leave it out and give --workload",
    )
    rc.add_argument("--workload", help="a workload (built-in or registered), e.g. vae_bernoulli")
    rc.add_argument("--config", default="", help="the workload's configuration, e.g. latent_dim=10")
    rc.add_argument("--checkpoint", type=_nonneg_int, default=0, help="the workload's training steps (default 0)")
    rc.add_argument(
        "--batch-size", type=_nonneg_int, default=0, help="the workload's evaluation batch (default its own)"
    )
    rc.add_argument("--budget", type=_pos_float, default=60.0, help="seconds per answer, first calls included (60)")
    rc.add_argument("--rank-by", choices=["time", "evals"], default="time", help="equal time (default) or evaluations")
    rc.add_argument("--samples", type=_pos_int, help="L per estimate (default 2; a suite file's own otherwise)")
    rc.add_argument("--backend", help="backend to race on (default numpy where the target runs on it)")
    rc.add_argument("--estimators", type=_csv, help="race only these estimators (comma-separated names)")
    rc.add_argument("--grid", action="store_true", help="also race a small one-at-a-time hyperparameter grid")
    rc.add_argument("--seed", type=_nonneg_int, default=0)
    rc.add_argument("--json", action="store_true", help="print the answers as JSON")
    rc.add_argument("--out", help="run directory (default: results/recommend-<timestamp>)")
    rc.add_argument("--results-dir", type=Path, default=Path("results"), help="root for new run directories")
    rc.add_argument("--resume", action="store_true", help="continue an interrupted recommend run in --out")

    cp = sub.add_parser("compare", help="compare two runs cell by cell (variance and time ratios with CIs)")
    cp.add_argument("run_a", type=Path)
    cp.add_argument("run_b", type=Path)
    cp.add_argument("-o", "--output", type=Path, default=None, help="also write an HTML page")
    return ap


def cmd_run(a: argparse.Namespace) -> int:
    if a.precision is not None and not a.precision >= 0:
        raise UsageError(f"--precision: expected a number >= 0 (0 = fixed R), got {a.precision!r}")
    plan = sg.plan(
        a.suite,
        backends=a.backend,
        devices=a.device,
        out=a.out,
        results_dir=a.results_dir,
        replicates=a.replicates,
        seed=a.seed,
        dtype=a.dtype,
        precision=a.precision,  # 0 overrides a suite's precision with a fixed R
        max_replicates=a.max_replicates,
        max_seconds=a.max_seconds,
        max_memory=a.max_memory,  # MiB, like the suite key
        compile_backend=a.torch_compile,
        threads=a.threads,
        timing=not a.no_timing,
        resume=a.resume,
        confirm=a.yes,
        cli_args={k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()},
        workers=a.workers,
        scheduler=a.scheduler,
        cell_timeout=a.cell_timeout,
    )
    print(plan.summary(), file=sys.stderr)
    if a.dry_run:
        return 0
    try:
        run = plan.run()
    except sg.ExecutorError as exc:  # the cluster went away mid-run: finished cells are saved
        print(f"error: {exc}", file=sys.stderr)
        return 1
    meta = run.meta
    print(
        f"{meta['cells_done']} cells measured, {len(meta['skipped'])} skipped, {len(meta['failed'])} failed",
        file=sys.stderr,
    )
    print(f"results: {run.dir / 'results.parquet'}")
    print(f"metadata: {run.dir / 'meta.json'}")
    return run_exit_code(meta)


def run_exit_code(meta: dict[str, Any]) -> int:
    """0: every cell measured or skipped; 1: some cells failed or the run is incomplete (2 is bad input)."""
    if meta["failed"]:
        print(
            f"{len(meta['failed'])} of {meta.get('cells_total')} cells FAILED (see meta.json 'failed'): exit 1",
            file=sys.stderr,
        )
        return 1
    return 0 if meta["status"] == "complete" else 1


def cmd_list(a: argparse.Namespace) -> int:
    print_listing(sg.catalog(a.pattern), a.json)
    return 0


def cmd_show(a: argparse.Namespace) -> int:
    import pandas as pd

    try:
        run = sg.load_run(a.run)
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None
    df, meta = run.results, run.meta
    print(run.header())
    for s in meta.get("skipped", []):
        print(f"  skipped: {s['cell']}: {s['reason']}")
    for f in meta.get("failed", []):
        print(f"  FAILED: {f.get('cell') or f.get('unit')}: {f['error']}")
    if df.empty:
        print("(no results)")
        return 0
    if a.param:
        valid = sorted(df["param"].unique()) if "param" in df.columns else []
        if a.param not in valid:
            raise UsageError(f"--param: unknown parameter {a.param!r} in {a.run}; valid: {valid}")
        df = df[df["param"] == a.param]
    sort = a.sort or next((c for c in ("problem", "workload", "target", "estimator") if c in df.columns), None)
    if sort not in df.columns:
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
    if "unit_key" in df.columns:  # a training run: one summary row per unit
        cols = ["workload", "estimator", "backend", "device", "train_seed", "lr", "objective", "test_bound"]
        cols += ["test_bound_se", "final_val_elbo", "grad_var_mean", "steps", "steps_per_s"]
    if "answer_key" in df.columns:  # a recommend run: one row per target × estimator raced
        cols = ["target", "arm", "status", "pick", "round_out", "eliminated_by", "n_replicates", "variance"]
        cols += ["time_median_s", "f_evals", "grad_evals", "efficiency", "variance_per_eval", "bias"]
    cols += [c for c in df.columns if c.startswith("h_")]
    by = [c for c in (sort, "param", "variance") if c in df.columns]
    view = df.sort_values(list(dict.fromkeys(by)))[[c for c in cols if c in df.columns]]
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


def _print_check(check: sg.ImplementationCheck, result: sg.CheckResult | None) -> None:
    print(check.header() if result is None else "  " + check.line(result))


def cmd_check(a: argparse.Namespace) -> int:
    try:
        report = sg.check(
            a.estimator,
            a.backend,
            replicates=a.replicates,
            max_replicates=a.max_replicates,
            samples=a.samples,
            seed=a.seed,
            callback=_print_check,
        )
    except sg.CheckError as exc:
        raise UsageError(f"--{exc}" if exc.key else str(exc)) from None
    final, policy = report.verdict, report.policy
    if final == "UNDERPOWERED":
        print(
            f"underpowered: raise --max-replicates (now {policy.max_R}) so a {policy.detectable:.0%} bias is detectable"
        )
    if final == "CANNOT JUDGE":
        print("cannot judge: a bias test was significant where the estimates' tails do not let it hold its level")
    print("verdict:", final)
    return {"PASS": 0, "FAIL": 1, "UNDERPOWERED": 3, "CANNOT JUDGE": 4}[final]


def cmd_report(a: argparse.Namespace) -> int:
    try:
        path = sg.report(a.runs, a.output, workers=a.workers, rank_by=a.rank_by)
    except sg.OutputError as exc:
        raise UsageError(f"-o {exc}") from None
    print(f"report: {path}")
    return 0


def cmd_compare(a: argparse.Namespace) -> int:
    try:
        text, path = sg.compare_summary(a.run_a, a.run_b, a.output)
    except sg.OutputError as exc:
        raise UsageError(f"-o {exc}") from None
    print(text)
    if path:
        print(f"compare report: {path}")
    return 0


def cmd_train(a: argparse.Namespace) -> int:
    plan = sg.plan_training(a.suite, confirm=a.yes)
    if a.dry_run:
        for line in plan.lines():
            print(line)
        print(plan.summary())
        return 0
    run = sg.train(
        plan,
        out=a.out,
        resume=a.resume,
        workers=a.workers,
        scheduler=a.scheduler,
        confirm=a.yes,
        cli_args={k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()},
    )
    print(f"training run: {run.dir} ({run.units_done} of {run.units_total} units finished)")
    return 0 if run.complete else 1


def cmd_recommend(a: argparse.Namespace) -> int:
    if a.workload and a.target:
        raise UsageError("give a TARGET (problem or suite file) or --workload, not both")
    if not a.workload and not a.target:
        raise UsageError(f"recommend: give a TARGET ({PROBLEM_SYNTAX}, or a suite file) or --workload NAME")
    if not a.workload and (a.config or a.checkpoint or a.batch_size):
        raise UsageError("--config, --checkpoint and --batch-size describe a --workload; give --workload NAME")
    target: Any = a.target
    if a.workload:
        cfg = parse_config(a.config)
        target = sg.WorkloadSpec(a.workload, cfg, a.checkpoint, batch_size=a.batch_size)
    rec = sg.recommend(
        target,
        budget_s=a.budget,
        rank_by=a.rank_by,
        samples=a.samples,
        backend=a.backend,
        estimators=a.estimators,
        grid=a.grid,
        seed=a.seed,
        out=a.out,
        results_dir=a.results_dir,
        resume=a.resume,
        cli_args={k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()},
    )
    print(rec.to_json() if a.json else rec.text())
    failed = [x for x in rec.answers if x.get("status") != "ok"]
    return 1 if failed or len(rec.answers) < rec.targets_total else 0


COMMANDS = {
    "run": cmd_run,
    "list": cmd_list,
    "show": cmd_show,
    "check": cmd_check,
    "report": cmd_report,
    "compare": cmd_compare,
    "train": cmd_train,
    "recommend": cmd_recommend,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (*BAD_INPUT, UsageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        done = "training units" if args.command == "train" else "cells"
        print(f"\ninterrupted; finished {done} are saved — continue with --resume --out RUN_DIR", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (``stochgrad show RUN | head``): stop quietly, as a tool killed by SIGPIPE would;
        # stdout is pointed at /dev/null so that the interpreter's final flush cannot raise again
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
