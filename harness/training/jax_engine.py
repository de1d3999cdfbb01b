"""The JAX training engine: weights as a dict of jax arrays, ``jax.vjp`` through the encoder, optax's Adam.

One step, the same as the PyTorch engine's (:mod:`harness.training.torch_engine`, layout in
:mod:`harness.training.step`), written functionally: η = encoder(x) with its VJP kept; the registered estimator gives
every example's η-gradient g [N, *latent] in one call (examples as replicates, noise from the step's NumPy
generator, so both engines draw the same numbers); the decoder gets ``jax.value_and_grad`` of the training objective
on fresh samples; the weights' gradient is VJP(g / N) − ∇ objective, and ``optax.adam`` applies it.  The
online-variance EMAs track the encoder weights' gradients.

State (layout of :mod:`harness.training.engine`): ``p/`` weights, ``am/`` / ``av/`` optax's first and second
moments (``mu`` / ``nu`` of its ``ScaleByAdamState``; its step count is the unit's step), ``em/`` / ``es/`` EMAs.
Restoring puts exactly these arrays back, so a resumed unit continues bit-identically on the same backend.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from harness.backends import get_backend
from harness.training.engine import ProblemFor, UnitSetup
from harness.training.step import decoder_objective, encoder_gradient, held_out_bound


class OptaxAdam:
    """Adam through ``optax.adam`` (functional); moments exported as ``am/`` and ``av/`` arrays."""

    def __init__(self, params: dict[str, Any], lr: float) -> None:
        try:
            import optax
        except ImportError as exc:  # optional, with jax: reported, never a crash at import
            raise RuntimeError(f"JAX training needs optax (pip install 'stochgrad[jax]'): {exc}") from exc

        self.tx = optax.adam(lr)
        self.state = self.tx.init(params)
        self.updated = False  # moments exist (are exported) only after the first update

    def apply(self, params: dict[str, Any], grads: Mapping[str, Any]) -> dict[str, Any]:
        import optax

        updates, self.state = self.tx.update(dict(grads), self.state, params)
        self.updated = True
        return optax.apply_updates(params, updates)

    def _adam(self) -> Any:
        import optax

        return next(s for s in self.state if isinstance(s, optax.ScaleByAdamState))

    def arrays(self) -> dict[str, np.ndarray]:
        if not self.updated:
            return {}
        st = self._adam()
        out = {f"am/{k}": np.asarray(v) for k, v in st.mu.items()}
        out.update({f"av/{k}": np.asarray(v) for k, v in st.nu.items()})
        return out

    def restore(self, arrays: Mapping[str, np.ndarray], step: int) -> None:
        import jax.numpy as jnp
        import optax

        st = self._adam()
        if not any(k.startswith("am/") for k in arrays):
            return
        mu = {k: jnp.asarray(arrays[f"am/{k}"]) for k in st.mu}
        nu = {k: jnp.asarray(arrays[f"av/{k}"]) for k in st.nu}
        new = st._replace(count=jnp.asarray(step, dtype=st.count.dtype), mu=mu, nu=nu)
        self.state = tuple(new if isinstance(s, optax.ScaleByAdamState) else s for s in self.state)
        self.updated = True


class JaxEngine:
    """A unit's model and optimizer on JAX (see :class:`harness.training.engine.Engine`)."""

    backend = "jax"

    def __init__(self, setup: UnitSetup, init: Callable[[], dict[str, np.ndarray]]) -> None:
        import jax.numpy as jnp

        self.s, self.B = setup, get_backend("jax")
        self.params = {k: self._a(v) for k, v in init().items()}
        self.opt = OptaxAdam(self.params, setup.lr)
        self.ema = {n: {k: jnp.zeros_like(self.params[k]) for k in setup.enc_keys} for n in ("m", "s")}

    def _a(self, a: np.ndarray) -> Any:
        return self.B.asarray(np.asarray(a), self.s.dtype, self.s.device)

    def _batch(self, x: Mapping[str, np.ndarray]) -> dict[str, Any]:
        return {k: self._a(v) for k, v in x.items()}

    def step(self, x_np: Mapping[str, np.ndarray], rng: np.random.Generator, problem_for: ProblemFor) -> float:
        import jax

        s, B = self.s, self.B
        x = self._batch(x_np)
        dec = {k: v for k, v in self.params.items() if k not in s.enc_keys}
        eta, encoder_vjp = jax.vjp(lambda p: s.workload.encode(B, p, x, s.cfg), self.params)
        problem = problem_for(x, eta)
        L = s.n_samples
        g = encoder_gradient(
            s.estimator, B, s.workload, s.cfg, s.dist, dec, x, eta, rng, L, s.hyper, s.dtype, s.device, problem
        )

        def objective(d: dict[str, Any]) -> tuple[Any, Any]:
            obj = decoder_objective(B, s.workload, s.cfg, s.dist, d, x, eta, rng, L, s.multi, s.dtype, s.device)
            return obj.mean(), obj

        (mean_obj, obj), g_dec = jax.value_and_grad(objective, has_aux=True)(dec)
        N = obj.shape[0]
        (g_enc,) = encoder_vjp({k: B.stop_gradient(g[k]) / N for k in eta})
        grads = {k: (g_enc[k] - g_dec[k]) if k in g_dec else g_enc[k] for k in self.params}
        self._update_ema(grads)
        self.params = self.opt.apply(self.params, grads)
        return float(mean_obj)

    def _update_ema(self, grads: Mapping[str, Any]) -> None:
        b = self.s.ema_decay
        for k in self.s.enc_keys:
            gk = grads[k]
            self.ema["m"][k] = self.ema["m"][k] * b + gk * (1 - b)
            self.ema["s"][k] = self.ema["s"][k] * b + gk * gk * (1 - b)

    def grad_var(self, t: int) -> tuple[float, float]:
        corr = 1 - self.s.ema_decay**t
        m = np.concatenate([np.asarray(self.ema["m"][k]).ravel() for k in self.s.enc_keys]) / corr
        sq = np.concatenate([np.asarray(self.ema["s"][k]).ravel() for k in self.s.enc_keys]) / corr
        return float(np.mean(np.maximum(sq - m * m, 0.0))), float(np.mean(m * m))

    def bound(self, x: Mapping[str, np.ndarray], K: int, seed: int, chunk: int) -> np.ndarray:
        s = self.s
        return held_out_bound(
            self.B, s.workload, s.cfg, s.dist, self.params, self._batch(x), K, seed, chunk, s.dtype, s.device
        )

    def weights(self) -> dict[str, np.ndarray]:
        return {k: np.asarray(v).astype(np.float64) for k, v in self.params.items()}

    def arrays(self) -> dict[str, np.ndarray]:
        out = {f"p/{k}": np.asarray(v) for k, v in self.params.items()}
        out.update(self.opt.arrays())
        for n in ("m", "s"):
            out.update({f"e{n}/{k}": np.asarray(v) for k, v in self.ema[n].items()})
        return out

    def restore(self, arrays: Mapping[str, np.ndarray], step: int) -> None:
        self.params = {k: self._a(arrays[f"p/{k}"]) for k in self.params}
        for n in ("m", "s"):
            for k in self.s.enc_keys:
                self.ema[n][k] = self._a(arrays[f"e{n}/{k}"])
        self.opt.restore(arrays, step)

    def sync(self) -> None:
        self.B.sync(list(self.params.values()))

    def to_numpy(self, a: Any) -> np.ndarray:
        return self.B.to_numpy(a)
