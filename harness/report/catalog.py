"""The estimator catalog of a report: capabilities, hyperparameters and references of the estimators used.

A pure function of the run directories: capabilities come from each run's ``meta.json`` ``estimators`` list
(the registry as it was when the run started, one entry per name × backend), never from the live registry.
An estimator missing from that list (an older run) is described from what the results recorded (family,
unbiasedness, backends, hyperparameter values).
"""

from __future__ import annotations

from typing import Any

import pandas as pd


def _hyper_text(hyper: Any) -> str:
    """``{name: default}`` or ``{name: {default, low, high, choices, doc}}`` as ``k=default ∈ range — doc``."""
    if not isinstance(hyper, dict):
        return "—"
    parts = []
    for k, h in hyper.items():
        if not isinstance(h, dict):
            parts.append(f"{k}={h}")
            continue
        rng = ""
        if h.get("choices") is not None:
            rng = f" ∈ {list(h['choices'])}"
        elif h.get("low") is not None or h.get("high") is not None:
            rng = f" ∈ [{'' if h.get('low') is None else h['low']}, {'' if h.get('high') is None else h['high']}]"
        parts.append(f"{k}={h.get('default')}{rng}" + (f" — {h['doc']}" if h.get("doc") else ""))
    return "; ".join(parts) or "—"


def declared(metas: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Estimator name -> its declared entries (one per backend) from the runs' meta.json, first run wins."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for m in metas:
        for e in m.get("estimators") or []:
            if isinstance(e, dict) and "name" in e:
                out.setdefault(str(e["name"]), {}).setdefault(str(e.get("backend", "?")), e)
    return {k: list(v.values()) for k, v in out.items()}


def catalog(df: pd.DataFrame, metas: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per estimator appearing in ``df``, described from the runs' recorded catalog."""
    known = declared(metas)
    rows: list[dict[str, Any]] = []
    for name, g in df.groupby("estimator", sort=True):
        specs = known.get(str(name), [])
        swept = sorted(x for x in g["hyper"].unique() if x)
        in_run = ", ".join(sorted(g["backend"].unique()))
        if specs:
            s0 = specs[0]
            unb = "yes" if s0.get("unbiased") else "no (biased)"
            rows.append(
                {
                    "estimator": name,
                    "family": s0.get("family", ""),
                    "unbiased": unb + (" — oracle baseline, not implementable" if s0.get("oracle") else ""),
                    "backends (registered at run)": ", ".join(sorted(str(s.get("backend")) for s in specs)),
                    "backends (in run)": in_run,
                    "distributions": ", ".join(s0.get("distributions") or []),
                    "min L": s0.get("min_samples", "—"),
                    "requires": ", ".join(s0.get("requires") or []) or "—",
                    "hyperparameters (default)": _hyper_text(s0.get("hyperparameters")),
                    "values in run": "; ".join(swept) or "—",
                    "reference": s0.get("reference") or "—",
                }
            )
        else:
            ub = g["unbiased"].dropna()
            oracle = " — oracle baseline, not implementable" if "oracle" in g and g["oracle"].astype(bool).any() else ""
            rows.append(
                {
                    "estimator": name,
                    "family": str(g["family"].iloc[0]),
                    "unbiased": ("?" if ub.empty else ("yes" if bool(ub.iloc[0]) else "no (biased)")) + oracle,
                    "backends (registered at run)": "not recorded in meta.json",
                    "backends (in run)": in_run,
                    "distributions": ", ".join(sorted(g["distribution"].unique())),
                    "min L": "—",
                    "requires": "—",
                    "hyperparameters (default)": "—",
                    "values in run": "; ".join(swept) or "—",
                    "reference": "—",
                }
            )
    return pd.DataFrame(rows)
