"""The page of recommend runs (``stochgrad recommend``): each target's pick, runner-up, ties and the race, from files.

Reads ``meta.json`` and ``recommend.json`` of each run directory (written by :mod:`harness.runs.recommend_run`
through the one run writer) and nothing else: the report stays a pure function of run directories.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from harness.report import render as R
from harness.report.tables import simple_table
from harness.runs.store import RunDirError, RunStore

CURRENCY = {"time": "equal time", "evals": "equal evaluations"}


def is_recommend_run(run_dir: str | Path) -> bool:
    """True when ``run_dir``'s meta.json says ``kind = "recommend"`` (written by ``stochgrad recommend``)."""
    try:
        return json.loads((Path(run_dir) / "meta.json").read_text()).get("kind") == "recommend"
    except (OSError, ValueError):
        return False


def load_answers(run_dir: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(meta, answers) of a recommend run; RunDirError naming the file when recommend.json is unreadable."""
    store = RunStore(run_dir, records="answers")
    meta = store.read_meta()
    meta["status"] = store.effective_status(meta)
    path = Path(run_dir) / "recommend.json"
    if not path.exists():  # killed before its first answer was tabulated: the answer records are the truth
        return meta, [r for r in store.finished().values() if r.get("status") == "ok"]
    try:
        data = json.loads(path.read_text())
        answers = list(data["answers"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RunDirError(f"{path}: recommend.json: unreadable or corrupt ({exc})") from None
    return meta, answers


def _num(x: Any) -> float:
    return math.nan if x is None else float(x)


def _factor(f: dict[str, Any] | None, pick_exact: bool) -> str:
    if not f:
        return "—"
    v, lo, hi = _num(f.get("factor")), _num(f.get("low")), _num(f.get("high"))
    if math.isnan(v):  # JSON holds no infinity: a factor over an exact (zero-variance) pick is infinite
        return "∞ (the pick has zero variance)" if pick_exact else "—"
    return f"×{v:.3g} [{lo:.3g}, {hi:.3g}]"


def summary_table(answers: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per answer: target, pick, decided, stop, runner-up and its factors at equal time and evaluations."""
    rows = []
    for a in answers:
        r = a["race"]
        exact = bool(r["pick"] and r["arms"][r["pick"]]["exact"])
        rows.append(
            {
                "target": a["label"],
                "ranked at": CURRENCY.get(a["rank_by"], a["rank_by"]),
                "pick": r["pick"] or "—",
                "decided": "yes" if r["decided"] else "no",
                "stop": r["stop_reason"],
                "rounds": len(r["rounds"]),
                "runner-up": r["runner_up"] or "—",
                "factor at equal time": _factor(r["factors"].get("time"), exact),
                "factor at equal evaluations": _factor(r["factors"].get("evals"), exact),
                "ties": ", ".join(r["ties"]) or "—",
                "lowest variance at equal L": r["leaders"].get("samples") or "—",
                "seconds": a["seconds"],
            }
        )
    return pd.DataFrame(rows)


def arms_table(a: dict[str, Any]) -> pd.DataFrame:
    """One row per arm of an answer: status, round out, replicates, variance and cost-normalised variances."""
    rows = []
    for name, arm in a["race"]["arms"].items():
        cost = arm.get("cost") or {}
        rows.append(
            {
                "estimator": name,
                "group": "unbiased" if arm["unbiased"] else "biased (never the pick)",
                "status": arm["status"],
                "round out": arm["round_out"] if arm["round_out"] is not None else "",
                "eliminated by": arm["eliminated_by"] or "",
                "replicates": arm["n_replicates"],
                "variance": _num(arm["variance"]),
                "s per call": _num(cost.get("seconds")),
                "evals per estimate": _num(cost.get("f_evals")) + _num(cost.get("grad_evals")),
                "variance × time": _num(arm["time"]["value"]),
                "variance × evals": _num(arm["evals"]["value"]),
                "bias": _num(arm["bias"]) if not arm["unbiased"] else math.nan,
                "note": arm["reason"] or arm["heavy_tail"] or "",
            }
        )
    for name, why in a["race"]["excluded"].items():
        rows.append({"estimator": name, "status": "not raced", "note": why})
    return pd.DataFrame(rows)


def page_context(run_dirs: list[str | Path]) -> dict[str, Any]:
    """What the page shows: run headers, the summary table, per answer its account and arms table."""
    runs, answers = [], []
    for d in run_dirs:
        meta, ans = load_answers(d)
        runs.append(
            f"{meta.get('run_id')}: status {meta['status']}, {len(ans)} of {meta.get('answers_total')} answers, "
            f"commit {meta.get('git_commit')}"
        )
        answers += ans
    blocks = [
        {
            "id": f"a{i}",
            "title": a["label"],
            "text": a["text"],
            "table": simple_table(arms_table(a)),
        }
        for i, a in enumerate(answers)
    ]
    return {
        "title": "stochgrad recommend — " + ", ".join(Path(d).name for d in run_dirs),
        "generated": R.now(),
        "runs": runs,
        "summary": simple_table(summary_table(answers)) if answers else None,
        "answers": blocks,
    }


def write_html(run_dirs: list[str | Path], out: str | Path) -> Path:
    """The report of recommend runs, written atomically; ``stochgrad report`` calls it for recommend runs."""
    return R.write(Path(out), R.render(page_context(run_dirs), "recommend.html.j2"))
