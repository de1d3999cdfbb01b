"""A workload built from a user's functions, weights and data: what ``workload_from_torch`` / ``_jax`` share.

:class:`FunctionalWorkload` is a :class:`~harness.workloads.base.Workload` whose model is given, not subclassed:
an encoder (x → the latent distribution's parameters) and a ``log_joint(z, x)``, their weights as flat NumPy
arrays (``enc.<name>`` for the encoder's, ``dec.<name>`` for the log joint's), and the data as
``{split: arrays}``.  The framework-specific parts (how a module or a pure function is called with the
harness's arrays) are the subclasses' (:mod:`harness.workloads.from_torch`, :mod:`harness.workloads.from_jax`).

Data (:func:`split_arrays`): ``{"train": ..., "val": ..., "test": ...}``, each split one array [n, ...] or a dict
of arrays with a common leading length n; the model receives a batch in the same structure (one array, or a dict).
Latents: ``bernoulli`` and ``normal`` take a shape (D,), ``categorical`` (G, K).  The encoder returns the
distribution's parameters in its order (``logits``; ``loc, scale``) as one array, a tuple, or a dict by name,
each of shape [N, *shape] (or [N, prod(shape)]).

The workload's :attr:`fingerprint` (the data, the initial weights, the latent and a description of the code)
enters the keys of cached checkpoints and truths, so a changed model registered again under the same name never
reads another model's cache.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from array_api_compat import array_namespace

from harness.files.cache import digest
from harness.registry import RegistryError, get_declaration
from harness.workloads.base import SPLITS, Workload, WorkloadError

LATENT_PARAMS: dict[str, tuple[str, ...]] = {
    "bernoulli": ("logits",),
    "categorical": ("logits",),
    "normal": ("loc", "scale"),
}
TRAIN_ESTIMATORS = {"bernoulli": "disarm", "categorical": "score_function_rloo", "normal": "pathwise"}
CONFIG = {  # the configuration every functional workload has (checkpoints and truths read these keys)
    "init_seed": 0,  # used only with reinit: the seed of the re-initialized weights
    "train_seed": 0,
    "lr": 1e-3,
    "train_batch": 32,
    "train_samples": 2,  # L per example in training (score_function_rloo needs >= 2)
    "reference_samples": 4000,  # per example, for a reference truth (latents too large to enumerate)
}
ARRAY_KEY = "x"  # the one key of data given as one array per split


Split = tuple[dict[str, np.ndarray], str]  # a split's arrays and their structure: array | tuple | dict


def split_arrays(data: Any, where: str, to_arrays: Callable[[Any, str], Split]) -> tuple[dict, str]:
    """``({split: {key: array}}, structure)`` from the user's data; ``to_arrays(item, key)`` converts a split and
    ``structure`` (``array``, ``tuple`` or ``dict``) says how the model receives a batch (:meth:`FunctionalWorkload.batch`).

    Every split of train, val and test must be present, with the same keys, per-example shapes and a common length
    inside a split; errors name ``where`` (the argument) and the split."""
    if not isinstance(data, Mapping):
        raise WorkloadError(where, f"must be a dict {{split: data}} with the splits {list(SPLITS)}, got {type(data)}")
    missing = [s for s in SPLITS if s not in data]
    extra = sorted(set(data) - set(SPLITS))
    if missing or extra:
        bad = missing[0] if missing else extra[0]
        raise WorkloadError(f"{where}.{bad}", f"{'missing' if missing else 'unknown'} split; valid: {list(SPLITS)}")
    got = {s: to_arrays(data[s], f"{where}.{s}") for s in SPLITS}
    splits = {s: g[0] for s, g in got.items()}
    kinds = {s: g[1] for s, g in got.items()}
    if len(set(kinds.values())) != 1:
        raise WorkloadError(where, f"the splits give different kinds of batches: {kinds}")
    ref = splits["train"]
    for s, arrs in splits.items():
        if set(arrs) != set(ref):
            raise WorkloadError(f"{where}.{s}", f"keys {sorted(arrs)} differ from the train split's {sorted(ref)}")
        lens = {k: len(v) for k, v in arrs.items()}
        if len(set(lens.values())) != 1 or min(lens.values()) < 1:
            raise WorkloadError(f"{where}.{s}", f"arrays need one common, positive number of examples, got {lens}")
        for k, v in arrs.items():
            if v.shape[1:] != ref[k].shape[1:]:
                raise WorkloadError(
                    f"{where}.{s}.{k}", f"per-example shape {v.shape[1:]} differs from train's {ref[k].shape[1:]}"
                )
            if not np.issubdtype(v.dtype, np.number) and v.dtype != bool:
                raise WorkloadError(f"{where}.{s}.{k}", f"must be numeric, got dtype {v.dtype}")
    return splits, kinds["train"]


def tuple_keys(n: int) -> list[str]:
    """The keys of a split whose items are n-tuples (a Dataset yielding (x, y), ...): x0, x1, ..."""
    return [f"{ARRAY_KEY}{i}" for i in range(n)]


def numpy_split(item: Any, where: str) -> Split:
    """One split given as an array-like or a dict of array-likes, as ``{key: numpy array}`` and its structure."""
    if isinstance(item, Mapping):
        if not item:
            raise WorkloadError(where, "is an empty dict; give an array or a dict of arrays")
        return {str(k): as_array(v, f"{where}.{k}") for k, v in item.items()}, "dict"
    return {ARRAY_KEY: as_array(item, where)}, "array"


def as_array(v: Any, where: str) -> np.ndarray:
    try:
        a = np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v)
    except Exception as e:  # an object numpy cannot read: say which
        raise WorkloadError(where, f"is not an array ({type(v).__name__}): {e}") from None
    if a.ndim < 1:
        raise WorkloadError(where, f"needs a leading example axis, got shape {a.shape}")
    return a


def check_latent(latent: str, shape: Any) -> tuple[int, ...]:
    """The latent event shape as a tuple, checked against the distribution (WorkloadError naming the valid kinds)."""
    if latent not in LATENT_PARAMS:
        raise WorkloadError("latent", f"unknown latent {latent!r}; valid: {list(LATENT_PARAMS)}")
    shp = (shape,) if isinstance(shape, int) else tuple(shape) if isinstance(shape, Sequence) else None
    want = 2 if latent == "categorical" else 1
    if (
        shp is None
        or len(shp) != want
        or not all(isinstance(d, int | np.integer) and not isinstance(d, bool) and d >= 1 for d in shp)
    ):
        form = "(G, K): G groups of K categories" if want == 2 else "(D,) or D: D latents"
        raise WorkloadError("shape", f"a {latent} latent takes {form}, positive integers; got {shape!r}")
    if latent == "categorical" and shp[1] < 2:
        raise WorkloadError("shape", f"a categorical latent needs K >= 2 categories, got {shape!r}")
    return tuple(int(d) for d in shp)


def code_description(obj: Any) -> str:
    """What identifies a model's code beyond its weights: a module's ``repr`` (its architecture), a function's
    qualified name, bytecode and constants (best effort: closures' captured values are not seen)."""
    fn = getattr(obj, "__func__", obj)
    code = getattr(fn, "__code__", None)
    if code is None:
        return f"{type(obj).__module__}.{type(obj).__qualname__}:{obj!r}"
    return f"{getattr(fn, '__qualname__', '')}:{code.co_code.hex()}:{code.co_consts!r}"


class FunctionalWorkload(Workload):
    """A workload from functions, weights and data (see the module docstring); subclasses call the functions."""

    def __init__(
        self,
        name: str,
        latent: str,
        shape: Any,
        splits: dict[str, dict[str, np.ndarray]],
        structure: str,
        weights: Mapping[str, np.ndarray],
        enc_keys: Sequence[str],
        *,
        backends: tuple[str, ...],
        config: Mapping[str, Any] | None,
        train_estimator: str | None,
        differentiable: bool,
        doc: str,
        code: str,
    ) -> None:
        if not isinstance(name, str) or not name.isidentifier():
            raise WorkloadError("name", f"must be an identifier (letters, digits, _), got {name!r}")
        self.name, self.latent = name, latent
        self.shape = check_latent(latent, shape)
        self.splits, self.structure = splits, structure
        self.weights0 = {k: np.asarray(v, np.float64) for k, v in weights.items()}
        self.enc_keys = list(enc_keys)
        if not self.enc_keys:
            raise WorkloadError("encoder", "has no weights: the estimators' gradient flows into the encoder's weights")
        self.backends = backends
        unknown = sorted(set(config or {}) - set(CONFIG))
        if unknown:
            raise WorkloadError(f"config.{unknown[0]}", f"unknown key; valid: {sorted(CONFIG)}")
        self.defaults = {**CONFIG, **(config or {})}
        self.train_estimator = TRAIN_ESTIMATORS[latent] if train_estimator is None else train_estimator
        try:
            decl = get_declaration(self.train_estimator)
        except RegistryError as e:
            raise WorkloadError("train_estimator", str(e)) from None
        if not decl.applies_to(latent):
            raise WorkloadError(
                "train_estimator",
                f"{decl.name!r} does not apply to {latent} latents (it takes {list(decl.distributions)})",
            )
        self.differentiable = bool(differentiable)
        self.doc = doc or f"a user's model: {latent} latents of shape {self.shape}"
        self.default_batch = min(4, *(len(next(iter(v.values()))) for v in splits.values()))
        self.resolve({})  # the defaults' values are checked once, here
        h = hashlib.sha256()
        for part in (
            latent,
            repr(self.shape),
            digest({f"{s}/{k}": v for s, d in splits.items() for k, v in d.items()}),
            digest(self.weights0),
            repr(sorted(self.enc_keys)),
            code,
        ):
            h.update(part.encode() + b"\0")
        self.fingerprint = h.hexdigest()[:20]

    # -- configuration and data -------------------------------------------------------------------------------
    def check(self, cfg: Mapping[str, Any]) -> None:
        for k in ("train_batch", "train_samples", "reference_samples"):
            if not isinstance(cfg[k], int) or cfg[k] < 1:
                raise WorkloadError(f"config.{k}", f"must be a positive integer, got {cfg[k]!r}")
        if not cfg["lr"] > 0:
            raise WorkloadError("config.lr", f"must be > 0, got {cfg['lr']!r}")

    def latent_shape(self, cfg: Mapping[str, Any]) -> tuple[int, ...]:
        return self.shape

    def dataset(self, cfg: Mapping[str, Any]) -> dict[str, dict[str, np.ndarray]]:
        return self.splits

    def init_params(self, cfg: Mapping[str, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
        """The weights the model was given (every seed starts from them); subclasses may re-initialize."""
        return {k: v.copy() for k, v in self.weights0.items()}

    def param_shapes(self, cfg: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
        return {k: tuple(v.shape) for k, v in self.weights0.items()}

    def encoder_keys(self, cfg: Mapping[str, Any]) -> list[str]:
        return list(self.enc_keys)

    def batch(self, x: Mapping[str, Any]) -> Any:
        """The batch as the user's functions take it: one array, a tuple of arrays, or the dict of arrays."""
        if self.structure == "array":
            return x[ARRAY_KEY]
        if self.structure == "tuple":
            return tuple(x[k] for k in tuple_keys(len(x)))
        return dict(x)

    # -- the model ----------------------------------------------------------------------------------------------
    def eta(self, out: Any, n: int) -> dict[str, Any]:
        """The encoder's output as ``{param: [N, *shape]}`` (WorkloadError naming what was expected)."""
        names = LATENT_PARAMS[self.latent]
        if isinstance(out, Mapping):
            if set(out) != set(names):
                raise WorkloadError(
                    "encoder", f"returned keys {sorted(out)}; a {self.latent} latent needs {list(names)}"
                )
            parts = [out[k] for k in names]
        elif isinstance(out, tuple | list):
            parts = list(out)
        else:
            parts = [out]
        if len(parts) != len(names):
            raise WorkloadError(
                "encoder", f"returned {len(parts)} array(s); a {self.latent} latent needs {list(names)} in this order"
            )
        res = {}
        for k, v in zip(names, parts):
            shape = tuple(v.shape)
            if shape[:1] != (n,) or math.prod(shape[1:]) != math.prod(self.shape):
                raise WorkloadError(
                    "encoder", f"returned {k} of shape {list(shape)}; expected [{n}, {', '.join(map(str, self.shape))}]"
                )
            res[k] = v if shape[1:] == self.shape else array_namespace(v).reshape(v, (n, *self.shape))
        return res

    def check_model(self, B: Any, params: Mapping[str, Any], x: Mapping[str, Any]) -> None:
        """Call the model once on two training examples: the encoder's output and log_joint's shape are checked, so a
        mistake is an error at registration, not a failed cell."""
        n = len(next(iter(x.values())))
        try:
            eta = self.encode(B, params, x, {})
        except WorkloadError:
            raise
        except Exception as e:  # the user's code failed on their own data: say where
            raise WorkloadError("encoder", f"failed on two training examples: {type(e).__name__}: {e}") from e
        if self.latent == "normal":
            sc = B.to_numpy(eta["scale"])
            if not np.all(sc > 0):
                raise WorkloadError("encoder", "returned a scale that is not > 0 (apply softplus or exp)")
        xp = array_namespace(next(iter(eta.values())))
        z = xp.zeros((3, n, *self.shape), dtype=next(iter(eta.values())).dtype)
        if self.latent == "categorical":
            z = z + xp.reshape(xp.eye(self.shape[1], dtype=z.dtype)[0], (1, 1, 1, self.shape[1]))
        try:
            lj = self.log_joint(B, z, params, x, {})
        except Exception as e:
            raise WorkloadError("log_joint", f"failed on z of shape {list(z.shape)}: {type(e).__name__}: {e}") from e
        if tuple(lj.shape) != (3, n):
            raise WorkloadError(
                "log_joint",
                f"returned shape {list(lj.shape)} for z of shape {list(z.shape)}; expected [3, {n}] "
                "(z [..., N, *shape] -> [..., N])",
            )
        if not np.all(np.isfinite(B.to_numpy(lj))):
            raise WorkloadError("log_joint", "is not finite at z = 0 on the first training examples")
