"""The JAX training engine: weights as a dict of jax arrays, ``jax.vjp`` through the encoder, optax's Adam, the
whole step compiled once.

One step, the same as the PyTorch engine's (:mod:`harness.training.torch_engine`, layout in
:mod:`harness.training.step`), written as one pure function (:func:`train_step`): η = encoder(x) with its VJP kept;
the registered estimator gives every example's η-gradient g [N, *latent] in one call (examples as replicates); the
decoder gets ``jax.value_and_grad`` of the training objective on fresh samples; the weights' gradient is
VJP(g / N) − ∇ objective, the online-variance EMAs track the encoder weights' gradients, and ``optax.adam`` applies it.

Compiled (``jax.jit``) as a whole, once per (estimator, hyperparameters, workload configuration, batch and weight
shapes, L, dtype, device): weights, optimizer state, EMAs, the batch, the learning rate and EMA decay, the
estimator's fitted constants (REBAR/RELAX: refits change arguments, not the trace) and the step's noise are
arguments.  The noise is still drawn on the host from the step's NumPy generator — the draws the function asks for
are recorded once by an abstract trace (:class:`harness.backends.jax_backend.HostNoise`) and drawn in that order —
so the compiled step, the eager one and the PyTorch engine use the same numbers.  Compilations are shared through the
measurement path's cache (:func:`harness.backends.jax_backend.shared_compilation`, with its guard: an estimator
whose tracing reads its problem's values gets a compilation per problem, i.e. per refit).  The Context's evaluation
counts are those of the tracing, kept for every later call (as the runner does).  A step that cannot be traced
(an estimator drawing Gamma noise inside the step, or converting a traced value to a Python number) runs eagerly;
the reason is logged and reported in the unit's summary (``step_eager_reason``).

State (layout of :mod:`harness.training.engine`): ``p/`` weights, ``am/`` / ``av/`` optax's first and second
moments (``mu`` / ``nu`` of its ``ScaleByAdamState``; its step count is the unit's step), ``em/`` / ``es/`` EMAs.
Restoring puts exactly these arrays back, so a resumed unit continues bit-identically on the same backend.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from harness.backends import Noise, get_backend
from harness.backends.jax_backend import (
    Compiled,
    HostNoise,
    Untraceable,
    WatchedProblem,
    draw_host_noise,
    shared_compilation,
)
from harness.registry import make_context
from harness.registry.context import EvalCounts
from harness.training.engine import ProblemFor, UnitSetup
from harness.training.step import decoder_objective, encoder_gradient, held_out_bound

LOG = logging.getLogger(__name__)
_UNTRACEABLE: dict[str, str] = {}  # trace key -> why its step runs eagerly (found once per key)


def _untraceable_errors() -> tuple[type[BaseException], ...]:
    """What tracing raises for a function that needs concrete values (it would run eagerly)."""
    import jax

    e = jax.errors
    return (
        Untraceable,
        e.ConcretizationTypeError,
        e.TracerArrayConversionError,
        e.TracerBoolConversionError,
        e.TracerIntegerConversionError,
        e.NonConcreteBooleanIndexError,
        e.UnexpectedTracerError,
    )


class OptaxAdam:
    """Adam through ``optax.adam`` (functional); moments exported as ``am/`` and ``av/`` arrays.

    The state lives here; the update is :meth:`update`, a pure function of (learning rate, gradients, state,
    parameters), so that it runs inside the compiled step with the learning rate as an argument."""

    def __init__(self, params: dict[str, Any], lr: float) -> None:
        try:
            import optax
        except ImportError as exc:  # optional, with jax: reported, never a crash at import
            raise RuntimeError(f"JAX training needs optax (pip install 'stochgrad[jax]'): {exc}") from exc

        self.state = optax.adam(lr).init(params)
        self.updated = False  # moments exist (are exported) only after the first update

    @staticmethod
    def update(lr: Any, grads: Mapping[str, Any], state: Any, params: dict[str, Any]) -> tuple[dict[str, Any], Any]:
        """(new parameters, new state) after one Adam step with learning rate ``lr`` (a number or an array)."""
        import optax

        updates, state = optax.adam(lr).update(dict(grads), state, params)
        return optax.apply_updates(params, updates), state

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


def train_step(
    s: UnitSetup,
    B: Any,
    problem: Any,
    counts: EvalCounts,
    params: dict[str, Any],
    opt_state: Any,
    ema: dict[str, dict[str, Any]],
    x: dict[str, Any],
    noise: Noise,
    fitted: dict[str, Any],
    hp: dict[str, Any],
) -> tuple[dict[str, Any], Any, dict[str, dict[str, Any]], Any]:
    """One optimizer step as a pure function: (params, opt_state, ema, mean objective) after the step.

    ``noise`` gives the estimator's draws, then the decoder's; ``fitted`` the estimator's constants (empty: it fits
    itself, eagerly); ``hp`` the learning rate ``lr`` and the EMA weights ``decay`` and ``keep`` (= 1 − decay) as
    arrays of the unit's dtype; ``counts`` receives the Context's evaluation counts."""
    import jax

    dec = {k: v for k, v in params.items() if k not in s.enc_keys}
    eta, encoder_vjp = jax.vjp(lambda p: s.workload.encode(B, p, x, s.cfg), params)
    L = s.n_samples
    g = encoder_gradient(
        s.estimator,
        B,
        s.workload,
        s.cfg,
        s.dist,
        dec,
        x,
        eta,
        noise,
        L,
        s.hyper,
        s.dtype,
        s.device,
        problem,
        fitted,
        counts,
    )

    def objective(d: dict[str, Any]) -> tuple[Any, Any]:
        obj = decoder_objective(B, s.workload, s.cfg, s.dist, d, x, eta, noise, L, s.multi)
        return obj.mean(), obj

    (mean_obj, obj), g_dec = jax.value_and_grad(objective, has_aux=True)(dec)
    N = obj.shape[0]
    (g_enc,) = encoder_vjp({k: B.stop_gradient(g[k]) / N for k in eta})
    grads = {k: (g_enc[k] - g_dec[k]) if k in g_dec else g_enc[k] for k in params}
    b, keep = hp["decay"], hp["keep"]
    ema = {
        "m": {k: ema["m"][k] * b + grads[k] * keep for k in s.enc_keys},
        "s": {k: ema["s"][k] * b + grads[k] * grads[k] * keep for k in s.enc_keys},
    }
    params, opt_state = OptaxAdam.update(hp["lr"], grads, opt_state, params)
    return params, opt_state, ema, mean_obj


class JaxEngine:
    """A unit's model and optimizer on JAX (see :class:`harness.training.engine.Engine`).

    ``jit=False`` runs the step eagerly, op by op (the reference the compiled step is checked against)."""

    backend = "jax"

    def __init__(self, setup: UnitSetup, init: Callable[[], dict[str, np.ndarray]], jit: bool = True) -> None:
        import jax.numpy as jnp

        self.s, self.B = setup, get_backend("jax")
        self.params = {k: self._a(v) for k, v in init().items()}
        self.opt = OptaxAdam(self.params, setup.lr)
        self.opt.state = self._placed(self.opt.state)
        self.ema = {n: {k: jnp.zeros_like(self.params[k]) for k in setup.enc_keys} for n in ("m", "s")}
        self.hp = {k: self._a(np.asarray(v)) for k, v in self._hp().items()}
        self.jit = jit
        self.eager_reason = "" if jit else "jit=False"
        self.last_counts: tuple[float, float, float] = (0.0, 0.0, 0.0)  # the estimator's evaluations in a step
        self._fitted: tuple[str, dict[str, Any]] = ("", {})  # (problem identity, constants as arrays)

    def _hp(self) -> dict[str, float]:
        b = self.s.ema_decay
        return {"lr": self.s.lr, "decay": b, "keep": 1 - b}

    def _a(self, a: np.ndarray) -> Any:
        return self.B.asarray(np.asarray(a), self.s.dtype, self.s.device)

    def _placed(self, tree: Any) -> Any:
        """``tree``'s arrays placed on the unit's device (committed, as a compiled step's outputs are: an array
        created without a device would make the next call's signature differ and compile the step again)."""
        import jax

        return jax.tree_util.tree_map(lambda a: self.B.asarray(np.asarray(a), str(a.dtype), self.s.device), tree)

    def _batch(self, x: Mapping[str, np.ndarray]) -> dict[str, Any]:
        return {k: self._a(v) for k, v in x.items()}

    @property
    def compiled(self) -> bool:
        """Whether the steps run as one compiled function (False: eagerly, :attr:`eager_reason` says why)."""
        return not self.eager_reason

    def _trace_key(self, x: Mapping[str, Any]) -> str:
        """What a compiled step is specialized to (everything else is an argument)."""
        s, spec = self.s, self.s.estimator
        ident = {
            "training_step": [spec.name, spec.backend, id(spec.fn)],
            "workload": s.workload.name,
            "cfg": s.cfg,
            "hyper": s.hyper,
            "multi": s.multi,
            "L": s.n_samples,
            "enc": list(s.enc_keys),
            "x": {k: [list(v.shape), str(v.dtype)] for k, v in x.items()},
            "params": {k: list(v.shape) for k, v in self.params.items()},
            "dtype": s.dtype,
            "device": s.device,
        }
        return json.dumps(ident, sort_keys=True, default=str)

    def _constants(self, problem: Any) -> dict[str, Any]:
        """The estimator's declared constants for ``problem`` as arrays (fitted on the host, once per problem)."""
        spec = self.s.estimator
        if spec.constants is None:
            return {}
        ident = json.dumps(problem.spec.to_dict(), sort_keys=True, default=str)
        if self._fitted[0] != ident:
            ctx = make_context(
                problem,
                self.B,
                L=self.s.n_samples,
                R=1,
                noise=None,
                hyper=self.s.hyper,
                dtype=self.s.dtype,
                device=self.s.device,
            )
            self._fitted = (ident, {k: self._a(np.asarray(v)) for k, v in spec.constants(ctx).items()})
        return self._fitted[1]

    def _compiled_step(self, x: dict[str, Any], problem: Any, fitted: dict[str, Any]) -> Compiled | None:
        """The shared compilation of this step (its noise plan recorded), or None when it cannot be traced."""
        import jax

        key = self._trace_key(x)
        if key in _UNTRACEABLE:
            self.eager_reason = _UNTRACEABLE[key]
            return None
        s, B = self.s, self.B
        owner = json.dumps(problem.spec.to_dict(), sort_keys=True, default=str)

        def build() -> Compiled:
            made = Compiled(None, set(), owner)

            def jitted_train_step(
                params: Any, opt_state: Any, ema: Any, x: Any, noise: Any, fitted: Any, hp: Any
            ) -> Any:
                made.traced = True
                counts = EvalCounts()
                out = train_step(
                    s,
                    B,
                    WatchedProblem(problem, made.reads),
                    counts,
                    params,
                    opt_state,
                    ema,
                    x,
                    HostNoise(noise, B, s.dtype),
                    fitted,
                    hp,
                )
                made.counts = counts.snapshot()
                return out

            made.fn = jax.jit(jitted_train_step)
            return made

        made = shared_compilation(key, owner, build)
        if made.noise_plan is None:  # an abstract trace records the draws the step asks for
            rec = HostNoise(None, B, s.dtype)
            try:
                jax.eval_shape(
                    lambda *a: train_step(s, B, WatchedProblem(problem, made.reads), EvalCounts(), *a[:4], rec, *a[4:]),
                    self.params,
                    self.opt.state,
                    self.ema,
                    x,
                    fitted,
                    self.hp,
                )
            except _untraceable_errors() as exc:
                reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                _UNTRACEABLE[key] = self.eager_reason = f"the step cannot be traced as a whole ({reason})"
                LOG.warning("JAX training of %s runs eagerly: %s", s.estimator.name, self.eager_reason)
                return None
            made.noise_plan = tuple(rec.plan)
        return made

    def step(self, x_np: Mapping[str, np.ndarray], rng: np.random.Generator, problem_for: ProblemFor) -> float:
        s, B = self.s, self.B
        x = self._batch(x_np)
        problem = problem_for(x, lambda: s.workload.encode(B, self.params, x, s.cfg))
        fitted = self._constants(problem) if self.compiled else {}
        made = self._compiled_step(x, problem, fitted) if self.compiled else None
        if made is None:  # eagerly: the estimator fits itself, every evaluation is counted as it runs
            counts = EvalCounts()
            out = train_step(
                s,
                B,
                problem,
                counts,
                self.params,
                self.opt.state,
                self.ema,
                x,
                B.numpy_noise(rng, s.dtype, s.device),
                {},
                self.hp,
            )
            self.last_counts = counts.snapshot()
        else:
            noise = draw_host_noise(made.noise_plan, rng, B, s.dtype, s.device)
            out = made.fn(self.params, self.opt.state, self.ema, x, noise, fitted, self.hp)
            self.last_counts = made.counts
        self.params, self.opt.state, self.ema, mean_obj = out
        self.opt.updated = True
        return float(mean_obj)

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
        self.opt.state = self._placed(self.opt.state)

    def sync(self) -> None:
        self.B.sync(list(self.params.values()))

    def compile_seconds(self) -> float:
        """jax.monitoring's tally of tracing, lowering and compiling in this process (the loop takes differences
        around each step)."""
        got = self.B.compilations()
        return got[1] if got is not None else 0.0

    def to_numpy(self, a: Any) -> np.ndarray:
        return self.B.to_numpy(a)
