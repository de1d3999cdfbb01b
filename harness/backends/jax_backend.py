"""JAX backend: ``grad``/``vmap``/``jit``, devices ``cpu`` and ``gpu[:N]``; jax is optional."""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.backends.base import Array, Backend, Noise, NumpySourcedNoise, PreparedCall

try:  # optional at import time: a missing backend is reported, never a crash
    import jax

    jax.config.update("jax_enable_x64", True)  # float64 measurements need it; float32 stays selectable
    import jax.numpy as jnp
    from jax.scipy import special as jsp

    _IMPORT_ERROR: str | None = None
except Exception as exc:  # pragma: no cover - exercised only where jax is absent
    jax = jnp = jsp = None  # type: ignore[assignment]
    _IMPORT_ERROR = f"jax is not importable: {type(exc).__name__}: {exc}"


_JIT_CACHE_SIZE = 64  # compiled estimator calls kept (LRU), keyed by what they are specialized to
_JITTED: OrderedDict[str, Any] = OrderedDict()
_JITTED_LOCK = threading.Lock()  # a call may be compiled ahead in another thread (PreparedCall.ahead)
_COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/compilation_cache/cache_retrieval_time_sec",  # an executable loaded from the persistent cache
    "/jax/core/compile/backend_compile_duration",
)
_COMPILES = {"count": 0, "seconds": 0.0}


def _on_duration(event: str, seconds: float, **_: Any) -> None:
    """jax.monitoring listener: tally compile work (one backend compile per XLA executable built)."""
    if event in _COMPILE_EVENTS:
        _COMPILES["seconds"] += float(seconds)
        if event == _COMPILE_EVENTS[-1]:
            _COMPILES["count"] += 1


_CACHE_DIR: str | None = None
CACHE_ENV = "STOCHGRAD_JAX_CACHE"
CACHE_MAX_BYTES = 2 * 2**30  # the persistent cache's size bound (least recently used entries evicted)
OFF = ("0", "off", "no", "false")


def persistent_cache() -> str | None:
    """Turn on jax's persistent compilation cache: XLA executables kept on disk, so a second run (or process) with
    the same estimator, shapes and jax version loads its compilations instead of compiling them again.

    The directory is ``$JAX_COMPILATION_CACHE_DIR`` when the user set jax's own variable (jax reads it; nothing is
    changed), else ``$STOCHGRAD_JAX_CACHE``, else ``~/.cache/stochgrad/jax``; ``STOCHGRAD_JAX_CACHE=off`` turns it
    off.  Every compilation is kept (jax's default keeps only those over 1 s; a stochgrad cell's are ~0.1-2 s),
    bounded by ``CACHE_MAX_BYTES`` where the ``filelock`` package that jax's eviction needs is importable.  The
    numbers are unchanged: a loaded executable is the one compiled.  Returns the directory, or None when off."""
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return os.environ["JAX_COMPILATION_CACHE_DIR"]
    raw = os.environ.get(CACHE_ENV, "").strip()
    if raw.lower() in OFF:
        return None
    path = os.path.abspath(os.path.expanduser(raw or os.path.join("~", ".cache", "stochgrad", "jax")))
    jax.config.update("jax_compilation_cache_dir", path)
    if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    try:
        import filelock  # noqa: F401  (jax's LRU eviction locks the directory with it)
    except ImportError:
        pass
    else:
        if "JAX_COMPILATION_CACHE_MAX_SIZE" not in os.environ:
            jax.config.update("jax_compilation_cache_max_size", CACHE_MAX_BYTES)
    return path


if jax is not None:
    jax.monitoring.register_event_duration_secs_listener(_on_duration)
    _CACHE_DIR = persistent_cache()


STRUCTURE = frozenset(
    {"dist", "dim", "options", "objective", "event_shape", "param_names", "latent", "n", "workload", "cfg"}
)  # what a compiled call may read of its problem: the rest (identity, values, truth) is the target's own


class WatchedProblem:
    """The problem as a traced implementation sees it: reads outside :data:`STRUCTURE` are recorded in ``reads``."""

    def __init__(self, problem: Any, reads: set[str]) -> None:
        self._problem, self._reads = problem, reads

    def __getattr__(self, name: str) -> Any:
        if name not in STRUCTURE:
            self._reads.add(name)
        return getattr(self._problem, name)


@dataclass
class Compiled:
    """A jitted estimator call, what its tracing read of its problem beyond the structure, and whose problem it was."""

    fn: Any
    reads: set[str]
    owner: str
    traced: bool = False
    counts: tuple[float, float, float] = (0.0, 0.0, 0.0)  # evaluations its tracing counted (per L-sample estimate)
    noise_plan: tuple[tuple[str, tuple[int, ...]], ...] | None = None  # draws it takes as arguments (HostNoise)


def shared_compilation(trace_key: str | None, owner: str, build: Callable[[], Compiled]) -> Compiled:
    """The compilation for ``trace_key`` (what a traced function is specialized to), built once and shared (LRU).

    ``owner`` names the target the caller is for.  A compilation that has not been traced yet is shared only with its
    own target; one whose tracing read its target beyond :data:`STRUCTURE` (``reads``) belongs to that target, and
    another target gets a compilation of its own (keyed by both).  Without a key the compilation is the caller's own.
    """
    if trace_key is None:
        return build()
    with _JITTED_LOCK:
        return _settle(trace_key, owner, build)


def _settle(trace_key: str, owner: str, build: Callable[[], Compiled]) -> Compiled:
    got = _JITTED.get(trace_key)
    if got is None or (not got.traced and got.owner != owner):  # never share an untraced template
        got = _JITTED[trace_key] = build()
        while len(_JITTED) > _JIT_CACHE_SIZE:
            _JITTED.popitem(last=False)
    _JITTED.move_to_end(trace_key)
    if got.reads and got.owner != owner:  # traced for another target and read its values: not ours
        key = f"{trace_key}|{owner}"
        got = _JITTED.get(key) or build()
        _JITTED[key] = got
    return got


class Untraceable(RuntimeError):
    """A function that cannot be traced as a whole (the message says why); its caller runs it eagerly instead."""


class HostNoise(Noise):
    """Noise drawn on the host (one NumPy generator, as :class:`NumpySourcedNoise`) and given to a traced call as
    arguments, so that a compiled call and an eager one draw the same numbers.

    Tracing with ``arrays=None`` records the draws a call makes, ``plan`` = ((kind, shape), ...), and hands out
    placeholders (for ``jax.eval_shape``); with ``arrays`` (drawn by :func:`draw_host_noise` from the plan) it hands
    them out in order.  Gamma draws depend on a traced shape parameter, so they cannot come from the host:
    :class:`Untraceable`."""

    def __init__(self, arrays: Sequence[Any] | None, B: Backend, dtype: str) -> None:
        self.arrays, self.B, self.dtype = arrays, B, jnp.dtype(dtype)
        self.plan: list[tuple[str, tuple[int, ...]]] = []

    def _draw(self, kind: str, shape: Sequence[int]) -> Array:
        shape = tuple(int(s) for s in shape)
        i = len(self.plan)
        self.plan.append((kind, shape))
        if self.arrays is None:
            return jnp.full(shape, 0.5, self.dtype)
        if i >= len(self.arrays) or tuple(self.arrays[i].shape) != shape:
            raise Untraceable(f"noise draw {i} ({kind} {shape}) differs from the recorded plan")
        return self.arrays[i]

    def normal(self, shape: Sequence[int]) -> Array:
        return self._draw("normal", shape)

    def uniform(self, shape: Sequence[int]) -> Array:
        return self._draw("uniform", shape)

    def standard_gamma(self, alpha: Array, shape: Sequence[int]) -> Array:
        raise Untraceable(
            "it draws Gamma noise, whose shape parameter is computed inside the call: not drawable on the host"
        )


def draw_host_noise(
    plan: Sequence[tuple[str, tuple[int, ...]]], rng: np.random.Generator, B: Backend, dtype: str, device: str
) -> list[Any]:
    """The draws of ``plan`` from ``rng``, in order, exactly as :class:`NumpySourcedNoise` makes them eagerly."""
    src = NumpySourcedNoise(rng, B, dtype, device)
    return [getattr(src, kind)(shape) for kind, shape in plan]


class JaxNoise(Noise):
    """Splits a key per draw; works inside ``jax.jit`` (the key is a traced argument)."""

    def __init__(self, key: Any, dtype: str, B: Backend) -> None:
        self.key, self.dtype, self.B = key, jnp.dtype(dtype), B

    def _next(self) -> Any:
        self.key, sub = jax.random.split(self.key)
        return sub

    def normal(self, shape: Sequence[int]) -> Array:
        return jax.random.normal(self._next(), tuple(shape), dtype=self.dtype)

    def uniform(self, shape: Sequence[int]) -> Array:
        fi = jnp.finfo(self.dtype)
        return jax.random.uniform(self._next(), tuple(shape), dtype=self.dtype, minval=fi.tiny, maxval=1.0)

    def standard_gamma(self, alpha: Array, shape: Sequence[int]) -> Array:
        a = jnp.broadcast_to(jax.lax.stop_gradient(jnp.asarray(alpha, self.dtype)), tuple(shape))
        return jax.lax.stop_gradient(jax.random.gamma(self._next(), a, dtype=self.dtype))


def _platform(device: str) -> tuple[str, int]:
    plat, _, idx = device.partition(":")
    return plat, int(idx) if idx else 0


class JaxBackend(Backend):
    name = "jax"
    autodiff = True
    compiles = True

    @property
    def xp(self) -> Any:  # type: ignore[override]
        return jnp

    def unavailable_reason(self) -> str | None:
        return _IMPORT_ERROR

    def _gpus(self) -> list[Any]:
        try:
            return list(jax.devices("gpu"))
        except RuntimeError:
            return []

    def devices(self) -> list[str]:
        if jax is None:
            return []
        gpus = self._gpus()
        return ["cpu"] + (["gpu"] + [f"gpu:{i}" for i in range(len(gpus))] if gpus else [])

    def device_names(self) -> dict[str, str]:
        if jax is None:
            return {}
        return {f"gpu:{i}": getattr(d, "device_kind", str(d)) for i, d in enumerate(self._gpus())}

    def versions(self) -> dict[str, str]:
        if jax is None:
            return {}
        import jaxlib

        return {"jax": jax.__version__, "jaxlib": jaxlib.__version__}

    def threads(self) -> dict[str, Any]:
        """XLA's CPU pool is sized from the CPU affinity mask when the backend starts; XLA_FLAGS can
        make it single-threaded (``intra_op_parallelism_threads=1``); the persistent compilation cache's directory
        (:func:`persistent_cache`) is recorded with them."""
        try:
            cpus = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            cpus = os.cpu_count()
        return {
            "XLA_FLAGS": os.environ.get("XLA_FLAGS", ""),
            "xla_affinity_cpus": cpus,
            "jax_compilation_cache": _CACHE_DIR or "off",
        }

    def _device(self, device: str) -> Any:
        plat, idx = _platform(device)
        return jax.devices(plat)[idx]

    def asarray(self, x: Any, dtype: str, device: str) -> Array:
        return jax.device_put(jnp.asarray(np.asarray(x), dtype=dtype), self._device(device))

    def to_numpy(self, x: Array) -> np.ndarray:
        return np.asarray(x)

    def sync(self, x: Any) -> None:
        jax.block_until_ready(x)

    def noise(self, seed: int, dtype: str, device: str) -> Noise:
        key = jax.device_put(jax.random.PRNGKey(int(seed) % (2**63)), self._device(device))
        return JaxNoise(key, dtype, self)

    def prepare_call(
        self,
        fn: Callable[[Any], Any],
        template: Any,
        *,
        jit: bool = True,
        compile_backend: str | None = None,
        trace_key: str | None = None,
    ) -> PreparedCall:
        """jit-compile ``params, op, fitted, key -> fn(ctx)`` once per ``trace_key``.

        Everything that varies between targets of one shape travels as an argument: the distribution parameters
        (η), the objective's arrays (a workload's data and weights), the estimator's fitted constants and the PRNG
        key.  The traced function is shared by every call with the same ``trace_key`` (estimator, problem shapes, L,
        R, hyperparameters, dtype, device), so a batch's examples and a workload's checkpoints reuse one
        compilation.  Guard: while tracing, the problem is watched; an implementation that reads anything of it
        beyond its structure (its identity, values or truth: a plugin fitting inside its implementation) makes that
        compilation its own target's, and every other target compiles its own.  Without a key the function is this
        call's own.  ``ahead()`` traces, lowers and compiles it without running it (``jit(f).lower(...).compile()``
        fills the caches the first call then finds), so the runner can compile the timing call while the estimate
        runs: XLA compiles without holding the GIL."""
        dtype = template.dtype
        arrays = {k: v for k, v in template.op.items() if isinstance(v, jax.Array)}
        owner = json.dumps(template.problem.spec.to_dict(), sort_keys=True, default=str)

        def build() -> Compiled:
            made = Compiled(None, set(), owner)

            def inner(params: dict, op: dict, fitted: dict, key: Any) -> dict:
                made.traced = True
                watched = WatchedProblem(template.problem, made.reads)
                counts = type(template.counts)()  # this tracing's own: every caller sharing it is charged them
                ctx = template.with_(
                    problem=watched, params=params, op={**template.op, **op}, fitted=fitted, counts=counts
                )
                out = fn(ctx.with_(noise=JaxNoise(key, dtype, self)))
                made.counts = counts.snapshot()
                return out

            made.fn = jax.jit(inner) if jit else inner
            return made

        own: list[Compiled] = []  # the compilation this call settled on (at its first call)

        def compiled() -> Any:
            if not own:
                own.append(shared_compilation(trace_key if jit else None, owner, build))
            return own[0].fn

        dev = self._device(template.device)
        key0 = jax.device_put(jax.random.PRNGKey(12345), dev)
        params, fitted = template.params, template.fitted
        charged: list[bool] = []

        def call(key: Any) -> Any:
            out = compiled()(params, arrays, fitted, key)
            if not charged or not jit:  # one call's evaluations, counted when traced (here or for another target);
                charged.append(True)  # eager (jit off): every call runs the Python and is charged
                template.counts.add(1.0, *own[0].counts)
            return out

        def ahead() -> None:
            if jit:
                compiled().lower(params, arrays, fitted, key0).compile()

        return PreparedCall(
            lambda seed: call(jax.device_put(jax.random.PRNGKey(seed % 2**63), dev)),
            lambda: call(key0),
            ahead,
        )

    def traces_once(self, *, jit: bool = True, compile_backend: str | None = None) -> bool:
        return bool(jit)

    def compilations(self) -> tuple[int, float] | None:
        """XLA compilations and the seconds of tracing, lowering and compiling, from jax.monitoring's events."""
        return (_COMPILES["count"], _COMPILES["seconds"]) if jax is not None else None

    def expand_params(self, params: dict[str, Array], R: int) -> dict[str, Array]:
        return {k: jnp.broadcast_to(v, (R, *v.shape)) for k, v in params.items()}

    def grad_batched(self, surrogate: Callable[[dict], Array], params: dict[str, Array]) -> dict:
        return jax.grad(lambda P: surrogate(P).sum())(params)

    def derivatives(self, fn: Callable[[Array], Array], x: Array, order: int = 1) -> list[Array]:
        d1 = jax.grad(lambda v: fn(v).sum())
        out = [d1(x)]
        if order >= 2:
            out.append(jax.grad(lambda v: d1(v).sum())(x))
        return out

    def stop_gradient(self, x: Array) -> Array:
        return jax.lax.stop_gradient(x)

    def lgamma(self, x: Array) -> Array:
        return jsp.gammaln(x)

    def digamma(self, x: Array) -> Array:
        return jsp.digamma(x)

    def log_softmax(self, x: Array, axis: int = -1) -> Array:
        return jax.nn.log_softmax(x, axis=axis)

    def sigmoid(self, x: Array) -> Array:
        return jax.nn.sigmoid(x)

    def softplus(self, x: Array) -> Array:
        return jax.nn.softplus(x)

    def one_hot(self, idx: Array, k: int, like: Array) -> Array:
        return jax.nn.one_hot(idx, k, dtype=like.dtype)

    def ndtr(self, x: Array) -> Array:
        return jsp.ndtr(x)

    def ndtri(self, p: Array) -> Array:
        return jsp.ndtri(p)

    def log_ndtr(self, x: Array) -> Array:
        return jsp.log_ndtr(x)

    def logsumexp(self, x: Array, axis: int = -1) -> Array:
        return jsp.logsumexp(x, axis=axis)

    def i0e(self, x: Array) -> Array:
        return jsp.i0e(x)

    def i1e(self, x: Array) -> Array:
        return jsp.i1e(x)
