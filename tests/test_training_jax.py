"""JAX training with optax: a tiny suite runs through the CLI, resumes bit for bit after a kill, writes the same curves
schema as PyTorch, and its final held-out bounds agree with PyTorch's over seeds.

Both engines draw their minibatches and estimator/decoder noise from the same NumPy generators
(:mod:`harness.training.loop`), so in float64 the two backends follow nearly the same trajectory; the agreement test
still judges them as the issue states it, by the seeds' spread: |mean_jax − mean_torch| <= 2 standard errors of the
difference over seeds (Bonferroni is not needed for a bound this loose; its power is checked: 2·SE below
``DETECTABLE`` nats).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("jax")
pytest.importorskip("optax")

from harness.registry import get_declaration
from harness.training.engine import ENGINES
from harness.training.loop import train_unit
from harness.training.spec import TRAIN_BACKENDS
from tests.support.training import assert_same_curves, fresh_checkpoint_cache, kill_at, vae_unit

DETECTABLE = 1.0  # nats of held-out bound: a JAX/PyTorch difference this large must be detectable


@pytest.fixture(autouse=True, scope="module")
def _cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    yield from fresh_checkpoint_cache(tmp_path_factory)


def _unit(tmp: Path | None = None, **kw) -> dict:
    return vae_unit(tmp, **{"backend": "jax", **kw})


def test_train_backends_derive_from_engines() -> None:
    assert tuple(ENGINES) == TRAIN_BACKENDS and "jax" in TRAIN_BACKENDS


@pytest.mark.parametrize("estimator", ["relax", "disarm"])
def test_jax_resume_equals_an_uninterrupted_run(tmp_path: Path, estimator: str) -> None:
    """Killed at step 30 (state saved at 20; RELAX refitted at 20), resumed on JAX: the same curves, bit for bit
    (optax's moments and step count come back from the state file)."""
    from harness.training.state import read_state

    fitted = get_declaration(estimator).state
    kw = dict(estimator=estimator, steps=40, log_every=10, refit_every=20, n_samples=2)
    straight = train_unit(_unit(**kw))
    assert straight["status"] == "ok", straight["message"]
    if fitted is not None:
        fitted.forget({})
    stateful = _unit(tmp_path, **kw)
    kill_at(stateful, 30)
    if fitted is not None:
        fitted.forget({})
    arrays, meta = read_state(Path(stateful["state_path"]))
    assert meta["step"] == 30 and any(k.startswith("am/") for k in arrays)
    resumed = train_unit(stateful)
    assert resumed["status"] == "ok", resumed["message"]
    assert_same_curves(straight, resumed)
    assert straight["summary"]["test_bound"] == resumed["summary"]["test_bound"]


def test_cli_train_on_jax_has_torchs_curves_schema(tmp_path: Path) -> None:
    """`stochgrad train` on a tiny suite with both backends: one curves.parquet, the same columns and dtypes per
    backend, results for every unit, and --resume of a finished run changes nothing."""
    from harness.cli.main import main

    f = tmp_path / "s.toml"
    f.write_text(
        '[suite]\nname = "tiny"\n[[train]]\nworkload = "vae_bernoulli"\nconfig = { latent_dim = 3 }\n'
        'estimators = ["disarm", "vimco"]\nbackends = ["torch", "jax"]\nseeds = [0]\nsteps = 20\nlog_every = 10\n'
        "val_size = 20\ntest_size = 20\ntest_samples = 5\n"
    )
    out = tmp_path / "run"
    assert main(["train", str(f), "--out", str(out)]) == 0
    curves, res = pd.read_parquet(out / "curves.parquet"), pd.read_parquet(out / "results.parquet")
    assert set(res["backend"]) == {"torch", "jax"} and len(res) == 4
    by = {b: curves[curves["backend"] == b] for b in ("torch", "jax")}
    assert len(by["jax"]) == len(by["torch"]) == 2 * 3
    assert list(by["jax"].dropna(axis=1, how="all").columns) == list(by["torch"].dropna(axis=1, how="all").columns)
    assert (by["jax"].dtypes == by["torch"].dtypes).all()
    assert np.isfinite(res["test_bound"]).all()
    assert main(["train", str(f), "--out", str(out), "--resume"]) == 0
    assert pd.read_parquet(out / "results.parquet").equals(res)


@pytest.mark.parametrize(
    "estimator",
    ["disarm", pytest.param("relax", marks=pytest.mark.slow), pytest.param("vimco", marks=pytest.mark.slow)],
)
def test_final_bound_agrees_with_torch_over_seeds(estimator: str) -> None:
    """Final held-out bound, 4 seeds per backend: |mean_jax − mean_torch| <= 2 SE (SE of the difference of the two
    seed means, from the seeds' spread), and 2 SE < DETECTABLE nats (power)."""
    seeds = (0, 1, 2, 3)
    got = {
        b: np.array(
            [
                train_unit(_unit(estimator=estimator, backend=b, seed=s, steps=60, log_every=60, n_samples=2))[
                    "summary"
                ]["test_bound"]
                for s in seeds
            ]
        )
        for b in ("torch", "jax")
    }
    n = len(seeds)
    se = math.sqrt(got["torch"].var(ddof=1) / n + got["jax"].var(ddof=1) / n)
    diff = got["jax"].mean() - got["torch"].mean()
    msg = f"{estimator} seeds={seeds} torch={got['torch']} jax={got['jax']} diff={diff:.4g} se={se:.4g}"
    assert 2 * se < DETECTABLE, "underpowered: " + msg
    assert abs(diff) <= 2 * se, msg
