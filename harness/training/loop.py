"""Run one training unit (a JSON-able dict) to completion, resumably: Adam, online gradient variance, curves.

:func:`train_unit` is a module-level function of a unit description (see :mod:`harness.training.spec`)
returning an outcome dict, so any executor can run it (in-process by default; see :mod:`harness.runs.training_run`).
Every ``log_every`` steps it appends a curves row and saves the unit's whole state — weights, Adam moments and
step, the online-variance EMAs, the curves so far, fitted control variates — as ONE ``.npz`` file
(``unit["state_path"]``, atomic write).  Randomness is a function of (seed, step) — minibatch, binarization and
estimator noise of step t come from ``numpy.random.default_rng([seed, 1, t])`` — so the RNG state *is* the
step counter, and a killed unit resumed from its last state finishes with the same curves as an uninterrupted
one (same backend and device; wall-clock columns aside).

Online gradient variance (as DisARM): EMAs with decay β of the encoder-weight gradient g and of g², bias-corrected
(m̂ = m / (1 − β^t)); ``grad_var`` = mean over encoder weights of ŝ − m̂².  During training it includes the
minibatch noise and the drift of the gradient (``fixed_batch`` and lr → 0 leave only the estimator's noise).
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from harness.files.atomic import atomic_write_bytes
from harness.training.spec import unit_key
from harness.training.step import StepProblem, decoder_objective, encoder_gradient, held_out_bound

FORMAT = 1
EVAL_CHUNK = 512


def _fits_module() -> Any:
    import sys

    return sys.modules.get("estimators.rebar_relax")


def save_state(path: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays, __meta__=np.array(json.dumps(meta, default=float)))
    atomic_write_bytes(path, buf.getvalue())


def load_state(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    if not path.exists():
        return None
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files if k != "__meta__"}
        meta = json.loads(str(z["__meta__"]))
    return arrays, meta


class Trainer:
    """The state of one unit on its backend: model, Adam, EMAs, data; ``step()`` runs one training step."""

    def __init__(self, unit: dict[str, Any]) -> None:
        import torch

        from harness.backends import get_backend
        from harness.problems import DISTRIBUTIONS
        from harness.registry import get_declaration, get_estimator
        from harness.workloads import get_workload

        self.unit, self.key = unit, unit_key(unit)
        self.wl = get_workload(unit["workload"])
        self.cfg = self.wl.resolve(unit["config"])
        self.B = get_backend(unit["backend"])
        self.dist = DISTRIBUTIONS[self.wl.latent]
        self.spec = get_estimator(unit["estimator"], unit["backend"])
        decl = get_declaration(unit["estimator"])
        self.multi = "multi_sample_bound" in decl.requires
        self.fits = decl.family == "rebar"
        self.hyper = {**self.spec.defaults(), **unit["hyper"]}
        self.dtype, self.device, self.seed = unit["dtype"], unit["device"], int(unit["seed"])
        self.tdtype = {"float64": torch.float64, "float32": torch.float32}[self.dtype]
        self.enc_keys = list(self.wl.encoder_keys(self.cfg))
        with torch.random.fork_rng():  # a torch model's init may seed torch's global generator
            init = self.wl.init_params(self.cfg, np.random.default_rng([self.seed, 0]))
        self.params = {k: self._t(v).requires_grad_(True) for k, v in init.items()}
        self.opt = torch.optim.Adam(list(self.params.values()), lr=float(unit["lr"]))
        self.ema = {n: {k: torch.zeros_like(self.params[k]) for k in self.enc_keys} for n in ("m", "s")}
        self.t, self.elapsed, self.rows, self.problem = 0, 0.0, [], None
        data = self.wl.dataset(self.cfg)
        self.train = data["train"]
        self.n_train = len(next(iter(self.train.values())))
        self.val = self._held_out(data["val"], unit["val_size"], 2)
        self.test = self._held_out(data["test"], unit["test_size"], 3)

    # -- helpers ----------------------------------------------------------------------------------
    def _t(self, a: np.ndarray) -> Any:
        import torch

        return torch.as_tensor(np.asarray(a), dtype=self.tdtype, device=self.device)

    def _held_out(self, raw: dict[str, np.ndarray], size: int, tag: int) -> dict[str, Any]:
        n = len(next(iter(raw.values())))
        raw = {k: np.asarray(v[: size or n], np.float64) for k, v in raw.items()}
        x = self.wl.prepare_batch(raw, np.random.default_rng([self.seed, tag]), self.cfg)
        return {k: self._t(v) for k, v in x.items()}

    def _batch(self, rng: np.random.Generator) -> dict[str, Any]:
        bs = int(self.unit["batch_size"])
        if self.unit["fixed_batch"]:  # the batch a WorkloadProblem(split=train, batch_seed=seed) evaluates
            idx = np.random.default_rng(self.seed).choice(self.n_train, size=bs, replace=False)
            raw = {k: np.asarray(v[idx], np.float64) for k, v in self.train.items()}
            x = self.wl.prepare_batch(raw, np.random.default_rng([self.seed, 1]), self.cfg)
        else:
            idx = rng.choice(self.n_train, size=bs, replace=False)
            x = self.wl.prepare_batch({k: np.asarray(v[idx], np.float64) for k, v in self.train.items()}, rng, self.cfg)
        return {k: self._t(v) for k, v in x.items()}

    def numpy_state(self) -> dict[str, np.ndarray]:
        return {k: self.B.to_numpy(v).astype(np.float64) for k, v in self.params.items()}

    def _step_problem(self, x: dict[str, Any], eta: dict[str, Any]) -> StepProblem:
        """The problem fitting estimators read: rebuilt at refit steps (the fit key names the refit step)."""
        every = int(self.unit["refit_every"])
        ident = {"training": self.key, "refit": self.t - self.t % every if self.fits else 0}
        if self.problem is None or self.problem.spec.ident != ident:
            x0 = {k: self.B.to_numpy(v[:1]).astype(np.float64) for k, v in x.items()}
            e0 = {k: self.B.to_numpy(v[:1]).astype(np.float64) for k, v in eta.items()}
            self.problem = StepProblem(self.wl, self.cfg, self.dist, self.numpy_state(), x0, e0, ident)
        return self.problem

    # -- one step ---------------------------------------------------------------------------------
    def step(self) -> float:
        """One Adam step; returns the batch's training objective (mean over examples)."""
        u, B = self.unit, self.B
        rng = np.random.default_rng([self.seed, 1, self.t])
        x = self._batch(rng)
        dec = {k: v for k, v in self.params.items() if k not in self.enc_keys}
        eta = self.wl.encode(B, self.params, x, self.cfg)
        problem = self._step_problem(x, eta)
        L = int(u["n_samples"])
        g = encoder_gradient(
            self.spec,
            B,
            self.wl,
            self.cfg,
            self.dist,
            {k: v.detach() for k, v in dec.items()},
            x,
            eta,
            rng,
            L,
            self.hyper,
            self.dtype,
            self.device,
            problem,
        )
        obj = decoder_objective(
            B, self.wl, self.cfg, self.dist, dec, x, eta, rng, L, self.multi, self.dtype, self.device
        )
        N = obj.shape[0]
        surrogate = sum((eta[k] * g[k].detach()).sum() for k in g) / N
        self.opt.zero_grad()
        (surrogate - obj.mean()).backward()
        self._update_ema()
        self.opt.step()
        self.t += 1
        return float(obj.detach().mean())

    def _update_ema(self) -> None:
        import torch

        b = float(self.unit["ema_decay"])
        with torch.no_grad():
            for k in self.enc_keys:
                gk = self.params[k].grad
                self.ema["m"][k].mul_(b).add_(gk, alpha=1 - b)
                self.ema["s"][k].mul_(b).add_(gk * gk, alpha=1 - b)

    def grad_var(self) -> tuple[float, float]:
        """(mean over encoder weights of the bias-corrected EMA variance, mean of m̂²)."""
        corr = 1 - float(self.unit["ema_decay"]) ** self.t
        m = np.concatenate([self.B.to_numpy(self.ema["m"][k]).ravel() for k in self.enc_keys]) / corr
        s = np.concatenate([self.B.to_numpy(self.ema["s"][k]).ravel() for k in self.enc_keys]) / corr
        return float(np.mean(np.maximum(s - m * m, 0.0))), float(np.mean(m * m))

    def bound(self, x: dict[str, Any], K: int, tag: int) -> np.ndarray:
        return held_out_bound(
            self.B,
            self.wl,
            self.cfg,
            self.dist,
            self.params,
            x,
            K,
            self.seed * 1000 + tag,
            EVAL_CHUNK if K < 10 else max(1, EVAL_CHUNK // K),
            self.dtype,
            self.device,
        )

    # -- state ------------------------------------------------------------------------------------
    def arrays(self) -> dict[str, np.ndarray]:
        out = {f"p/{k}": self.B.to_numpy(v) for k, v in self.params.items()}
        for k, v in self.params.items():
            st = self.opt.state.get(v)
            if st:
                out[f"am/{k}"] = self.B.to_numpy(st["exp_avg"])
                out[f"av/{k}"] = self.B.to_numpy(st["exp_avg_sq"])
        for n in ("m", "s"):
            out.update({f"e{n}/{k}": self.B.to_numpy(v) for k, v in self.ema[n].items()})
        return out

    def meta(self) -> dict[str, Any]:
        mod = _fits_module()
        fits = {k: dataclasses.asdict(v) for k, v in (mod._FITS.items() if mod else ()) if self.key in k}
        return {
            "format": FORMAT,
            "key": self.key,
            "step": self.t,
            "elapsed": self.elapsed,
            "rows": self.rows,
            "fits": fits,
        }

    def restore(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        import torch

        self.t, self.elapsed, self.rows = int(meta["step"]), float(meta["elapsed"]), list(meta["rows"])
        with torch.no_grad():
            for k, v in self.params.items():
                v.copy_(self._t(arrays[f"p/{k}"]))
                if f"am/{k}" in arrays:
                    self.opt.state[v] = {
                        "step": torch.tensor(float(self.t)),
                        "exp_avg": self._t(arrays[f"am/{k}"]),
                        "exp_avg_sq": self._t(arrays[f"av/{k}"]),
                    }
            for n in ("m", "s"):
                for k in self.enc_keys:
                    self.ema[n][k].copy_(self._t(arrays[f"e{n}/{k}"]))
        mod = _fits_module()
        if mod is not None:
            for k, d in meta.get("fits", {}).items():
                mod._FITS[k] = mod.Fit(**{f: tuple(v) if isinstance(v, list) else v for f, v in d.items()})


def _sync(tr: Trainer) -> None:
    tr.B.sync(list(tr.params.values()))


def train_unit(unit: dict[str, Any]) -> dict[str, Any]:
    """Train one unit to ``unit["steps"]`` (resuming from ``unit["state_path"]`` if it exists); the outcome dict
    has ``key``, ``status`` (ok | failed), ``rows`` (curves), ``summary`` and ``message``."""
    import traceback

    t_start = time.perf_counter()
    try:
        tr = Trainer(unit)
        path = Path(unit["state_path"]) if unit.get("state_path") else None
        saved = load_state(path) if path else None
        if saved is not None and saved[1].get("format") == FORMAT and saved[1].get("key") == tr.key:
            tr.restore(*saved)
        k, window = int(unit["log_every"]), []
        if tr.t == 0 and not tr.rows:  # the untrained model: step 0
            tr.rows.append(_curve_row(tr, []))
        while tr.t < int(unit["steps"]):
            _sync(tr)
            t0 = time.perf_counter()
            obj = tr.step()
            _sync(tr)
            dt = time.perf_counter() - t0
            tr.elapsed += dt
            window.append((obj, dt))
            if tr.t % k == 0 or tr.t == int(unit["steps"]):
                tr.rows.append(_curve_row(tr, window))
                window = []
                if path:
                    save_state(path, tr.arrays(), tr.meta())
        summary = _summary(tr)
        return {
            "key": tr.key,
            "status": "ok",
            "rows": tr.rows,
            "summary": summary,
            "message": "",
            "seconds": time.perf_counter() - t_start,
        }
    except Exception as exc:  # a failing unit is recorded, the others go on
        return {
            "key": unit_key(unit),
            "status": "failed",
            "rows": [],
            "summary": {},
            "message": f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=6)}",
            "seconds": time.perf_counter() - t_start,
        }


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
        "grad_var_final": tr.rows[-1]["grad_var"],
        "grad_var_mean": float(np.nanmean([r["grad_var"] for r in tr.rows[1:]])),
        "eval_time_s": time.perf_counter() - t0,
        "steps": tr.t,
    }
