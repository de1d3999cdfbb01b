"""Runs for testing and sizing the report: a small real run, and a synthetic large run.

- :func:`small_run` executes a tiny suite with the real harness (seconds): continuous and discrete problems,
  two dimensions, two L values, a biased estimator, several backends, optionally a hostile estimator name
  (``<script>alert(1)</script>``, with a hostile hyperparameter value) to test escaping.
- :func:`synthetic_run` writes a run directory with thousands of plausible cells (variance ∝ 1/L, time ∝ a + bLD)
  without running anything: for checking report size and render time at scale.

``python -m tests.support.demo OUT_DIR [N_ESTIMATORS | 10k]`` writes a synthetic run and its report and prints
the cell count, file size and build time.
"""

from __future__ import annotations

import io
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

XSS_NAME = "<script>alert(1)</script>"
XSS_HYPER = "<img src=x onerror=alert(2)>"

JAX_SWEEP = """
[[sweep]]
estimators = ["pathwise"]
backends = ["jax"]
n_samples = [1, 4]
  [[sweep.problems]]
  distribution = "normal"
  params = { loc = 0.5, scale = 1.5 }
  objective = "quadratic"
  dims = [1]
"""

SMALL_SUITE = """
[suite]
name = "report-test <b>&x <i>"
description = "tiny suite for the report tests"
seed = 3
replicates = {R}
timing_max_s = 0.01

[[sweep]]
estimators = {cont}
backends = {backends}
n_samples = [1, 4]
  [[sweep.problems]]
  distribution = "normal"
  params = {{ loc = 0.5, scale = 1.5 }}
  objective = "quadratic"
  dims = [1, 2]

{jax_sweep}
[[sweep]]
estimators = ["gumbel_softmax", "enumeration"]
backends = ["numpy"]
n_samples = [2]
  [[sweep.problems]]
  distribution = "bernoulli"
  params = {{ probs = 0.3 }}
  objective = "bernoulli_toy"
  dims = [1]
"""


def register_xss_estimator() -> None:
    """Register ``<script>alert(1)</script>`` on NumPy (pathwise inside) with hostile family, hyperparameter,
    doc and reference; remove it with ``harness.registry.unregister(XSS_NAME, "numpy")``."""
    from harness.registry import Hyper, get_estimator, register_estimator

    pathwise = get_estimator("pathwise", "numpy").fn

    def hostile(ctx: Any) -> dict:
        """Pathwise under a hostile name (report escaping test)."""
        return pathwise(ctx)

    register_estimator(
        XSS_NAME,
        distributions=("normal",),
        unbiased=True,
        family="<b>family</b>",
        hyperparameters={"note": Hyper(XSS_HYPER, choices=(XSS_HYPER,), doc="<u>doc</u>")},
        reference="<a href='https://example.com'>ref</a>",
    ).implementation("numpy")(hostile)


def small_run(
    out: Path, backends: tuple[str, ...] = ("numpy", "torch"), jax: bool = True, xss: bool = True, R: int = 300
) -> Path:
    """Execute the tiny suite into ``out`` (a fresh directory); the hostile estimator is unregistered after.

    ``backends`` run the whole continuous sweep; ``jax`` adds pathwise on JAX at D=1 only (JIT compilation
    makes JAX cells the slowest), so the agreement table shows NumPy, PyTorch and JAX side by side.
    """
    from harness import registry
    from harness.runs.suite_run import execute
    from harness.suite.expand import expand

    out = Path(out)
    suite = out.parent / f"{out.name}-suite.toml"
    cont = ["pathwise", "score_function"] + ([XSS_NAME] if xss else [])
    suite.write_text(
        SMALL_SUITE.format(
            R=R, cont=json.dumps(cont), backends=json.dumps(list(backends)), jax_sweep=JAX_SWEEP if jax else ""
        )
    )
    if xss:
        register_xss_estimator()
    try:
        execute(expand(suite), suite, out, stream=io.StringIO())
    finally:
        if xss:
            registry.unregister(XSS_NAME, "numpy")
    return out


PROBLEMS = [
    ("normal", "quadratic", ("loc", "scale")),
    ("normal", "cos", ("loc", "scale")),
    ("gamma", "quadratic", ("concentration", "rate")),
    ("bernoulli", "bernoulli_toy", ("logits",)),
    ("categorical", "quadratic", ("logits",)),
    ("beta", "quadratic", ("concentration1", "concentration0")),
    ("dirichlet", "quadratic", ("concentration",)),
    ("student_t", "cos", ("df", "loc", "scale")),
    ("von_mises", "cos", ("loc", "concentration")),
    ("exponential", "linear", ("rate",)),
]
REINFORCE, ORACLE = "score_function", "score_function_oracle"


def estimator_names(n: int) -> list[str]:
    """``score_function``, ``score_function_oracle``, then ``est02`` ...: plain REINFORCE and its oracle first."""
    return [REINFORCE, ORACLE] + [f"est{e:02d}" for e in range(2, n)]


def synthetic_run(
    out: Path,
    n_estimators: int = 12,
    dims: tuple[int, ...] = (1, 10, 100),
    Ls: tuple[int, ...] = (1, 4, 16, 64),
    backends: tuple[str, ...] = ("numpy", "torch", "jax"),
    n_problems: int = 5,
    seed: int = 0,
    oracle: str = ORACLE,
) -> Path:
    """A run directory (results.parquet + meta.json) with n_problems × n_estimators × backends × dims × Ls cells.

    Plausible numbers without running anything: variance ∝ 1/L, time ∝ a + bLD.  ``score_function`` has the
    largest variance (10-100× the others), the estimator named by ``oracle`` (default ``score_function_oracle``)
    the smallest and is declared an oracle baseline (rows' ``oracle`` column and the catalog: a reference that must
    never be recommended); every 5th estimator is biased; every 7th is heavy-tailed (``variance_ci_valid`` False,
    ``heavy_tail`` "variance", its variance looks lowest); some cells are precision-capped.  meta.json
    records the catalog (``estimators``), one failed and one skipped cell.
    """
    rng = np.random.default_rng(seed)
    names = estimator_names(n_estimators)
    rows = []
    for dist, obj, params in (PROBLEMS * (1 + n_problems // len(PROBLEMS)))[:n_problems]:
        for e, name in enumerate(names):
            biased = e % 5 == 4
            heavy = e % 7 == 6
            base_var = 10 ** rng.uniform(2.5, 3) if name == REINFORCE else 10 ** rng.uniform(-1, 1.5)
            if name == oracle or heavy:
                base_var = 10 ** rng.uniform(-3, -2.5)
            cost = 10 ** rng.uniform(-5.5, -4)
            for b in backends:
                slow = {"numpy": 1.0, "torch": 3.0, "jax": 0.8}.get(b, 1.0)
                for D in dims:
                    for L in Ls:
                        key = f"{dist}|{obj}|{name}|{b}|{D}|{L}"
                        t = cost * slow * (1 + 0.02 * L * D) * rng.lognormal(0, 0.05)
                        for p in params:
                            v = base_var / L * (1 + 0.1 * np.log(D)) * rng.lognormal(0, 0.03)
                            se = v * (2.0 if heavy else 0.03)
                            bias = 0.1 if biased else abs(rng.normal(0, np.sqrt(v / 2000)))
                            rows.append(
                                {
                                    "suite": "synthetic",
                                    "estimator": name,
                                    "backend": b,
                                    "device": "cpu",
                                    "distribution": dist,
                                    "objective": obj,
                                    "dim": D,
                                    "n_samples": L,
                                    "dtype": "float64",
                                    "family": f"fam{e % 4}",
                                    "unbiased": not biased,
                                    "oracle": name == oracle,
                                    "cell_key": key,
                                    "problem": f"{dist}(a=1)/{obj}/D={D}",
                                    "param": p,
                                    "n_replicates": 2000,
                                    "n_replicates_used": 2000.0,
                                    "exact_grad": 1.0,
                                    "grad_mean": 1.0 + bias,
                                    "bias": bias,
                                    "bias_ci_low": max(bias - 0.01, 0),
                                    "bias_ci_high": bias + 0.01,
                                    "bias_z": bias / np.sqrt(v / 2000),
                                    "variance": v,
                                    "variance_se": se,
                                    "variance_ci_low": max(v - 1.96 * se, 0.0),
                                    "variance_ci_high": v + 1.96 * se,
                                    "variance_rel_halfwidth": 1.96 * se / v,
                                    "variance_ci_valid": not heavy,
                                    "heavy_tail": "variance" if heavy else "",
                                    "tail_index": 1.5 if heavy else np.nan,
                                    "mse": v + bias**2,
                                    "snr": 1 / np.sqrt(v),
                                    "time_median_s": t,
                                    "time_iqr_s": 0.05 * t,
                                    "time_samples": 20,
                                    "compile_time_s": 0.0,
                                    "efficiency": v * t,
                                    "nan_fraction": 0.0,
                                    "h_temperature": 0.5 if biased else np.nan,
                                    "precision_capped": bool(heavy and Ls[0] == L),
                                }
                            )
    df = pd.DataFrame(rows)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    df.insert(0, "run_id", out.name)
    df.to_parquet(out / "results.parquet", index=False)
    n_cells = df["cell_key"].nunique()
    catalog = [
        {
            "name": n,
            "backend": b,
            "family": f"fam{e % 4}",
            "distributions": sorted(df["distribution"].unique()),
            "unbiased": e % 5 != 4,
            "oracle": n == oracle,
            "hyperparameters": {"temperature": 0.5} if e % 5 == 4 else {},
            "min_samples": 1,
            "requires": [],
            "reference": f"synthetic reference {e}",
            "source": "tests.support.demo",
        }
        for e, n in enumerate(names)
        for b in backends
    ]
    meta = {
        "run_id": out.name,
        "suite": "synthetic",
        "git_commit": "synthetic",
        "seed": seed,
        "status": "complete",
        "cells_total": n_cells + 2,
        "cells_done": n_cells,
        "skipped": [{"cell": "est02[torch:cuda] normal/quadratic/D=1", "reason": "CUDA not available"}],
        "failed": [{"cell": "est03[jax:cpu] normal/quadratic/D=1", "error": "RuntimeError: synthetic failure"}],
        "dropped": {},
        "estimators": catalog,
        "started": "2026-01-01T00:00:00+00:00",
        "finished": "2026-01-01T01:00:00+00:00",
        "machine": {"hostname": "synthetic", "cpu_model": "none", "packages": {}},
    }
    (out / "meta.json").write_text(json.dumps(meta))
    return out


def synthetic_10k(out: Path) -> Path:
    """A synthetic run of 10,080 cells (10 problems × 14 estimators × 3 backends × 4 D × 6 L)."""
    return synthetic_run(out, n_estimators=14, dims=(1, 4, 16, 64), Ls=(1, 2, 4, 8, 16, 64), n_problems=10)


def main(argv: list[str] | None = None) -> int:
    from harness.report import build_report

    args = argv if argv is not None else sys.argv[1:]
    out = Path(args[0] if args else "results/synthetic-large")
    if len(args) > 1 and args[1] == "10k":
        run = synthetic_10k(out)
    else:
        run = synthetic_run(out, n_estimators=int(args[1]) if len(args) > 1 else 12)
    n = pd.read_parquet(run / "results.parquet")["cell_key"].nunique()
    t0 = time.perf_counter()
    path = build_report([run], run / "report.html")
    dt = time.perf_counter() - t0
    print(f"{n} cells -> {path}: {path.stat().st_size / 2**20:.2f} MiB, built in {dt:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
