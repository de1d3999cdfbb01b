"""Progress of a run: cells done and an ETA from the remaining cells' expected cost (learned as the run goes),
the interleaved submission order that lets the cost model see every backend early (docs/notes/scale-out.md), and
the one status line both progress displays write (a recommend race's too: harness/runs/recommend_run.py)."""

from __future__ import annotations

import shutil
import statistics
import sys
import time
from typing import Any, TextIO

from harness.measure.cells import Cell
from harness.results import CellOutcome


def _fmt_s(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class CostModel:
    """Expected seconds of a cell, learned as the run goes: the median of finished cells of the same estimator,
    backend and size L·D; else of the same estimator and backend; else of the backend; else of all cells."""

    def __init__(self) -> None:
        self.seen: dict[tuple, list[float]] = {}

    @staticmethod
    def groups(cell: Cell) -> list[tuple]:
        size = cell.n_samples * int(cell.target.fields().get("dim", 1) or 1)
        return [(cell.estimator, cell.backend, size), (cell.estimator, cell.backend), (cell.backend,), ()]

    def observe(self, cell: Cell, seconds: float) -> None:
        for g in self.groups(cell):
            self.seen.setdefault(g, []).append(seconds)

    def expected(self, cell: Cell) -> float | None:
        for g in self.groups(cell):
            if g in self.seen:
                return statistics.median(self.seen[g])
        return None


def _round_robin(queues: list[list[Any]]) -> list[Any]:
    return [q[i] for i in range(max(map(len, queues), default=0)) for q in queues if i < len(q)]


def interleave(cells: list[Cell]) -> list[Cell]:
    """Cells round-robin over backends, and within a backend over estimators (each estimator's cells in suite
    order): the cost model sees every backend and many estimators in the first cells (a JAX cell, which
    compiles, costs ~40 NumPy cells), and costly groups spread over the run and the workers."""
    by_backend: dict[str, dict[str, list[Cell]]] = {}
    for c in cells:
        by_backend.setdefault(c.backend, {}).setdefault(c.estimator, []).append(c)
    return _round_robin([_round_robin(list(ests.values())) for ests in by_backend.values()])


def bar(fraction: float, width: int = 24) -> str:
    """``[#####      ]``: a fraction in [0, 1] as a bar of ``width`` characters."""
    f = min(max(fraction, 0.0), 1.0) if fraction == fraction else 0.0
    return f"[{'#' * int(width * f):<{width}}]"


class StatusLine:
    """One live status line on a TTY (rewritten in place, cut to the terminal's width), or plain lines otherwise
    (at most one per ``every_s`` seconds, the final one always).  ``note`` writes a line that stays (a failure, an
    elimination) without breaking the live one."""

    def __init__(self, stream: TextIO | None = None, every_s: float = 5.0) -> None:
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every_s, self.last, self.live = every_s, -float("inf"), False

    def show(self, msg: str, final: bool = False) -> None:
        if self.tty:
            width = max(shutil.get_terminal_size((160, 24)).columns - 1, 20)
            self.stream.write("\r\x1b[K" + msg[:width])
            self.live = True
        elif final or time.perf_counter() - self.last >= self.every_s:
            self.stream.write(msg + "\n")
            self.last = time.perf_counter()
        self.stream.flush()

    def note(self, msg: str) -> None:
        self.stream.write(("\r\x1b[K" if self.tty and self.live else "") + msg + "\n")
        self.live = False
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self.live:
            self.stream.write("\n")
            self.stream.flush()
        self.live = False


class Progress:
    """cells done/total with ETA on stderr; a carriage-return bar on a TTY, periodic lines otherwise.

    The ETA is the remaining cells' expected cost (:class:`CostModel`) divided by the cells that run at once
    (``slots``, the workers); ``eta_check`` records, at 10% of the cells, this ETA and the old equal-cost one
    (elapsed / done × remaining), and at the end the real remaining time (meta.json).
    """

    def __init__(self, cells: list[Cell], stream: TextIO | None = None, slots: int = 1) -> None:
        stream = stream or sys.stderr
        self.total, self.stream, self.done, self.t0 = len(cells), stream, 0, time.perf_counter()
        self.remaining = {c.key(): c for c in cells}
        self.slots, self.model = max(1, slots), CostModel()
        self.line = StatusLine(stream)
        self.tty = self.line.tty
        self.eta_check: dict[str, Any] = {}

    def eta(self) -> float | None:
        costs = [self.model.expected(c) for c in self.remaining.values()]
        if not costs or any(c is None for c in costs):
            return None if costs else 0.0
        return sum(costs) / min(self.slots, len(costs))  # type: ignore[arg-type]

    def update(self, outcome: CellOutcome) -> None:
        self.done += 1
        self.remaining.pop(outcome.cell.key(), None)
        if outcome.status == "ok":
            self.model.observe(outcome.cell, outcome.seconds)
        el = time.perf_counter() - self.t0
        eta = self.eta()
        if not self.eta_check and self.done >= 0.1 * self.total and self.done < self.total:
            self.eta_check = {
                "at_cells": self.done,
                "of_cells": self.total,
                "elapsed_s": el,
                "eta_model_s": eta,
                "eta_equal_cost_s": el / self.done * (self.total - self.done),
            }
        if self.done == self.total and self.eta_check:
            self.eta_check["real_remaining_s"] = el - self.eta_check["elapsed_s"]
        pct = 100 * self.done / max(self.total, 1)
        eta_s = "?" if eta is None else _fmt_s(eta)
        msg = f"{bar(self.done / max(self.total, 1))} {self.done}/{self.total} {pct:5.1f}% elapsed {_fmt_s(el)} ETA {eta_s}"
        if outcome.status != "ok":
            self.line.note(f"  {outcome.status}: {outcome.cell.label()}: {outcome.message}")
        self.line.show(msg, final=self.done == self.total)

    def close(self) -> None:
        self.line.close()
