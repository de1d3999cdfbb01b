"""A Cell is one measurement: estimator × backend × device × target × L (× hyperparameters).

Cells are frozen, JSON-serializable and independent: ``run_cell(Cell.from_dict(c.to_dict()))`` on any
worker gives the same result (the seed is derived from the cell's identity, not its position).  The target (a
problem or a workload at a checkpoint, :mod:`harness.targets`) is serialized under the key ``problem``, as it
always was, so cell keys and seeds are stable across versions.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from harness.problems.target import Target
from harness.targets import target_from_dict


@dataclass(frozen=True)
class Cell:
    estimator: str
    backend: str
    device: str
    target: Target  # a ProblemSpec, a WorkloadSpec, ... (harness.targets)
    n_samples: int
    n_replicates: int
    hyper: dict[str, Any] = field(default_factory=dict)
    suite: str = ""
    seed: int = 0  # the suite seed; the cell's own seed is derived in cell_seed()
    dtype: str = "float64"
    timing: bool = True
    options: dict[str, Any] = field(default_factory=dict)  # runner knobs (precision, max_memory, ...)

    def identity(self) -> dict[str, Any]:
        """The fields that define what is measured (runner knobs excluded)."""
        return {
            "estimator": self.estimator,
            "backend": self.backend,
            "device": self.device,
            "problem": self.target.to_dict(),
            "n_samples": self.n_samples,
            "hyper": dict(sorted(self.hyper.items())),
            "dtype": self.dtype,
        }

    def key(self) -> str:
        blob = json.dumps(self.identity(), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def cell_seed(self) -> int:
        """Seed derived from the suite seed and the cell identity (order- and resume-independent)."""
        h = hashlib.sha256(f"{self.seed}:{self.key()}".encode()).digest()
        return int.from_bytes(h[:8], "little") >> 2

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.identity(),
            "n_replicates": self.n_replicates,
            "suite": self.suite,
            "seed": self.seed,
            "timing": self.timing,
            "options": dict(self.options),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Cell:
        return cls(
            estimator=d["estimator"],
            backend=d["backend"],
            device=d["device"],
            target=target_from_dict(d["problem"]),
            n_samples=int(d["n_samples"]),
            n_replicates=int(d["n_replicates"]),
            hyper=dict(d.get("hyper", {})),
            suite=d.get("suite", ""),
            seed=int(d.get("seed", 0)),
            dtype=d.get("dtype", "float64"),
            timing=bool(d.get("timing", True)),
            options=dict(d.get("options", {})),
        )

    def label(self) -> str:
        hp = "".join(f" {k}={v}" for k, v in sorted(self.hyper.items()))
        return f"{self.estimator}[{self.backend}:{self.device}{hp}] {self.target.label()} L={self.n_samples}"
