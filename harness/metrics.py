"""Bias, variance and MSE of R replicate L-sample gradient estimates against the exact gradient.

Aggregation over a parameter's coordinates c (see results/README.md for the column contract):
  exact_grad  mean_c e_c                     grad_mean  mean_c m_c  (m_c = mean over replicates)
  bias        sqrt(mean_c (m_c - e_c)^2)     bias_z     max_c |m_c - e_c| / se_c
  variance    mean_c Var_r[G_rc]             mse        mean_c mean_r (G_rc - e_c)^2
  snr         sqrt(mean_c m_c^2 / variance)
Confidence intervals (95%, normal approximation): variance and mse use the per-replicate statistics
v_r = mean_c (G_rc - m_c)^2 · R/(R-1) and u_r = mean_c (G_rc - e_c)^2, whose standard errors
std(v)/sqrt(R) (the fourth-moment method, valid under correlation between coordinates) give the
half-widths; the bias interval combines per-coordinate intervals |m_c - e_c| ± z se_c.
"""

from __future__ import annotations

import math

import numpy as np

Z95 = 1.959963984540054


def summarize(G: np.ndarray, exact: np.ndarray, z: float = Z95, rel_eps: float = 2.2e-16) -> dict[str, float]:
    """Metrics of one parameter: ``G`` [R, *shape] replicate estimates, ``exact`` [*shape].

    ``rel_eps`` (the measurement dtype's machine epsilon) floors the standard error used by ``bias_z``
    at rounding level, so an exact estimator (zero variance) is not flagged for 1e-19 differences.
    """
    R0 = G.shape[0]
    G = np.asarray(G, dtype=np.float64).reshape(R0, -1)
    e = np.asarray(exact, dtype=np.float64).reshape(-1)
    finite = np.all(np.isfinite(G), axis=1)
    nan_fraction = float(1.0 - np.isfinite(G).mean()) if G.size else 0.0
    G = G[finite]
    R = G.shape[0]
    out: dict[str, float] = {
        "exact_grad": float(e.mean()),
        "nan_fraction": nan_fraction,
        "n_replicates_used": float(R),
    }
    if R < 2:
        return {
            **out,
            **{
                k: math.nan
                for k in (
                    "grad_mean",
                    "bias",
                    "bias_ci_low",
                    "bias_ci_high",
                    "bias_z",
                    "variance",
                    "variance_ci_low",
                    "variance_ci_high",
                    "mse",
                    "mse_ci_low",
                    "mse_ci_high",
                    "snr",
                )
            },
        }
    m = G.mean(0)
    dev = G - m
    var_c = (dev * dev).sum(0) / (R - 1)
    se_c = np.maximum(np.sqrt(var_c / R), 64 * rel_eps * (np.abs(e) + np.abs(m)))
    d = m - e
    absd = np.abs(d)
    with np.errstate(divide="ignore", invalid="ignore"):
        zc = np.where(se_c > 0, absd / se_c, np.where(absd > 1e-12 * (1 + np.abs(e)), np.inf, 0.0))
    v_r = (dev * dev).mean(1) * R / (R - 1)
    u_r = ((G - e) ** 2).mean(1)
    variance = float(v_r.mean())
    v_se = float(v_r.std(ddof=1) / math.sqrt(R))
    mse = float(u_r.mean())
    u_se = float(u_r.std(ddof=1) / math.sqrt(R))
    out.update(
        grad_mean=float(m.mean()),
        bias=float(np.sqrt(np.mean(d * d))),
        bias_ci_low=float(np.sqrt(np.mean(np.maximum(absd - z * se_c, 0.0) ** 2))),
        bias_ci_high=float(np.sqrt(np.mean((absd + z * se_c) ** 2))),
        bias_z=float(zc.max()),
        variance=variance,
        variance_se=v_se,
        variance_ci_low=max(variance - z * v_se, 0.0),
        variance_ci_high=variance + z * v_se,
        mse=mse,
        mse_ci_low=max(mse - z * u_se, 0.0),
        mse_ci_high=mse + z * u_se,
        snr=float(math.sqrt(np.mean(m * m) / variance)) if variance > 0 else math.inf,
    )
    out["variance_rel_halfwidth"] = (z * v_se / variance) if variance > 0 else 0.0
    return out
