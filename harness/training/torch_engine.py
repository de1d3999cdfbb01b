"""The PyTorch training engine: weights as tensors, autograd through the encoder, ``torch.optim.Adam``.

One step (see :mod:`harness.training.step` for the layout): η = encoder(x); the registered estimator gives every
example's η-gradient g [N, *latent] in one call (examples as replicates); the decoder gets the exact autograd
gradient of the training objective on fresh samples; one backward pass of ⟨η, g⟩ / N − objective gives every weight
its gradient, which the optimizer applies.  The online-variance EMAs track the encoder weights' gradients.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from harness.training.engine import ProblemFor, UnitSetup
from harness.training.step import decoder_objective, encoder_gradient, held_out_bound


class TorchAdam:
    """Adam through ``torch.optim.Adam`` (in place); moments exported as ``am/`` and ``av/`` arrays."""

    def __init__(self, params: dict[str, Any], lr: float, to_tensor: Callable[[np.ndarray], Any]) -> None:
        import torch

        self.params, self.to_tensor = params, to_tensor
        self.opt = torch.optim.Adam(list(params.values()), lr=lr)

    def apply(self, params: dict[str, Any], grads: Mapping[str, Any]) -> dict[str, Any]:
        for k, v in params.items():
            v.grad = grads.get(k)
        self.opt.step()
        return params

    def arrays(self) -> dict[str, np.ndarray]:
        out = {}
        for k, v in self.params.items():
            st = self.opt.state.get(v)
            if st:
                out[f"am/{k}"] = st["exp_avg"].detach().cpu().numpy()
                out[f"av/{k}"] = st["exp_avg_sq"].detach().cpu().numpy()
        return out

    def restore(self, arrays: Mapping[str, np.ndarray], step: int) -> None:
        import torch

        for k, v in self.params.items():
            if f"am/{k}" in arrays:
                self.opt.state[v] = {
                    "step": torch.tensor(float(step)),
                    "exp_avg": self.to_tensor(arrays[f"am/{k}"]),
                    "exp_avg_sq": self.to_tensor(arrays[f"av/{k}"]),
                }


class TorchEngine:
    """A unit's model and optimizer on PyTorch (see :class:`harness.training.engine.Engine`)."""

    backend = "torch"
    compiled = False  # eager autograd, op by op
    eager_reason = ""

    def __init__(self, setup: UnitSetup, init: Callable[[], dict[str, np.ndarray]]) -> None:
        import torch

        from harness.backends import get_backend

        self.s, self.B = setup, get_backend("torch")
        self.tdtype = {"float64": torch.float64, "float32": torch.float32}[setup.dtype]
        with torch.random.fork_rng():  # a torch model's init may seed torch's global generator
            weights = init()
        self.params = {k: self._t(v).requires_grad_(True) for k, v in weights.items()}
        self.opt = TorchAdam(self.params, setup.lr, self._t)
        self.ema = {n: {k: torch.zeros_like(self.params[k]) for k in setup.enc_keys} for n in ("m", "s")}

    def _t(self, a: np.ndarray) -> Any:
        import torch

        return torch.as_tensor(np.asarray(a), dtype=self.tdtype, device=self.s.device)

    def _batch(self, x: Mapping[str, np.ndarray]) -> dict[str, Any]:
        return {k: self._t(v) for k, v in x.items()}

    def step(self, x_np: Mapping[str, np.ndarray], rng: np.random.Generator, problem_for: ProblemFor) -> float:
        import torch

        s, B = self.s, self.B
        x = self._batch(x_np)
        dec = {k: v for k, v in self.params.items() if k not in s.enc_keys}
        eta = s.workload.encode(B, self.params, x, s.cfg)
        problem = problem_for(x, lambda: eta)
        L = s.n_samples
        noise = B.numpy_noise(rng, s.dtype, s.device)  # the estimator's draws, then the decoder's
        g = encoder_gradient(
            s.estimator,
            B,
            s.workload,
            s.cfg,
            s.dist,
            {k: v.detach() for k, v in dec.items()},
            x,
            eta,
            noise,
            L,
            s.hyper,
            s.dtype,
            s.device,
            problem,
        )
        obj = decoder_objective(B, s.workload, s.cfg, s.dist, dec, x, eta, noise, L, s.multi)
        N = obj.shape[0]
        surrogate = sum((eta[k] * g[k].detach()).sum() for k in g) / N
        names = list(self.params)
        grads = torch.autograd.grad(surrogate - obj.mean(), [self.params[k] for k in names], allow_unused=True)
        grads_by_name = dict(zip(names, grads))
        self._update_ema(grads_by_name)
        self.params = self.opt.apply(self.params, grads_by_name)
        return float(obj.detach().mean())

    def _update_ema(self, grads: Mapping[str, Any]) -> None:
        import torch

        b = self.s.ema_decay
        with torch.no_grad():
            for k in self.s.enc_keys:
                gk = grads[k]
                self.ema["m"][k].mul_(b).add_(gk, alpha=1 - b)
                self.ema["s"][k].mul_(b).add_(gk * gk, alpha=1 - b)

    def grad_var(self, t: int) -> tuple[float, float]:
        corr = 1 - self.s.ema_decay**t
        m = np.concatenate([self.B.to_numpy(self.ema["m"][k]).ravel() for k in self.s.enc_keys]) / corr
        sq = np.concatenate([self.B.to_numpy(self.ema["s"][k]).ravel() for k in self.s.enc_keys]) / corr
        return float(np.mean(np.maximum(sq - m * m, 0.0))), float(np.mean(m * m))

    def bound(self, x: Mapping[str, np.ndarray], K: int, seed: int, chunk: int) -> np.ndarray:
        import torch

        s = self.s
        with torch.no_grad():
            return held_out_bound(
                self.B, s.workload, s.cfg, s.dist, self.params, self._batch(x), K, seed, chunk, s.dtype, s.device
            )

    def weights(self) -> dict[str, np.ndarray]:
        return {k: self.B.to_numpy(v).astype(np.float64) for k, v in self.params.items()}

    def arrays(self) -> dict[str, np.ndarray]:
        out = {f"p/{k}": self.B.to_numpy(v) for k, v in self.params.items()}
        out.update(self.opt.arrays())
        for n in ("m", "s"):
            out.update({f"e{n}/{k}": self.B.to_numpy(v) for k, v in self.ema[n].items()})
        return out

    def restore(self, arrays: Mapping[str, np.ndarray], step: int) -> None:
        import torch

        with torch.no_grad():
            for k, v in self.params.items():
                v.copy_(self._t(arrays[f"p/{k}"]))
            for n in ("m", "s"):
                for k in self.s.enc_keys:
                    self.ema[n][k].copy_(self._t(arrays[f"e{n}/{k}"]))
        self.opt.restore(arrays, step)

    def sync(self) -> None:
        self.B.sync(list(self.params.values()))

    def compile_seconds(self) -> float:
        return 0.0

    def to_numpy(self, a: Any) -> np.ndarray:
        return self.B.to_numpy(a)
