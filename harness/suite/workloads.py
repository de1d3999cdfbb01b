"""The ``[[sweep.workloads]]`` tables of a suite file -> WorkloadSpecs (validated, nothing trained).

::

    [[sweep.workloads]]
    name = "vae_bernoulli"                 # a registered workload
    config = { latent_dim = 10 }           # workload configuration (defaults for the rest)
    checkpoints = [0, 300, 1000]           # training steps, strictly increasing
    batch_size = 4                         # optional: examples per evaluation batch (workload default)
    batch_seed = 0                         # optional: which examples
    split = "val"                          # optional: train | val | test (workload default)
    truth = "auto"                         # optional: auto | enumeration | reference | quadrature
    per_example = true                     # optional: each example's gradient with its own f_b
"""

from __future__ import annotations

from typing import Any

from harness.targets.workload import WorkloadSpec, check_spec
from harness.training.limits import LimitError, check_checkpoint
from harness.workloads.base import WorkloadError

KEYS = {"name", "config", "checkpoints", "batch_size", "batch_seed", "split", "truth", "per_example"}


def parse_workloads(raw: Any, confirmed: bool = False) -> list[WorkloadSpec]:
    """Specs for every (table, checkpoint); raises WorkloadError with key ``[i].field``.  Training the last
    checkpoint must stay within the training limits (memory, time: harness.training.limits) unless ``confirmed``."""
    if not isinstance(raw, list) or not raw:
        raise WorkloadError("", "must be a non-empty list of [[sweep.workloads]] tables")
    out: list[WorkloadSpec] = []
    for i, t in enumerate(raw):
        w = f"[{i}]"
        if not isinstance(t, dict):
            raise WorkloadError(w, f"must be a table, got {type(t).__name__}")
        unknown = sorted(set(t) - KEYS)
        if unknown:
            raise WorkloadError(f"{w}.{unknown[0]}", f"unknown key; valid: {sorted(KEYS)}")
        if "name" not in t:
            raise WorkloadError(f"{w}.name", "missing workload name")
        cps = t.get("checkpoints", [0])
        cps = cps if isinstance(cps, list) else [cps]
        if not cps or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in cps):
            raise WorkloadError(f"{w}.checkpoints", f"must be a non-empty list of non-negative integers, got {cps!r}")
        if any(b <= a for a, b in zip(cps, cps[1:])):
            raise WorkloadError(f"{w}.checkpoints", f"steps must be strictly increasing, got {cps}")
        bs = t.get("batch_size", 0)
        if "batch_size" in t and (not isinstance(bs, int) or isinstance(bs, bool) or bs < 1):
            raise WorkloadError(
                f"{w}.batch_size", f"must be a positive integer (leave it out for the workload's default), got {bs!r}"
            )
        per_example = t.get("per_example", True)
        if not isinstance(per_example, bool):
            raise WorkloadError(f"{w}.per_example", f"must be true or false, got {per_example!r}")
        for c in cps:
            spec = WorkloadSpec(
                workload=t["name"],
                config=dict(t.get("config", {})) if isinstance(t.get("config", {}), dict) else t["config"],
                checkpoint=c,
                split=t.get("split", ""),
                batch_size=bs,
                batch_seed=t.get("batch_seed", 0),
                truth=t.get("truth", "auto"),
                per_example=per_example,
            )
            try:
                wl, cfg, _, _ = check_spec(spec)
            except WorkloadError as exc:
                key = "name" if exc.key == "workload" else exc.key
                raise WorkloadError(f"{w}.{key}", str(exc).split(": ", 1)[1]) from None
            out.append(spec)
        try:
            check_checkpoint(wl, cfg, cps[-1], confirmed)
        except LimitError as exc:
            raise WorkloadError(f"{w}.checkpoints", exc.message) from None
    return out
