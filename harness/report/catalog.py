"""The estimator catalog of a report: capabilities, hyperparameters and references of the estimators used.

Declared capabilities come from the registry at report time (``harness.registry``); an estimator that is no
longer registered (e.g. a plugin since uninstalled) is listed from what the results recorded (family,
unbiasedness, backends, hyperparameter values).
"""

from __future__ import annotations

import contextlib
from typing import Any

import pandas as pd

from harness import registry


def _hyper_text(spec: registry.Implementation) -> str:
    parts = []
    for k, h in spec.hyperparameters.items():
        rng = ""
        if h.choices is not None:
            rng = f" ∈ {list(h.choices)}"
        elif h.low is not None or h.high is not None:
            rng = f" ∈ [{'' if h.low is None else h.low}, {'' if h.high is None else h.high}]"
        parts.append(f"{k}={h.default}{rng}" + (f" — {h.doc}" if h.doc else ""))
    return "; ".join(parts) or "—"


def catalog(df: pd.DataFrame) -> pd.DataFrame:
    """One row per estimator appearing in ``df``."""
    with contextlib.suppress(Exception):  # a broken registry must not prevent a report
        registry.ensure_loaded()
    rows: list[dict[str, Any]] = []
    for name, g in df.groupby("estimator", sort=True):
        specs = registry.implementations(glob_escape(str(name)))
        specs = [s for s in specs if s.name == name]
        swept = sorted(x for x in g["hyper"].unique() if x)
        if specs:
            s0 = specs[0]
            doc = (s0.doc or "").strip().splitlines()
            rows.append(
                {
                    "estimator": name,
                    "family": s0.family,
                    "unbiased": "yes" if s0.unbiased else "no (biased)",
                    "backends (registered)": ", ".join(s.backend for s in specs),
                    "backends (in run)": ", ".join(sorted(g["backend"].unique())),
                    "distributions": ", ".join(s0.distributions),
                    "min L": s0.min_samples,
                    "requires": ", ".join(s0.requires) or "—",
                    "hyperparameters (default, range)": _hyper_text(s0),
                    "values in run": "; ".join(swept) or "—",
                    "reference": s0.reference or "—",
                    "summary": doc[0] if doc else "",
                }
            )
        else:
            ub = g["unbiased"].dropna()
            rows.append(
                {
                    "estimator": name,
                    "family": str(g["family"].iloc[0]),
                    "unbiased": "?" if ub.empty else ("yes" if bool(ub.iloc[0]) else "no (biased)"),
                    "backends (registered)": "not registered now",
                    "backends (in run)": ", ".join(sorted(g["backend"].unique())),
                    "distributions": ", ".join(sorted(g["distribution"].unique())),
                    "min L": "—",
                    "requires": "—",
                    "hyperparameters (default, range)": "—",
                    "values in run": "; ".join(swept) or "—",
                    "reference": "—",
                    "summary": "",
                }
            )
    return pd.DataFrame(rows)


def glob_escape(name: str) -> str:
    """Escape fnmatch metacharacters so a literal estimator name is looked up exactly."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)
