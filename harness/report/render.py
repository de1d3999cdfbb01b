"""Render a report: run identity, health, overview, sections, agreement, catalog -> one self-contained HTML file.

Jinja2 templates with autoescaping (``templates/``, shipped as package data); the stylesheet and the small
inline script are included into the page, figures are inline SVG data URIs: the file opens from file://
with no network access.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from pathlib import Path
from typing import Any

import pandas as pd
import tomllib
from jinja2 import Environment, FileSystemLoader

from harness.report.catalog import catalog
from harness.report.data import RunInfo, precision_summary
from harness.report.plots_agree import qq_plot
from harness.report.sections import anchor
from harness.report.tables import esc, fmt, simple_table

TEMPLATES = Path(__file__).parent / "templates"


def env() -> Environment:
    e = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=True, trim_blocks=True, lstrip_blocks=True)
    e.filters["fmt"] = fmt
    e.filters["kib"] = lambda n: f"{n / 1024:.0f} KiB" if n < 2**20 else f"{n / 2**20:.1f} MiB"
    return e


def _duration(meta: dict[str, Any]) -> str:
    try:
        a = dt.datetime.fromisoformat(meta["started"])
        b = dt.datetime.fromisoformat(meta["finished"])
        s = (b - a).total_seconds()
        return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"
    except (KeyError, TypeError, ValueError):
        return "—"


def _suite_description(meta: dict[str, Any]) -> str:
    try:
        return str(tomllib.loads(meta.get("suite_text") or "").get("suite", {}).get("description", ""))
    except tomllib.TOMLDecodeError:
        return ""


def _requested_precision(meta: dict[str, Any]) -> Any:
    p = (meta.get("cli_args") or {}).get("precision")
    if p is None:
        try:
            p = tomllib.loads(meta.get("suite_text") or "").get("suite", {}).get("precision")
        except tomllib.TOMLDecodeError:
            p = None
    return p


def run_header(info: RunInfo, df: pd.DataFrame) -> list[tuple[str, str]]:
    """(label, value) pairs identifying a run; values are plain text (escaped by the template)."""
    m, mach = info.meta, info.meta.get("machine") or {}
    d = df[df["run_id"] == info.run_id] if not df.empty else df
    gpu = (mach.get("gpu") or {}).get("nvidia_smi") or []
    devs = "; ".join(
        f"{b}: {', '.join(f'{k}={v}' for k, v in (dv or {}).items()) or 'cpu'}"
        for b, dv in (mach.get("devices") or {}).items()
    )
    unavailable = "; ".join(
        f"{b}: {st.get('reason')}" for b, st in (mach.get("backends") or {}).items() if not st.get("available", True)
    )
    pkgs = ", ".join(f"{k} {v}" for k, v in (mach.get("packages") or {}).items() if v != "not installed")
    threads = ", ".join(f"{k}={v}" for k, v in (mach.get("threads") or {}).items() if v not in (None, ""))
    seeds = m.get("seeds") or {"suite_seed": m.get("seed")}
    prec = precision_summary(d) if not d.empty else {"median": math.nan, "p90": math.nan, "max": math.nan, "capped": 0}
    req = _requested_precision(m)
    n_untimed = int(d.drop_duplicates("cell_key")["time_median_s"].isna().sum()) if not d.empty else 0
    reps = sorted(int(x) for x in d["n_replicates"].dropna().unique()) if not d.empty else []
    return [
        ("suite", f"{m.get('suite', '?')} — {_suite_description(m)}".rstrip(" —")),
        ("run", f"{info.run_id} ({info.run_dir})"),
        (
            "status",
            f"{m.get('status', '?')}: {m.get('cells_done', '?')} of {m.get('cells_total', '?')} cells measured, "
            f"{len(m.get('skipped') or [])} skipped, {len(m.get('failed') or [])} failed",
        ),
        ("date", f"{m.get('started', '?')} → {m.get('finished') or 'unfinished'} ({_duration(m)})"),
        ("git commit", str(m.get("git_commit", "unknown"))),
        ("machine", f"{mach.get('hostname', '?')} · {mach.get('platform', '?')} · Python {mach.get('python', '?')}"),
        ("CPU", f"{mach.get('cpu_model', '?')} ({mach.get('cpu_count', '?')} logical CPUs)"),
        ("GPU", "; ".join(gpu) if gpu else "none visible"),
        ("devices", devs or "—"),
        ("unavailable backends", unavailable or "none"),
        ("libraries", pkgs or "—"),
        ("threads", threads or "—"),
        ("seeds", f"suite seed {seeds.get('suite_seed')}; {seeds.get('derivation', '')}".rstrip("; ")),
        ("replicates R", ", ".join(map(str, reps)) or "—"),
        ("dtype", ", ".join(sorted(d["dtype"].unique())) if not d.empty else "—"),
        (
            "precision",
            (f"requested {req}; " if req else "no target set; ")
            + f"reached: variance 95% CI half-width median {_pct(prec['median'])}, 90th pct {_pct(prec['p90'])}, "
            f"max {_pct(prec['max'])}" + (f"; {prec['capped']} rows capped" if prec["capped"] else ""),
        ),
        ("timing", "on" if not n_untimed else f"off for {n_untimed} cells (efficiency n/a there)"),
    ]


def _pct(v: float) -> str:
    return "—" if not math.isfinite(v) else (f"{100 * v:.2g}%" if v < 1 else f"{100 * v:.0f}%")


def health(info: RunInfo) -> dict[str, Any]:
    m = info.meta
    return {
        "run_id": info.run_id,
        "skipped": m.get("skipped") or [],
        "failed": m.get("failed") or [],
        "dropped": sorted((m.get("dropped") or {}).items(), key=lambda kv: -kv[1]),
        "failed_plugins": sorted((m.get("failed_plugins") or {}).items()),
    }


def agreement_block(agree: pd.DataFrame, figures: bool = True) -> dict[str, Any]:
    """Counts, the QQ plot of the z-values and the table of family-wise significant disagreements only."""
    if agree.empty:
        return {"n": 0}
    a = agree[agree["significant"]].sort_values("z", ascending=False)
    view = pd.DataFrame(
        {
            "": [anchor(g, s, d) for g, s, d in zip(a["group"], a["setting"], a["dim"])],
            "problem": a["setting"] + " · D=" + a["dim"].astype(str),
            "estimator": a["config"],
            "L": a["n_samples"].astype(str),
            "param": a["param"],
            "platform A": a["platform_a"],
            "variance A": [f"{fmt(v)} ±{fmt(1.96 * s, 2)}" for v, s in zip(a["variance_a"], a["se_a"])],
            "platform B": a["platform_b"],
            "variance B": [f"{fmt(v)} ±{fmt(1.96 * s, 2)}" for v, s in zip(a["variance_b"], a["se_b"])],
            "z": a["z_signed"],
            "bias z (A / B)": [f"{fmt(x, 2)} / {fmt(y, 2)}" for x, y in zip(a["bias_z_a"], a["bias_z_b"])],
        }
    )
    link = {"": lambda x: f'<a href="#{esc(x)}" aria-label="go to the problem">→</a>'}
    return {
        "n": len(agree),
        "n_out": int(agree["outside_ci"].sum()),
        "n_sig": len(a),
        "expected": 0.05 * len(agree),
        "zc": agree.attrs.get("z_bonferroni", math.nan),
        "table": simple_table(view, cls="plain agree", formatters=link) if len(a) else "",
        "qq": qq_plot(agree) if figures else None,
    }


def render(context: dict[str, Any], template: str = "report.html.j2") -> str:
    return env().get_template(template).render(**context)


def write(out: Path, html: str) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(out)
    return out


def catalog_table(df: pd.DataFrame, metas: list[dict[str, Any]]) -> Any:
    cat = catalog(df, metas)
    if cat.empty:
        return ""
    cls = pd.DataFrame({c: ["" for _ in range(len(cat))] for c in cat.columns})
    cls["unbiased"] = ["bad" if str(u).startswith("no") else "" for u in cat["unbiased"]]
    return simple_table(cat, cls, cls="plain catalog")


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def timer() -> float:
    return time.perf_counter()
