"""Training engines side by side (docs/notes/training.md, "JAX engine (optax)"): steps/s and numbers.

    python -m suites.benchmarks.training_engines rates [--steps 300] [EST ...]   # torch, eager JAX, compiled JAX
    python -m suites.benchmarks.training_engines compare [--steps 200] [EST ...] # eager vs compiled JAX: curves, bound
    python -m suites.benchmarks.training_engines table RUN_DIR                  # a torch+jax training run, per estimator

``rates`` and ``compare`` train suites/train.toml's unit (vae_bernoulli, 16 Bernoulli latents, linear, batch 32,
L = 2, seed 0) once per engine; ``steps_per_s`` excludes compilation (``compile_s`` is the JAX compile seconds the
unit spent).  ``table`` reads a run of ``stochgrad train`` with ``backends = ["torch", "jax"]``: mean ± SE over seeds
of the final test bound per backend, their difference against 2 SE of it, and steps/s.  Scripts, not asv benchmarks.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.backends import get_backend
from harness.registry import get_declaration
from harness.training import engine as engines
from harness.training.jax_engine import JaxEngine
from harness.training.loop import train_unit
from harness.training.spec import TRAIN_KEYS
from harness.workloads import get_workload

ESTIMATORS = ["score_function_rloo", "arm", "disarm", "relax", "gumbel_softmax", "st_gumbel", "vimco"]


class EagerJaxEngine(JaxEngine):
    """The JAX engine with its step run op by op (the compiled step's reference)."""

    def __init__(self, setup: Any, init: Any) -> None:
        super().__init__(setup, init, jit=False)


@contextlib.contextmanager
def eager_jax() -> Iterator[None]:
    saved = engines.ENGINES["jax"]
    engines.ENGINES["jax"] = (__name__, "EagerJaxEngine")
    try:
        yield
    finally:
        engines.ENGINES["jax"] = saved


def suite_unit(estimator: str, backend: str, steps: int) -> dict[str, Any]:
    """suites/train.toml's unit for one estimator, seed 0."""
    wl = get_workload("vae_bernoulli")
    u = {k: v for k, v in TRAIN_KEYS.items() if k not in ("estimators", "seeds", "backends", "devices", "hyper")}
    u.update(
        suite="training_engines",
        workload=wl.name,
        config=wl.resolve({"latent_dim": 16, "hidden": 0}),
        estimator=estimator,
        hyper={},
        seed=0,
        lr=3e-3,
        backend=backend,
        device="cpu",
        steps=steps,
        log_every=100,
        batch_size=32,
        val_size=200,
        test_size=0,
        test_samples=100,
        n_samples=2,
        refit_every=100,
    )
    return u


def train(estimator: str, mode: str, steps: int) -> dict[str, Any]:
    """One unit on ``mode`` (torch, jax-eager or jax): its result, wall seconds and JAX compile seconds."""
    state = get_declaration(estimator).state
    if state is not None:
        state.forget({})
    n0, c0 = get_backend("jax").compilations()
    t0 = time.perf_counter()
    with eager_jax() if mode == "jax-eager" else contextlib.nullcontext():
        out = train_unit(suite_unit(estimator, mode.split("-")[0], steps))
    if out["status"] != "ok":
        raise RuntimeError(f"{estimator} on {mode}: {out['message']}")
    n1, c1 = get_backend("jax").compilations()
    return {**out, "wall_s": time.perf_counter() - t0, "compile_s": c1 - c0, "compilations": n1 - n0}


def rates(estimators: list[str], steps: int) -> pd.DataFrame:
    rows = []
    for est in estimators:
        for mode in ("torch", "jax-eager", "jax"):
            r = train(est, mode, steps)
            s = r["summary"]
            rows.append(
                {
                    "estimator": est,
                    "engine": mode,
                    "steps_per_s": s["steps_per_s"],
                    "compile_s": r["compile_s"],
                    "test_bound": s["test_bound"],
                    "unit_wall_s": r["wall_s"],
                }
            )
            print(pd.DataFrame(rows[-1:]).to_string(index=False, header=len(rows) == 1), flush=True)
    return pd.DataFrame(rows)


def compare(estimators: list[str], steps: int) -> pd.DataFrame:
    rows = []
    for est in estimators:
        eager, jit = train(est, "jax-eager", steps), train(est, "jax", steps)
        a, b = pd.DataFrame(eager["rows"]), pd.DataFrame(jit["rows"])
        diffs = {f"max_abs_diff_{c}": float(np.nanmax(np.abs(a[c] - b[c]))) for c in ("train_objective", "val_elbo")}
        rows.append(
            {
                "estimator": est,
                **diffs,
                "test_bound_eager": eager["summary"]["test_bound"],
                "test_bound_diff": jit["summary"]["test_bound"] - eager["summary"]["test_bound"],
            }
        )
    return pd.DataFrame(rows)


def table(run_dir: Path) -> pd.DataFrame:
    res = pd.read_parquet(run_dir / "results.parquet")
    rows = []
    for est in [e for e in ESTIMATORS if e in set(res.estimator)] + sorted(set(res.estimator) - set(ESTIMATORS)):
        g = {b: res[(res.estimator == est) & (res.backend == b)] for b in ("torch", "jax")}
        m = {b: g[b].test_bound.mean() for b in g}
        se = {b: g[b].test_bound.std(ddof=1) / math.sqrt(len(g[b])) for b in g}
        d, sed = m["jax"] - m["torch"], math.hypot(se["torch"], se["jax"])
        rows.append(
            {
                "estimator": est,
                "seeds": f"{len(g['torch'])}/{len(g['jax'])}",
                "torch_bound": f"{m['torch']:.3f} ± {se['torch']:.3f}",
                "jax_bound": f"{m['jax']:.3f} ± {se['jax']:.3f}",
                "jax_minus_torch": f"{d:+.1e}",
                "se_of_diff": round(sed, 3),
                "within_2se": bool(abs(d) <= 2 * sed),
                "torch_steps_per_s": round(g["torch"].steps_per_s.mean()),
                "jax_steps_per_s": round(g["jax"].steps_per_s.mean()),
                "jax_compiled": bool(g["jax"].step_compiled.all()),
            }
        )
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name, steps in (("rates", 300), ("compare", 200)):
        p = sub.add_parser(name)
        p.add_argument("--steps", type=int, default=steps)
        p.add_argument("estimators", nargs="*", default=ESTIMATORS)
    t = sub.add_parser("table")
    t.add_argument("run_dir", type=Path)
    a = ap.parse_args()
    if a.cmd == "table":
        print(table(a.run_dir).to_string(index=False))
    elif a.cmd == "rates":
        rates(a.estimators, a.steps)
    else:
        print(compare(a.estimators, a.steps).to_string(index=False))


if __name__ == "__main__":
    main()
