"""What "best" is measured by: the ``rank_by`` choices, the results column each ranks by, and their labels.

Every place that names a best (first-screen verdicts, heat maps, leaderboards, workloads' "which estimator")
compares estimators at equal cost:

* ``time`` (default) — equal time on the device measured: ``efficiency`` = variance × median time per call;
* ``evals`` — equal evaluations: ``variance_per_eval`` = variance × (f_evals + grad_evals) per L-sample estimate;
* ``samples`` — equal sample count L: ``variance``; not cost-fair, always labelled "at equal L".

Precedence: an explicit argument (``stochgrad report --rank-by``, ``sg.report(..., rank_by=...)``) over the
suite's ``[suite] rank_by`` (recorded in ``meta.json``) over :data:`DEFAULT_RANK_BY`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

RANK_COLUMNS: dict[str, str] = {"time": "efficiency", "evals": "variance_per_eval", "samples": "variance"}
RANK_BY: tuple[str, ...] = tuple(RANK_COLUMNS)
DEFAULT_RANK_BY = "time"
RANK_LABELS: dict[str, str] = {"time": "at equal time", "evals": "at equal evaluations", "samples": "at equal L"}
RANK_MEASURES: dict[str, str] = {
    "time": "variance × time per call",
    "evals": "variance × evaluations (f + ∂f) per estimate",
    "samples": "variance of an L-sample estimate",
}


def rank_by_error(value: Any) -> str | None:
    """None when ``value`` is a valid ``rank_by``, otherwise the message (naming the valid choices)."""
    if isinstance(value, str) and value in RANK_COLUMNS:
        return None
    return f"unknown rank_by {value!r}; valid: {list(RANK_BY)}"


def check_rank_by(value: Any) -> str:
    """``value`` if valid, else ``ValueError`` naming the valid choices."""
    msg = rank_by_error(value)
    if msg is not None:
        raise ValueError(msg)
    return str(value)


def resolve_rank_by(given: str | None, metas: Iterable[Mapping[str, Any]] = ()) -> str:
    """The ranking in force: ``given`` (validated) > the first run's recorded ``rank_by`` > :data:`DEFAULT_RANK_BY`.

    A recorded value that is not valid (a hand-edited meta.json) is ignored, never a crash."""
    if given is not None:
        return check_rank_by(given)
    for m in metas:
        v = m.get("rank_by") if isinstance(m, Mapping) else None
        if v is not None and rank_by_error(v) is None:
            return str(v)
    return DEFAULT_RANK_BY
