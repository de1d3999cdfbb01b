"""PyTorch backend: autograd gradients, devices ``cpu`` and ``cuda[:N]``; torch is optional."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from harness.backends.base import Array, Backend, Noise, PreparedCall

try:  # optional at import time: a missing backend is reported, never a crash
    import torch

    _IMPORT_ERROR: str | None = None
except Exception as exc:  # pragma: no cover - exercised only where torch is absent
    torch = None  # type: ignore[assignment]
    _IMPORT_ERROR = f"torch is not importable: {type(exc).__name__}: {exc}"


def _tensor_leaves(x: Any) -> list[Any]:
    if isinstance(x, dict):
        return [t for v in x.values() for t in _tensor_leaves(v)]
    if isinstance(x, list | tuple):
        return [t for v in x for t in _tensor_leaves(v)]
    return [x] if torch is not None and isinstance(x, torch.Tensor) else []


def _dtype(name: str) -> Any:
    return {"float64": torch.float64, "float32": torch.float32}[name]


class TorchNoise(Noise):
    def __init__(self, seed: int, dtype: str, device: str, B: Backend) -> None:
        self.gen = torch.Generator(device=device).manual_seed(int(seed) % (2**63))
        self.dtype, self.device, self.B = _dtype(dtype), torch.device(device), B

    def normal(self, shape: Sequence[int]) -> Array:
        return torch.randn(tuple(shape), generator=self.gen, dtype=self.dtype, device=self.device)

    def uniform(self, shape: Sequence[int]) -> Array:
        u = torch.rand(tuple(shape), generator=self.gen, dtype=self.dtype, device=self.device)
        fi = torch.finfo(self.dtype)
        return u.clamp(fi.tiny, 1.0 - fi.eps / 2)

    def standard_gamma(self, alpha: Array, shape: Sequence[int]) -> Array:
        a = torch.as_tensor(alpha, dtype=self.dtype, device=self.device).detach().expand(tuple(shape))
        # torch._standard_gamma has no generator argument; fork the global RNG from ours.
        seed = int(torch.randint(0, 2**62, (1,), generator=self.gen, device=self.device).item())
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(seed)
            return torch._standard_gamma(a.contiguous())


class TorchBackend(Backend):
    name = "torch"
    autodiff = True
    compiles = True

    @property
    def xp(self) -> Any:  # type: ignore[override]
        return torch

    def unavailable_reason(self) -> str | None:
        return _IMPORT_ERROR

    def devices(self) -> list[str]:
        if torch is None:
            return []
        out = ["cpu"]
        if torch.cuda.is_available():
            n = torch.cuda.device_count()
            out += ["cuda"] + [f"cuda:{i}" for i in range(n)]
        return out

    def device_names(self) -> dict[str, str]:
        if torch is None:
            return {}
        out = {"cpu": "cpu"}
        if torch.cuda.is_available():
            for i in range(torch.cuda.device_count()):
                out[f"cuda:{i}"] = torch.cuda.get_device_name(i)
            out["cuda_driver"] = str(getattr(torch.version, "cuda", ""))
        return out

    def versions(self) -> dict[str, str]:
        return {} if torch is None else {"torch": torch.__version__}

    def threads(self) -> dict[str, Any]:
        if torch is None:
            return {}
        return {
            "torch_num_threads": torch.get_num_threads(),
            "torch_interop_threads": torch.get_num_interop_threads(),
            "torch_parallel": [
                ln.strip()
                for ln in torch.__config__.parallel_info().splitlines()
                if "max_threads" in ln or "backend" in ln
            ],
        }

    def asarray(self, x: Any, dtype: str, device: str) -> Array:
        if isinstance(x, torch.Tensor):
            return x.to(dtype=_dtype(dtype), device=device)
        return torch.as_tensor(np.array(x), dtype=_dtype(dtype), device=device)

    def to_numpy(self, x: Array) -> np.ndarray:
        if isinstance(x, torch.Tensor):
            return x.detach().to("cpu").numpy()
        return np.asarray(x)

    def sync(self, x: Any) -> None:
        """Wait for the CUDA devices holding ``x`` (a pytree of tensors); a no-op on CPU."""
        if torch is None or not torch.cuda.is_initialized():
            return
        devices = {t.device for t in _tensor_leaves(x) if t.is_cuda}
        for d in devices or [None]:
            torch.cuda.synchronize(d)

    def noise(self, seed: int, dtype: str, device: str) -> Noise:
        return TorchNoise(seed, dtype, device, self)

    def prepare_call(
        self,
        fn: Callable[[Any], Any],
        template: Any,
        *,
        jit: bool = True,
        compile_backend: str | None = None,
        trace_key: str | None = None,
    ) -> PreparedCall:
        """As the base adapter; with ``compile_backend`` (e.g. "inductor") ``fn`` is wrapped in torch.compile."""
        if compile_backend:
            fn = torch.compile(fn, backend=compile_backend, dynamic=False)
        return super().prepare_call(self._guarded(fn), template, jit=jit, trace_key=trace_key)

    def _guarded(self, fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """``fn`` with its input tensors watched: a tensor cannot be made read-only, so each call compares the
        version counters of ``ctx.params`` / ``ctx.op`` before and after (no copy; an in-place write bumps them),
        restores a changed tensor from the problem's read-only arrays, and fails the call naming the input."""

        def call(ctx: Any) -> Any:
            watched = [(f"params[{k!r}]", ctx.problem.params_np, k, v) for k, v in ctx.params.items()]
            watched += [(f"op[{k!r}]", ctx.problem.op, k, v) for k, v in ctx.op.items() if isinstance(v, torch.Tensor)]
            before = [v._version for *_, v in watched]
            out = fn(ctx)
            changed = [(name, src, k, v) for (name, src, k, v), ver in zip(watched, before) if v._version != ver]
            if changed:
                with torch.no_grad():
                    for _, src, k, v in changed:
                        v.copy_(torch.as_tensor(np.array(src[k]), dtype=v.dtype, device=v.device))
                names = ", ".join(f"ctx.{name}" for name, *_ in changed)
                raise ValueError(
                    f"the estimator changed its input {names} in place (restored; estimators must not write into "
                    "ctx.params / ctx.op: copy before changing)"
                )
            return out

        return call

    def compile_backend_error(self, name: str) -> str | None:
        """Why ``torch.compile(backend=name)`` cannot be used here (torch missing, an unknown backend), or None."""
        if torch is None:
            return _IMPORT_ERROR
        from torch._dynamo import list_backends  # only when asked: importing dynamo is slow

        valid = list_backends(exclude_tags=())
        return None if name in valid else f"unknown torch.compile backend {name!r}; valid: {valid}"

    def traces_once(self, *, jit: bool = True, compile_backend: str | None = None) -> bool:
        return bool(compile_backend)

    def expand_params(self, params: dict[str, Array], R: int) -> dict[str, Array]:
        return {k: v.detach().expand(R, *v.shape).clone() for k, v in params.items()}

    def grad_batched(self, surrogate: Callable[[dict], Array], params: dict[str, Array]) -> dict:
        leaves = {k: v.detach().requires_grad_(True) for k, v in params.items()}
        out = surrogate(leaves)
        names = list(leaves)
        grads = torch.autograd.grad(out.sum(), [leaves[k] for k in names], allow_unused=True)
        return {k: (torch.zeros_like(leaves[k]) if g is None else g) for k, g in zip(names, grads)}

    def derivatives(self, fn: Callable[[Array], Array], x: Array, order: int = 1) -> list[Array]:
        leaf = x.detach().requires_grad_(True)
        (g1,) = torch.autograd.grad(fn(leaf).sum(), leaf, create_graph=order >= 2, allow_unused=True)
        g1 = torch.zeros_like(leaf) if g1 is None else g1
        out = [g1.detach()]
        if order >= 2:  # a first derivative that does not depend on x (linear fn) has no graph: zero
            g2 = torch.autograd.grad(g1.sum(), leaf, allow_unused=True)[0] if g1.requires_grad else None
            out.append(torch.zeros_like(leaf) if g2 is None else g2.detach())
        return out

    def stop_gradient(self, x: Array) -> Array:
        return x.detach()

    def lgamma(self, x: Array) -> Array:
        return torch.lgamma(x)

    def digamma(self, x: Array) -> Array:
        return torch.digamma(x)

    def log_softmax(self, x: Array, axis: int = -1) -> Array:
        return torch.log_softmax(x, dim=axis)

    def sigmoid(self, x: Array) -> Array:
        return torch.sigmoid(x)

    def softplus(self, x: Array) -> Array:
        return torch.nn.functional.softplus(x)

    def one_hot(self, idx: Array, k: int, like: Array) -> Array:
        return torch.nn.functional.one_hot(idx, k).to(like.dtype)

    def stack(self, xs: Sequence[Array], axis: int = 0) -> Array:
        return torch.stack(list(xs), dim=axis)

    def concat(self, xs: Sequence[Array], axis: int = 0) -> Array:
        return torch.cat(list(xs), dim=axis)

    def ndtr(self, x: Array) -> Array:
        # erfc form: relative accuracy in the left tail (torch.special.ndtr is 0 below x ≈ -8.3)
        return 0.5 * torch.special.erfc(-x * 0.7071067811865476)

    def ndtri(self, p: Array) -> Array:
        return torch.special.ndtri(p)

    def log_ndtr(self, x: Array) -> Array:
        return torch.special.log_ndtr(x)

    def logsumexp(self, x: Array, axis: int = -1) -> Array:
        return torch.logsumexp(x, dim=axis)

    def i0e(self, x: Array) -> Array:
        return torch.special.i0e(x)

    def i1e(self, x: Array) -> Array:
        return torch.special.i1e(x)
