"""Report data preparation: load runs, normalize columns across versions, derive labels, pool backends.

Every function here is pure pandas (no plotting, no HTML).  Vocabulary used by the report:

- **group** — a distribution × objective pair (one report section);
- **setting** — a problem without its dimension: distribution parameters and objective parameters;
- **instance** — setting × dimension (one leaderboard block);
- **config** — estimator name plus its hyperparameter values (``h_*`` columns), e.g. ``relax (temperature=0.5)``;
- **platform** — ``backend:device`` (plus dtype when a report mixes dtypes, plus the run when it mixes runs).

Pooling across platforms: backends measure the same statistical quantity with independent draws, so the
variance shown in a leaderboard is the replicate-weighted mean of the platforms' estimates, with standard
error ``sqrt(sum w_i^2 se_i^2) / sum w_i``; the pooled ``variance_per_eval`` is that variance (and interval) times
the cell's evaluations per estimate (:func:`evals_per_estimate`: a count, equal on every platform); bias is taken
from the platform with the largest ``bias_z`` (the conservative choice).  The cross-backend agreement table tests whether pooling was legitimate.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.results.ranking import RANK_COLUMNS
from harness.runs.store import load_run
from harness.stats.metrics import (
    METRIC_KEYS,
    VERDICT_BIASED,
    VERDICT_UNJUDGED,
    Z95,
    bias_verdict,
    bonferroni_z,
    efficiency_interval,
    family_levels,
    rounding_level,
)

NUMERIC_COLS = (
    "exact_grad",
    *METRIC_KEYS,
    "time_median_s",
    "time_iqr_s",
    "compile_time_s",
    "time_samples",
    "efficiency",
    "efficiency_ci_low",
    "efficiency_ci_high",
    "variance_per_eval",  # variance × (f_evals + grad_evals): runs made before issue 19 lack it (NaN)
    "variance_per_eval_ci_low",
    "variance_per_eval_ci_high",
    "nan_fraction",
    "n_replicates",
    "n_replicates_used",
    "samples_to_snr1",
    "exact_abs_err",
    "variance_rel_halfwidth",
    "tail_index",
    "bias_p",
    "bias_p_judged",
)
STRING_DEFAULTS = {"device": "cpu", "dtype": "float64", "family": "", "exact_method": "", "param": "?"}
INSTANCE_KEYS = ["group", "setting", "dim"]
POOL_KEYS = ["group", "setting", "dim", "param", "config", "n_samples"]


@dataclass
class RunInfo:
    """One loaded run: its directory, metadata and row count."""

    run_dir: Path
    run_id: str
    meta: dict[str, Any]
    n_rows: int
    extra: dict[str, Any] = field(default_factory=dict)


def _fmt_num(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _unique_ids(ids: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for i in ids:
        n = seen.get(i, 0)
        seen[i] = n + 1
        out.append(i if n == 0 else f"{i}#{n + 1}")
    return out


def load_runs(run_dirs: list[Path]) -> tuple[pd.DataFrame, list[RunInfo]]:
    """Concatenate the runs' results (normalized) and return per-run info; run ids are made unique."""
    frames, infos = [], []
    metas = []
    for d in run_dirs:
        df, meta = load_run(d)
        metas.append((Path(d), df, meta))
    ids = _unique_ids([str(m.get("run_id") or p.name) for p, _, m in metas])
    for rid, (path, df, meta) in zip(ids, metas):
        df = df.copy()
        df["run_id"] = rid
        if not df.empty:
            df["oracle"] = oracle_flags(df, meta.get("estimators") or ())
        frames.append(df)
        infos.append(RunInfo(run_dir=path, run_id=rid, meta=meta, n_rows=len(df)))
    nonempty = [f for f in frames if not f.empty]
    df = pd.concat(nonempty, ignore_index=True, sort=False) if nonempty else pd.DataFrame()
    return normalize(df, multi_run=len(infos) > 1), infos


def declared_oracles(catalog: Iterable[Mapping[str, Any]]) -> set[str]:
    """Names a run's catalog (``meta.json`` ``estimators``: one declaration summary per name × backend) declares
    ``oracle``: baselines that use the exact answer, shown as references and never recommended."""
    return {str(e.get("name")) for e in catalog if isinstance(e, Mapping) and e.get("oracle") is True}


def oracle_flags(df: pd.DataFrame, catalog: Iterable[Mapping[str, Any]] = ()) -> pd.Series:
    """The rows' declared ``oracle`` flags: the rows' column where the run recorded it, else the run's catalog, else
    False — never the estimator's name."""
    named = declared_oracles(catalog)
    from_catalog = df["estimator"].map(lambda n: n in named).astype(bool)
    if "oracle" not in df.columns:
        return from_catalog
    col = df["oracle"].map(lambda v: None if v is None or (isinstance(v, float) and math.isnan(v)) else bool(v))
    return col.where(col.notna(), from_catalog).astype(bool)


def hyper_cols(df: pd.DataFrame) -> list[str]:
    return sorted(c for c in df.columns if c.startswith("h_"))


def _hyper_label(row: dict[str, Any], cols: list[str]) -> str:
    parts = []
    for c in cols:
        v = row[c]
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        parts.append(f"{c[2:]}={_fmt_num(v)}")
    return ", ".join(parts)


def _setting_label(problem: str, row: dict[str, Any], ocols: list[str]) -> str:
    base = re.sub(r"/D=\d+$", "", str(problem))
    ops = [f"{c[2:]}={_fmt_num(row[c])}" for c in ocols if pd.notna(row[c])]
    return base + (f" [{', '.join(ops)}]" if ops else "")


def normalize(df: pd.DataFrame, multi_run: bool = False) -> pd.DataFrame:
    """Fill columns missing in older runs and derive group/setting/config/platform labels."""
    if df.empty:
        return df
    df = df.copy()
    for c in NUMERIC_COLS:
        if c not in df.columns:
            df[c] = np.nan
        df[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
    for c, v in STRING_DEFAULTS.items():
        if c not in df.columns:
            df[c] = v
        df[c] = df[c].fillna(v).astype(str)
    for c in ("estimator", "backend", "distribution", "objective", "suite"):
        if c not in df.columns:
            df[c] = "?"
        df[c] = df[c].fillna("?").astype(str)
    if "dim" not in df.columns:
        df["dim"] = 1
    if "n_samples" not in df.columns:
        df["n_samples"] = 1
    df["dim"] = pd.to_numeric(df["dim"], errors="coerce").fillna(1).astype(int)
    df["n_samples"] = pd.to_numeric(df["n_samples"], errors="coerce").fillna(1).astype(int)
    if "problem" not in df.columns:
        df["problem"] = df["distribution"] + "/" + df["objective"] + "/D=" + df["dim"].astype(str)
    if "unbiased" not in df.columns:
        df["unbiased"] = np.nan
    df["unbiased"] = df["unbiased"].map(lambda v: None if pd.isna(v) else bool(v)).astype(object)
    # variance SE from the CI when an older run lacks it
    miss = df["variance_se"].isna() & df["variance_ci_high"].notna()
    df.loc[miss, "variance_se"] = (df.loc[miss, "variance_ci_high"] - df.loc[miss, "variance_ci_low"]) / (2 * Z95)
    miss = df["efficiency"].notna() & (df["efficiency_ci_low"].isna() | df["efficiency_ci_high"].isna())
    if miss.any():  # older runs: the one efficiency interval, from the variance interval and the time's SE
        m = df[miss]
        lo = m["variance_ci_low"].fillna((m["variance"] - Z95 * m["variance_se"]).clip(lower=0.0))
        hi = m["variance_ci_high"].fillna(m["variance"] + Z95 * m["variance_se"])
        _, elo, ehi = efficiency_interval(m["variance"], lo, hi, m["time_median_s"], m["time_iqr_s"], m["time_samples"])
        df.loc[miss, "efficiency_ci_low"], df.loc[miss, "efficiency_ci_high"] = elo, ehi
    hcols = hyper_cols(df)
    ocols = sorted(c for c in df.columns if c.startswith("o_"))
    df["hyper"] = [_hyper_label(r, hcols) for r in df[hcols].to_dict("records")] if hcols else ""
    df["identity"] = (
        df["estimator"]
        + "|"
        + df["backend"]
        + ":"
        + df["device"]
        + "|"
        + df["problem"].astype(str)
        + "|L="
        + df["n_samples"].astype(str)
        + "|"
        + df["dtype"]
        + "|"
        + df["hyper"]
    )
    if "cell_key" not in df.columns:
        df["cell_key"] = np.nan
    df["key_derived"] = df["cell_key"].isna()
    df["cell_key"] = df["cell_key"].astype(object).where(~df["key_derived"], df["identity"]).astype(str)
    df["config"] = [e if not h else f"{e} ({h})" for e, h in zip(df["estimator"], df["hyper"])]
    df["group"] = df["distribution"] + " × " + df["objective"]
    df["setting"] = [_setting_label(p, r, ocols) for p, r in zip(df["problem"], df[ocols].to_dict("records"))]
    plat = df["backend"] + ":" + df["device"]
    if df["dtype"].nunique() > 1:
        plat = plat + ":" + df["dtype"]
    if multi_run:
        plat = df["run_id"].astype(str) + " · " + plat
    df["platform"] = plat
    dev = df["device"] + (":" + df["dtype"] if df["dtype"].nunique() > 1 else "")
    df["device_key"] = (df["run_id"].astype(str) + " · " + dev) if multi_run else dev
    eps = df["dtype"].map(lambda t: float(np.finfo(t).eps) if t in ("float16", "float32", "float64") else 2.2e-16)
    scale = df["exact_grad"].abs().fillna(0) + df["grad_mean"].abs().fillna(0)
    df["exact_est"] = df["variance"].notna() & (df["variance"] <= rounding_level(eps, 0.0, scale) ** 2 + 1e-30)
    return _reliability(df)


def _flag(df: pd.DataFrame, col: str, default: bool) -> pd.Series:
    """A boolean column that older runs may lack or hold as None/NaN (missing -> ``default``)."""
    if col not in df.columns:
        return pd.Series(default, index=df.index, dtype=bool)
    return df[col].map(lambda v: default if v is None or (isinstance(v, float) and math.isnan(v)) else bool(v))


def _reliability(df: pd.DataFrame) -> pd.DataFrame:
    """Derive ``unreliable``, ``capped``, ``oracle``, ``bias_verdict``, ``bias_detected`` and ``bias_unjudged``.

    A variance is unreliable when its interval is not valid (``variance_ci_valid`` False, e.g. heavy tails),
    a heavy tail was detected (``heavy_tail`` non-empty) or its 95% CI half-width is ≥ 100% of the value; an
    unreliable variance is never called best.  Bias: :func:`harness.stats.metrics.bias_verdict` at the per-row level
    of :func:`harness.stats.metrics.family_levels` — the family is the distinct cells judged (``POOL_KEYS``, not platform
    duplicates, not estimators declared biased); ``bias_detected`` ("biased") and ``bias_unjudged`` ("cannot
    judge": a significant p-value the tails do not let the test stand behind).  Runs made before the bias test
    existed: ``bias_z`` above the Bonferroni threshold over the report's coordinates; before ``bias_p_judged``
    existed: ``bias_p`` alone.
    """
    miss = df["variance_rel_halfwidth"].isna() & (df["variance"] > 0)
    df.loc[miss, "variance_rel_halfwidth"] = Z95 * df.loc[miss, "variance_se"] / df.loc[miss, "variance"]
    df["heavy_tail"] = df["heavy_tail"].fillna("").astype(str) if "heavy_tail" in df.columns else ""
    df["variance_ci_valid"] = _flag(df, "variance_ci_valid", True)
    df["capped"] = _flag(df, "precision_capped", False)
    wide = df["variance_rel_halfwidth"] >= 1.0
    df["tail_flag"] = ~df["variance_ci_valid"] | (df["heavy_tail"] != "")
    df["unreliable"] = (df["tail_flag"] | wide) & ~df["exact_est"]
    df["oracle"] = _flag(df, "oracle", False)  # declared (load_runs fills older runs from their catalog)
    df["bias_verdict"] = ""
    if df["bias_p"].notna().any():  # the one bias verdict (harness.stats.metrics)
        p = df["bias_p"]
        judged = p.notna() & (df["unbiased"] != False)  # noqa: E712  (declared-biased estimators are not tested)
        level = family_levels(_cells(df).to_numpy(), judged.to_numpy())
        verdict = bias_verdict(p.to_numpy(), df["bias_p_judged"].fillna(p).to_numpy(), level)
        df["bias_verdict"] = np.where(judged, verdict, "")
    else:  # runs made before the bias test existed
        df.loc[df["bias_z"].fillna(0.0) > bias_threshold(df), "bias_verdict"] = VERDICT_BIASED
    df["bias_detected"] = df["bias_verdict"] == VERDICT_BIASED
    df["bias_unjudged"] = df["bias_verdict"] == VERDICT_UNJUDGED
    return df


def _cells(df: pd.DataFrame) -> pd.Series:
    """Each row's cell without its platform (backend, device, dtype, run): the bias verdicts' family members."""
    return df[POOL_KEYS].astype(str).agg("|".join, axis=1)


def unjudged(d: pd.DataFrame) -> pd.Series:
    """Rows whose bias cannot be judged (False where a frame predates the column)."""
    if "bias_unjudged" not in d.columns:
        return pd.Series(False, index=d.index)
    return d["bias_unjudged"].fillna(False).astype(bool)


def bias_family(df: pd.DataFrame) -> int:
    """Number of distinct cells whose bias was judged (the multiple-testing family of the report's verdicts)."""
    if df.empty or "bias_verdict" not in df.columns:
        return 0
    judged = df["bias_verdict"] != ""
    return int(_cells(df[judged]).nunique()) if judged.any() else 0


def available(d: pd.DataFrame, rank_by: str) -> bool:
    """Whether the rows carry the measure ``rank_by`` ranks by (runs made before issue 19 lack ``variance_per_eval``;
    a run with timing off has no ``efficiency``)."""
    col = RANK_COLUMNS[rank_by]
    return not d.empty and col in d.columns and bool(np.isfinite(pd.to_numeric(d[col], errors="coerce")).any())


def evals_per_estimate(d: pd.DataFrame) -> pd.Series:
    """Evaluations (f + ∂f) per L-sample estimate of each row: the ``evals`` column where the run has it, else
    ``variance_per_eval / variance``; NaN for runs made before the counts existed.  A count: equal on every platform."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (d["variance_per_eval"] / d["variance"]).where(d["variance"] > 0)
    if "evals" not in d.columns:
        return ratio
    return pd.to_numeric(d["evals"], errors="coerce").astype(float).fillna(ratio)


def pool_platforms(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (instance, param, config, L): variance pooled over platforms (see module docstring)."""
    if df.empty:
        return df
    d = df.copy()
    d["_w"] = d["n_replicates_used"].fillna(d["n_replicates"]).fillna(1.0).clip(lower=1.0)
    d["_wv"] = d["_w"] * d["variance"]
    d["_w2se2"] = (d["_w"] * d["variance_se"].fillna(0.0)) ** 2
    d["_bz"] = d["bias_z"].fillna(-1.0)
    d["_evals"] = evals_per_estimate(d)  # a count: the same on every platform
    keys = POOL_KEYS
    g = d.groupby(keys, sort=False, dropna=False)
    agg = g.agg(
        w=("_w", "sum"),
        wv=("_wv", "sum"),
        w2se2=("_w2se2", "sum"),
        n_platforms=("platform", "nunique"),
        estimator=("estimator", "first"),
        hyper=("hyper", "first"),
        family=("family", "first"),
        unbiased=("unbiased", "first"),
        nan_fraction=("nan_fraction", "max"),
        exact_grad=("exact_grad", "first"),
        problem=("problem", "first"),
        exact_est=("exact_est", "all"),
        tail_flag=("tail_flag", "any"),
        capped=("capped", "any"),
        oracle=("oracle", "first"),
        bias_detected=("bias_detected", "any"),
        bias_unjudged=("bias_unjudged", "any"),
        evals=("_evals", "median"),
    )
    agg["variance"] = agg["wv"] / agg["w"]
    agg["variance_se"] = np.sqrt(agg["w2se2"]) / agg["w"]
    agg["variance_ci_low"] = (agg["variance"] - Z95 * agg["variance_se"]).clip(lower=0.0)
    agg["variance_ci_high"] = agg["variance"] + Z95 * agg["variance_se"]
    for c in ("variance", "variance_ci_low", "variance_ci_high"):  # equal evaluations: pooled variance × evals
        agg[c.replace("variance", "variance_per_eval")] = agg[c] * agg["evals"]
    wide = Z95 * agg["variance_se"] >= agg["variance"]  # the pooled interval is ±100% or wider
    agg["unreliable"] = (agg["tail_flag"] | wide) & ~agg["exact_est"]
    agg["bias_unjudged"] &= ~agg["bias_detected"]  # one platform detected it: biased
    worst = d.loc[g["_bz"].idxmax().values, keys + ["bias", "bias_ci_low", "bias_ci_high", "bias_z"]]
    out = agg.reset_index().merge(worst, on=keys, how="left")
    return out.drop(columns=["w", "wv", "w2se2", "tail_flag"])


def bias_threshold(df: pd.DataFrame) -> float:
    """Flag threshold for ``bias_z``: Bonferroni over every coordinate tested (rows × dim, approximately)."""
    return bonferroni_z(int(df["dim"].clip(lower=1).sum()) if not df.empty else 1)


def agreement(df: pd.DataFrame) -> pd.DataFrame:
    """Pairwise cross-platform variance comparisons of the same cell (same instance, config, L, param).

    ``z = |v_a - v_b| / sqrt(se_a^2 + se_b^2 + floor^2)`` (the floor, 1e-9 of the variance or
    (1e-6 |exact grad|)^2, keeps exact estimators' rounding-level variances from being flagged); ``outside_ci`` when z > 1.96 (the 95% CI of the difference
    excludes 0), ``significant`` after Bonferroni over all comparisons in the report.
    """
    if df.empty:
        return pd.DataFrame()
    cols = ["platform", "variance", "variance_se", "bias_z", "unbiased", "exact_grad"]
    d = df[POOL_KEYS + cols].drop_duplicates(POOL_KEYS + ["platform"])
    m = d.merge(d[POOL_KEYS + cols[:4]], on=POOL_KEYS, suffixes=("_a", "_b"))
    m = m[m["platform_a"] < m["platform_b"]].reset_index(drop=True)
    if m.empty:
        return pd.DataFrame()
    va, vb = m["variance_a"], m["variance_b"]
    g = m["exact_grad"].where(np.isfinite(m["exact_grad"]), 0.0)
    floor = np.maximum(np.maximum(1e-9 * np.maximum(va.abs(), vb.abs()), (1e-6 * g.abs()) ** 2), 1e-30)
    se = np.sqrt(m["variance_se_a"].fillna(0.0) ** 2 + m["variance_se_b"].fillna(0.0) ** 2 + floor**2)
    out = m[POOL_KEYS + ["platform_a", "platform_b", "variance_a", "variance_b", "unbiased"]].copy()
    out["se_a"], out["se_b"] = m["variance_se_a"], m["variance_se_b"]
    out["z_signed"] = (va - vb) / se
    out["z"] = out["z_signed"].abs()
    out["bias_z_a"], out["bias_z_b"] = m["bias_z_a"], m["bias_z_b"]
    zc = bonferroni_z(len(out))
    out["outside_ci"] = out["z"] > Z95
    out["significant"] = out["z"] > zc
    out.attrs["z_bonferroni"] = zc
    return out


def instances(df: pd.DataFrame) -> list[tuple[str, str, int]]:
    """(group, setting, dim) in report order."""
    keys = df[INSTANCE_KEYS].drop_duplicates().sort_values(INSTANCE_KEYS)
    return [tuple(r) for r in keys.itertuples(index=False)]  # type: ignore[misc]


def config_order(df: pd.DataFrame) -> list[str]:
    """Configs ordered: unbiased first, then by family and name (stable colors across figures)."""
    c = df[["config", "family", "unbiased"]].drop_duplicates("config").copy()
    c["_b"] = c["unbiased"].map(lambda v: 0 if v is True else (1 if v is None else 2))
    return list(c.sort_values(["_b", "family", "config"])["config"])


def precision_summary(df: pd.DataFrame) -> dict[str, Any]:
    """Achieved variance precision: relative 95% CI half-width of the variance over all rows."""
    rh = df["variance_rel_halfwidth"] if "variance_rel_halfwidth" in df else pd.Series(dtype=float)
    rh = rh.replace([np.inf, -np.inf], np.nan).dropna()
    capped = int(df["precision_capped"].fillna(False).astype(bool).sum()) if "precision_capped" in df else 0
    if rh.empty:
        return {"median": math.nan, "p90": math.nan, "max": math.nan, "capped": capped}
    return {"median": float(rh.median()), "p90": float(rh.quantile(0.9)), "max": float(rh.max()), "capped": capped}


def pareto_mask(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Points not dominated (no other point at least as good in both and strictly better in one)."""
    n = len(x)
    keep = np.ones(n, dtype=bool)
    for i in range(n):
        dom = (x <= x[i]) & (y <= y[i]) & ((x < x[i]) | (y < y[i]))
        keep[i] = not dom.any()
    return keep
