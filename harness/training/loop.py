"""The training loop: a unit (a JSON-able dict) trained step by step, resumably, on any registered engine.

This is the one trainer.  :func:`train_unit` runs a training run's unit (curves, summary; ``stochgrad train``) and
:mod:`harness.training.checkpoints` runs a workload's checkpoint chain through the same :class:`Trainer` and the same
step — the registered estimator's implementation, examples as replicates (:mod:`harness.training.step`).  The loop
is backend-neutral: minibatches, binarization and estimator noise of step t come from
``numpy.random.default_rng([seed, 1, t])``, so the RNG state *is* the step counter; everything on device arrays is
the engine's (:mod:`harness.training.engine`; PyTorch: :mod:`harness.training.torch_engine`).

Every ``log_every`` steps :func:`train_unit` appends a curves row and saves the unit's whole state — the engine's
arrays (weights, optimizer moments, online-variance EMAs) and the loop's meta (step, curves so far, and the fits of
an estimator that declares fitted state, through its :class:`harness.fits.FittedState` hook) — as one checksummed
file (:mod:`harness.training.state`).  A killed unit resumed from its last state finishes with the same curves as an
uninterrupted one (same backend and device; wall-clock columns aside).

Fitted estimators (those declaring ``state``) see a :class:`~harness.training.step.StepProblem` whose identity is
``{"training": <unit key>, "refit": <step of the last refit>}``: a new identity every ``refit_every`` steps makes them
refit; the fits of passed refit steps are forgotten.

Online gradient variance (as DisARM): EMAs with decay β of the encoder-weight gradient g and of g², bias-corrected
(m̂ = m / (1 − β^t)); ``grad_var`` = mean over encoder weights of ŝ − m̂².  During training it includes the
minibatch noise and the drift of the gradient (``fixed_batch`` and lr → 0 leave only the estimator's noise).
"""

from __future__ import annotations

import math
import time
import traceback
from collections.abc import Callable, Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from harness.files.atomic import is_disk_full
from harness.problems import DISTRIBUTIONS
from harness.registry import get_declaration, get_estimator
from harness.registry.interrupts import EstimatorExit, as_failure
from harness.training.engine import UnitSetup, engine_class
from harness.training.state import read_state, save_state
from harness.training.step import StepProblem
from harness.training.unit import unit_key
from harness.workloads import get_workload

FORMAT = 2  # of a unit's state file; 2: fits saved through the estimator's declared state hook
EVAL_CHUNK = 512


class Trainer:
    """One unit's training state: the engine (model, optimizer, EMAs), the data, the step counter, the curves."""

    def __init__(self, unit: Mapping[str, Any], init: Mapping[str, np.ndarray] | None = None) -> None:
        """``init``: initial weights (default: the workload's ``init_params`` with ``default_rng([seed, 0])``)."""
        self.unit, self.key = dict(unit), unit_key(unit)
        self.wl = get_workload(unit["workload"])
        self.cfg = self.wl.resolve(unit["config"])
        self.seed = int(unit["seed"])
        decl = get_declaration(unit["estimator"])
        impl = get_estimator(unit["estimator"], unit["backend"])
        self.fitted = decl.state  # the estimator's declared fitted state, or None
        self.setup = UnitSetup(
            workload=self.wl,
            cfg=self.cfg,
            dist=DISTRIBUTIONS[self.wl.latent],
            estimator=impl,
            hyper={**impl.defaults(), **unit["hyper"]},
            multi="multi_sample_bound" in decl.requires,
            enc_keys=tuple(self.wl.encoder_keys(self.cfg)),
            n_samples=int(unit["n_samples"]),
            lr=float(unit["lr"]),
            ema_decay=float(unit["ema_decay"]),
            dtype=unit["dtype"],
            device=unit["device"],
        )

        def initial() -> dict[str, np.ndarray]:
            if init is not None:
                return {k: np.asarray(v) for k, v in init.items()}
            return self.wl.init_params(self.cfg, np.random.default_rng([self.seed, 0]))

        self.engine = engine_class(unit["backend"])(self.setup, initial)
        self.t, self.elapsed, self.rows = 0, 0.0, []
        self.compile_s = 0.0  # seconds the steps spent tracing and compiling (kept out of ``elapsed``)
        self.problem: StepProblem | None = None
        self.train = self.wl.dataset(self.cfg)["train"]
        self.n_train = len(next(iter(self.train.values())))

    # -- data -------------------------------------------------------------------------------------------------
    def _held_out(self, split: str, size: int, tag: int) -> dict[str, np.ndarray]:
        raw = self.wl.dataset(self.cfg)[split]
        n = len(next(iter(raw.values())))
        raw = {k: np.asarray(v[: size or n], np.float64) for k, v in raw.items()}
        return self.wl.prepare_batch(raw, np.random.default_rng([self.seed, tag]), self.cfg)

    @cached_property
    def val(self) -> dict[str, np.ndarray]:
        return self._held_out("val", int(self.unit["val_size"]), 2)

    @cached_property
    def test(self) -> dict[str, np.ndarray]:
        return self._held_out("test", int(self.unit["test_size"]), 3)

    def _batch(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        bs = int(self.unit["batch_size"])
        if self.unit["fixed_batch"]:  # the batch a WorkloadProblem(split=train, batch_seed=seed) evaluates
            idx = np.random.default_rng(self.seed).choice(self.n_train, size=bs, replace=False)
            raw = {k: np.asarray(v[idx], np.float64) for k, v in self.train.items()}
            return self.wl.prepare_batch(raw, np.random.default_rng([self.seed, 1]), self.cfg)
        idx = rng.choice(self.n_train, size=bs, replace=False)
        return self.wl.prepare_batch({k: np.asarray(v[idx], np.float64) for k, v in self.train.items()}, rng, self.cfg)

    # -- one step ---------------------------------------------------------------------------------------------
    def _problem_for(self, x: dict[str, Any], eta_of: Callable[[], dict[str, Any]]) -> StepProblem:
        """The problem fitting estimators read: rebuilt at refit steps (its identity names the refit step) from
        example 0 of the batch ``x`` and of its η (``eta_of()``, asked for only then)."""
        every = int(self.unit["refit_every"])
        ident = {"training": self.key, "refit": self.t - self.t % every if self.fitted else 0}
        if self.problem is None or self.problem.spec.ident != ident:
            if self.fitted is not None and self.problem is not None:
                self.fitted.forget(self.problem.spec.ident)
            to_np = self.engine.to_numpy
            x0 = {k: to_np(v[:1]).astype(np.float64) for k, v in x.items()}
            e0 = {k: to_np(v[:1]).astype(np.float64) for k, v in eta_of().items()}
            self.problem = StepProblem(self.wl, self.cfg, self.setup.dist, self.engine.weights(), x0, e0, ident)
        return self.problem

    def step(self) -> float:
        """One optimizer step; returns the batch's training objective (mean over examples)."""
        rng = np.random.default_rng([self.seed, 1, self.t])
        obj = self.engine.step(self._batch(rng), rng, self._problem_for)
        self.t += 1
        return obj

    def grad_var(self) -> tuple[float, float]:
        return self.engine.grad_var(self.t)

    def bound(self, x: dict[str, np.ndarray], K: int, tag: int) -> np.ndarray:
        return self.engine.bound(x, K, self.seed * 1000 + tag, EVAL_CHUNK if K < 10 else max(1, EVAL_CHUNK // K))

    # -- state ------------------------------------------------------------------------------------------------
    def meta(self) -> dict[str, Any]:
        fits = self.fitted.export({"training": self.key}) if self.fitted is not None else []
        return {
            "format": FORMAT,
            "key": self.key,
            "step": self.t,
            "elapsed": self.elapsed,
            "compile_s": self.compile_s,
            "rows": self.rows,
            "fits": fits,
        }

    def save(self, path: Path) -> None:
        save_state(path, self.engine.arrays(), self.meta())

    def restore(self, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> None:
        self.t, self.elapsed, self.rows = int(meta["step"]), float(meta["elapsed"]), list(meta["rows"])
        self.compile_s = float(meta.get("compile_s", 0.0))
        self.engine.restore(arrays, self.t)
        if self.fitted is not None:
            self.fitted.restore(list(meta.get("fits", [])))

    def resume_from(self, path: Path) -> bool:
        """Restore the saved state at ``path`` if it is this unit's (same key and format); whether it was."""
        saved = read_state(path)
        if saved is None or saved[1].get("format") != FORMAT or saved[1].get("key") != self.key:
            return False
        self.restore(*saved)
        return True

    def advance(self, stop: int, every: int = 0, on_log: Callable[[Trainer, list], None] | None = None) -> None:
        """Steps until ``t == stop``, each timed between device syncs; every ``every`` steps (and at ``stop``)
        ``on_log(self, window)`` with the (objective, seconds) of the steps since the last call.  The seconds an
        engine spends compiling (JAX: tracing, lowering and XLA compilation of its step) are kept out of a step's
        time and summed in ``compile_s``, as the runner keeps compilation out of per-call times."""
        window: list[tuple[float, float]] = []
        while self.t < stop:
            self.engine.sync()
            c0 = self.engine.compile_seconds()
            t0 = time.perf_counter()
            obj = self.step()
            self.engine.sync()
            dt = time.perf_counter() - t0
            dc = self.engine.compile_seconds() - c0
            self.compile_s += dc
            dt = max(dt - dc, 0.0)
            self.elapsed += dt
            window.append((obj, dt))
            if on_log is not None and ((every and self.t % every == 0) or self.t == stop):
                on_log(self, window)
                window = []


def train_unit(unit: dict[str, Any]) -> dict[str, Any]:
    """Train one unit to ``unit["steps"]`` (resuming from ``unit["state_path"]`` if it holds its state); the outcome
    dict has ``key``, ``status`` (ok | failed), ``rows`` (curves), ``summary``, ``message`` and ``seconds``.

    A failing unit is an outcome, not an exception — except a full disk, which stops the whole run (re-raised), and
    the user's Ctrl-C or SIGTERM.  A ``KeyboardInterrupt`` the estimator raises itself (no Ctrl-C) fails the unit,
    as it fails a cell (:mod:`harness.registry.interrupts`)."""
    t_start = time.perf_counter()
    try:
        with as_failure():
            return _train_unit(unit, t_start)
    except EstimatorExit as exc:
        return _failed(unit, str(exc), time.perf_counter() - t_start)


def _failed(unit: dict[str, Any], message: str, seconds: float) -> dict[str, Any]:
    return {
        "key": unit_key(unit),
        "status": "failed",
        "rows": [],
        "summary": {},
        "message": message,
        "seconds": seconds,
    }


def _train_unit(unit: dict[str, Any], t_start: float) -> dict[str, Any]:
    try:
        tr = Trainer(unit)
        path = Path(unit["state_path"]) if unit.get("state_path") else None
        if path is not None:
            tr.resume_from(path)
        if tr.t == 0 and not tr.rows:  # the untrained model: step 0
            tr.rows.append(_curve_row(tr, []))

        def log(t: Trainer, window: list) -> None:
            t.rows.append(_curve_row(t, window))
            if path is not None:
                t.save(path)

        tr.advance(int(unit["steps"]), int(unit["log_every"]), log)
        return {
            "key": tr.key,
            "status": "ok",
            "rows": tr.rows,
            "summary": _summary(tr),
            "message": "",
            "seconds": time.perf_counter() - t_start,
        }
    except (Exception, SystemExit) as exc:  # a failing unit is recorded, the others go on (an estimator's
        if is_disk_full(exc):  # SystemExit too: it is the unit's failure, not the end of the training run)
            raise
        message = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=6)}"
        return _failed(unit, message, time.perf_counter() - t_start)


def _se(v: np.ndarray) -> float:
    """Standard error of the mean over examples (NaN for a single example, e.g. blr's one "example")."""
    return float(np.std(v, ddof=1) / math.sqrt(len(v))) if len(v) > 1 else math.nan


def _curve_row(tr: Trainer, window: list[tuple[float, float]]) -> dict[str, Any]:
    val = np.mean([tr.bound(tr.val, 1, 2 + 10 * i) for i in range(int(tr.unit["val_samples"]))], axis=0)
    var, msq = tr.grad_var() if tr.t else (math.nan, math.nan)
    objs, dts = zip(*window) if window else ((math.nan,), (math.nan,))
    return {
        "step": tr.t,
        "train_objective": objs[-1],
        "train_objective_avg": float(np.mean(objs)),
        "val_elbo": float(np.mean(val)),
        "val_elbo_se": _se(val),
        "grad_var": var,
        "grad_mean_sq": msq,
        "step_time_s": dts[-1],
        "step_time_avg_s": float(np.mean(dts)),
        "time_s": tr.elapsed,
    }


def _summary(tr: Trainer) -> dict[str, Any]:
    K = int(tr.unit["test_samples"])
    t0 = time.perf_counter()
    test = tr.bound(tr.test, K, 3)
    test_elbo = tr.bound(tr.test, 1, 4)
    n = len(test)
    vals = [r["val_elbo"] for r in tr.rows]
    return {
        "test_bound": float(test.mean()),
        "test_bound_se": _se(test),
        "test_bound_k": K,
        "test_elbo": float(test_elbo.mean()),
        "test_size": n,
        "final_val_elbo": vals[-1],
        "best_val_elbo": float(max(vals)),
        "final_train_objective": tr.rows[-1]["train_objective_avg"],
        "train_time_s": tr.elapsed,
        "steps_per_s": tr.t / tr.elapsed,
        "compile_time_s": tr.compile_s,
        "step_compiled": bool(tr.engine.compiled),
        "step_eager_reason": tr.engine.eager_reason,
        "grad_var_final": tr.rows[-1]["grad_var"],
        "grad_var_mean": float(np.nanmean([r["grad_var"] for r in tr.rows[1:]])),
        "eval_time_s": time.perf_counter() - t0,
        "steps": tr.t,
    }
