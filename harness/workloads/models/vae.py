"""VAEs on images: Bernoulli, categorical and Gaussian latents, Bernoulli likelihood.

The images (config ``dataset``) are scikit-learn's 8×8 digits (embedded, the default) or a 28×28 data set the
user has on disk — ``mnist``, ``fashion_mnist``, ``binarized_mnist``, ``omniglot`` — found through
``data_dir`` / ``$STOCHGRAD_DATA`` and checked by checksum (``data_sha256``; see
:mod:`harness.workloads.datasets`).  Images are scaled to [0, 1] and binarized at a fixed ``threshold``
(default) or, with ``binarize = "dynamic"``, by drawing each pixel ~ Bernoulli(intensity) (a fresh draw per
training step; the evaluation batch uses one draw fixed by its ``batch_seed``).  Encoder and decoder are MLPs with
``hidden`` tanh units (0: linear).  Priors: Bernoulli(½), uniform categorical, N(0, I).

The model code is written once against the array API standard (``array_api_compat.array_namespace``: ``xp.sum``,
``xp.reshape``, ...), so it runs unchanged on NumPy, PyTorch and JAX; ``B.softplus`` is the backend adapter's
numerically stable softplus.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from array_api_compat import array_namespace
from scipy import special

from harness.workloads import data, datasets, image_sets, nets, register_workload
from harness.workloads.base import Workload, WorkloadError

DATASETS = ("digits", *image_sets.IMAGE_SETS)
COMMON = {
    "dataset": "digits",  # digits (scikit-learn, embedded) | mnist | fashion_mnist | binarized_mnist | omniglot
    "data_dir": "",  # folder of the data set's files ("": $STOCHGRAD_DATA/<dataset>); not for digits
    "data_sha256": "",  # "": the files must be the published ones; else the digest of your own files
    "hidden": 0,  # hidden tanh units of encoder and decoder (0: linear)
    "binarize": "fixed",  # fixed | dynamic
    "threshold": 0.5,
    "data_seed": 0,  # train/val/test split
    "init_seed": 0,
    "train_seed": 0,
    "train_batch": 32,
    "lr": 1e-3,
    "train_samples": 2,  # L per example in training (score_function_rloo needs >= 2)
    "reference_samples": 4000,  # per example, for exact_method = "reference"
}
DIGITS_PIXELS = 64


class DigitsVAE(Workload):
    """Shared data, encoder/decoder and likelihood; subclasses fix the latent distribution."""

    eval_keys = ("reference_samples", "data_dir")  # where the (checksummed) files are does not change the model

    def check(self, cfg: Mapping[str, Any]) -> None:
        if cfg["dataset"] not in DATASETS:
            raise WorkloadError("config.dataset", f"unknown data set {cfg['dataset']!r}; valid: {list(DATASETS)}")
        if cfg["dataset"] == "digits":
            for k in ("data_dir", "data_sha256"):
                if cfg[k]:
                    raise WorkloadError(
                        f"config.{k}", f"digits ship with scikit-learn; {k} applies to {list(image_sets.IMAGE_SETS)}"
                    )
        sha = cfg["data_sha256"]
        if sha and (len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha)):
            raise WorkloadError(
                "config.data_sha256", f"must be 64 lowercase hex digits (a SHA-256) or empty, got {sha!r}"
            )
        if cfg["binarize"] not in ("fixed", "dynamic"):
            raise WorkloadError(
                "config.binarize", f"unknown binarization {cfg['binarize']!r}; valid: ['fixed', 'dynamic']"
            )
        for k in ("hidden",):
            if not isinstance(cfg[k], int) or cfg[k] < 0:
                raise WorkloadError(f"config.{k}", f"must be a non-negative integer, got {cfg[k]!r}")
        for k in ("train_batch", "train_samples", "reference_samples"):
            if not isinstance(cfg[k], int) or cfg[k] < 1:
                raise WorkloadError(f"config.{k}", f"must be a positive integer, got {cfg[k]!r}")
        if not cfg["lr"] > 0 or not 0 < cfg["threshold"] < 1:
            raise WorkloadError(
                "config.lr", f"lr must be > 0 and threshold in (0, 1), got {cfg['lr']!r}, {cfg['threshold']!r}"
            )

    def dataset(self, cfg: Mapping[str, Any]) -> dict[str, dict[str, np.ndarray]]:
        if cfg["dataset"] == "digits":
            return {k: {"x": v} for k, v in data.digits(cfg["data_seed"]).items()}
        imgs = datasets.load(cfg["dataset"], cfg["data_dir"], cfg["data_sha256"])
        return {k: {"x": v} for k, v in imgs.splits.items()}

    def _scale(self, cfg: Mapping[str, Any]) -> float:
        """Stored value / scale = intensity in [0, 1] (digits are stored scaled; MNIST files as uint8 0..255)."""
        if cfg["dataset"] == "digits":
            return 1.0
        return datasets.load(cfg["dataset"], cfg["data_dir"], cfg["data_sha256"]).scale

    def _pixels(self, cfg: Mapping[str, Any]) -> int:
        return DIGITS_PIXELS if cfg["dataset"] == "digits" else image_sets.PIXELS

    def prepare_batch(self, x: dict[str, np.ndarray], rng: np.random.Generator, cfg: Mapping[str, Any]) -> dict:
        v = np.asarray(x["x"], np.float64) / self._scale(cfg)
        if cfg["binarize"] == "dynamic":
            return {"x": (rng.random(v.shape) < v).astype(np.float64)}
        return {"x": (v > cfg["threshold"]).astype(np.float64)}

    # sizes
    def _z_flat(self, cfg: Mapping[str, Any]) -> int:
        return int(np.prod(self.latent_shape(cfg)))

    def _enc_out(self, cfg: Mapping[str, Any]) -> int:
        return self._z_flat(cfg)

    def _sizes(self, a: int, b: int, cfg: Mapping[str, Any]) -> list[int]:
        return [a, cfg["hidden"], b] if cfg["hidden"] else [a, b]

    def init_params(self, cfg: Mapping[str, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
        p = nets.init_mlp(rng, self._sizes(self._pixels(cfg), self._enc_out(cfg), cfg), "enc_")
        p.update(nets.init_mlp(rng, self._sizes(self._z_flat(cfg), self._pixels(cfg), cfg), "dec_"))
        return p

    def param_shapes(self, cfg: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
        return {
            **nets.mlp_shapes(self._sizes(self._pixels(cfg), self._enc_out(cfg), cfg), "enc_"),
            **nets.mlp_shapes(self._sizes(self._z_flat(cfg), self._pixels(cfg), cfg), "dec_"),
        }

    def encoder_keys(self, cfg: Mapping[str, Any]) -> list[str]:
        return [k for k in self.param_shapes(cfg) if k.startswith("enc_")]

    def log_prior(self, B: Any, z: Any, cfg: Mapping[str, Any]) -> Any:
        raise NotImplementedError

    def log_joint(self, B: Any, z: Any, params: Mapping[str, Any], x: Mapping[str, Any], cfg: Mapping[str, Any]) -> Any:
        xp = array_namespace(z)
        zf = xp.reshape(z, tuple(z.shape[: z.ndim - len(self.latent_shape(cfg))]) + (self._z_flat(cfg),))
        logits = nets.forward(params, "dec_", zf)
        ll = xp.sum(x["x"] * logits - B.softplus(logits), axis=-1)
        return ll + self.log_prior(B, z, cfg)

    def log_joint_grad_np(self, z: np.ndarray, params: Mapping, x: Mapping, cfg: Mapping[str, Any]) -> np.ndarray:
        shape = self.latent_shape(cfg)
        zf = z.reshape(z.shape[: z.ndim - len(shape)] + (self._z_flat(cfg),))
        logits = nets.forward(params, "dec_", zf)
        g = nets.input_grad_np(params, "dec_", zf, x["x"] - special.expit(logits)).reshape(z.shape)
        return g - z if self.latent == "normal" else g

    def _eta_from_out(self, B: Any, out: Any, cfg: Mapping[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def encode(self, B: Any, params: Mapping[str, Any], x: Mapping[str, Any], cfg: Mapping[str, Any]) -> dict:
        return self._eta_from_out(B, nets.forward(params, "enc_", x["x"]), cfg)

    def _out_cotangent(self, out: np.ndarray, G: Mapping[str, np.ndarray], cfg: Mapping[str, Any]) -> np.ndarray:
        R = next(iter(G.values())).shape[0]
        return G["logits"].reshape(R, out.shape[0], -1)

    def encoder_vjp_np(self, params: Mapping, x: Mapping, G: Mapping[str, np.ndarray], cfg: Mapping[str, Any]) -> dict:
        out = nets.forward(params, "enc_", x["x"])
        return nets.weight_vjp_np(params, "enc_", x["x"], self._out_cotangent(out, G, cfg))


class _LatentDim:
    """D independent latents (config ``latent_dim``)."""

    def latent_shape(self, cfg: Mapping[str, Any]) -> tuple[int, ...]:
        return (cfg["latent_dim"],)

    def check(self, cfg: Mapping[str, Any]) -> None:
        super().check(cfg)
        if not isinstance(cfg["latent_dim"], int) or cfg["latent_dim"] < 1:
            raise WorkloadError("config.latent_dim", f"must be a positive integer, got {cfg['latent_dim']!r}")


class VaeBernoulli(_LatentDim, DigitsVAE):
    name = "vae_bernoulli"
    latent = "bernoulli"
    defaults = {"latent_dim": 32, **COMMON}
    train_estimator = "disarm"
    doc = "binary VAE on images (8×8 digits or a 28×28 data set): D Bernoulli latents (latent_dim)"

    def log_prior(self, B: Any, z: Any, cfg: Mapping[str, Any]) -> float:
        return -cfg["latent_dim"] * math.log(2.0)

    def _eta_from_out(self, B: Any, out: Any, cfg: Mapping[str, Any]) -> dict[str, Any]:
        return {"logits": out}


class VaeCategorical(DigitsVAE):
    name = "vae_categorical"
    latent = "categorical"
    defaults = {"groups": 8, "categories": 8, **COMMON}
    train_estimator = "score_function_rloo"
    doc = "categorical VAE on images (8×8 digits or a 28×28 data set): G groups of K-way categoricals"

    def latent_shape(self, cfg: Mapping[str, Any]) -> tuple[int, ...]:
        return (cfg["groups"], cfg["categories"])

    def check(self, cfg: Mapping[str, Any]) -> None:
        super().check(cfg)
        for k, lo in (("groups", 1), ("categories", 2)):
            if not isinstance(cfg[k], int) or cfg[k] < lo:
                raise WorkloadError(f"config.{k}", f"must be an integer >= {lo}, got {cfg[k]!r}")

    def log_prior(self, B: Any, z: Any, cfg: Mapping[str, Any]) -> float:
        return -cfg["groups"] * math.log(cfg["categories"])

    def _eta_from_out(self, B: Any, out: Any, cfg: Mapping[str, Any]) -> dict[str, Any]:
        return {"logits": array_namespace(out).reshape(out, tuple(out.shape[:-1]) + self.latent_shape(cfg))}


class VaeGaussian(_LatentDim, DigitsVAE):
    name = "vae_gaussian"
    latent = "normal"
    defaults = {"latent_dim": 8, **COMMON}
    train_estimator = "pathwise"
    doc = "Gaussian VAE on images (8×8 digits or a 28×28 data set): D normal latents, N(0, I) prior"

    def _enc_out(self, cfg: Mapping[str, Any]) -> int:
        return 2 * cfg["latent_dim"]

    def log_prior(self, B: Any, z: Any, cfg: Mapping[str, Any]) -> Any:
        return array_namespace(z).sum(-0.5 * z * z, axis=-1) - 0.5 * cfg["latent_dim"] * math.log(2 * math.pi)

    def _eta_from_out(self, B: Any, out: Any, cfg: Mapping[str, Any]) -> dict[str, Any]:
        D = cfg["latent_dim"]
        return {"loc": out[..., :D], "scale": B.softplus(out[..., D:])}

    def _out_cotangent(self, out: np.ndarray, G: Mapping[str, np.ndarray], cfg: Mapping[str, Any]) -> np.ndarray:
        D = cfg["latent_dim"]
        return np.concatenate([G["loc"], G["scale"] * special.expit(out[..., D:])], axis=-1)


def _register() -> None:
    for cls in (VaeBernoulli, VaeCategorical, VaeGaussian):
        register_workload(cls)


_register()
