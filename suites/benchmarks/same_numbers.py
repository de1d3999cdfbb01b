"""Refactoring proof: a suite gives the same cell keys and variances on two checkouts (nothing asserted on time).

Run a suite with the public API on each checkout (its own ``PYTHONPATH``), dumping every row's identity and
numbers, then compare the dumps::

    PYTHONPATH=<before> python -m suites.benchmarks.same_numbers dump suites/smoke.toml before.json
    PYTHONPATH=<after>  python -m suites.benchmarks.same_numbers dump suites/smoke.toml after.json
    python -m suites.benchmarks.same_numbers compare before.json after.json

``dump`` uses a fresh results directory and, unless ``STOCHGRAD_CACHE`` is set, a fresh checkpoint cache (so
workload checkpoints are trained by the checkout under test).  ``compare`` requires the same set of
(cell_key, param) rows and bit-identical ``variance``, ``grad_mean``, ``bias`` and ``exact_grad``; it prints
the count and every difference, and exits 1 on any.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

COMPARED = ("variance", "grad_mean", "bias", "exact_grad", "n_replicates")


def dump(suite: str, out: str) -> int:
    """Run ``suite`` (seed and sizes from the file) and write {cell_key/param: numbers} as JSON to ``out``."""
    if not os.environ.get("STOCHGRAD_CACHE"):
        os.environ["STOCHGRAD_CACHE"] = tempfile.mkdtemp(prefix="same-numbers-cache-")
    import stochgrad as sg

    with tempfile.TemporaryDirectory() as tmp:
        run = sg.run(suite, out=Path(tmp) / "run", stream=sys.stderr)
        df = run.results
        status = run.meta.get("status")
    rows: dict[str, Any] = {}
    for r in df.to_dict("records"):
        key = f"{r['cell_key']}/{r['param']}"
        rows[key] = {
            "label": f"{r['estimator']}[{r['backend']}] {r['problem']} L={r['n_samples']} {r['param']}",
            **{k: (float(r[k]) if isinstance(r[k], float | int) else r[k]) for k in COMPARED if k in r},
        }
    Path(out).write_text(json.dumps({"suite": suite, "status": status, "rows": rows}, indent=1, sort_keys=True))
    print(f"{suite}: {len(rows)} rows, status {status} -> {out}")
    return 0


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def compare(a_path: str, b_path: str) -> int:
    """Print matched rows and every difference; 0 when keys and numbers are identical."""
    a, b = (json.loads(Path(p).read_text()) for p in (a_path, b_path))
    ka, kb = set(a["rows"]), set(b["rows"])
    bad = 0
    for k in sorted(ka - kb):
        print(f"only in {a_path}: {k} {a['rows'][k]['label']}")
        bad += 1
    for k in sorted(kb - ka):
        print(f"only in {b_path}: {k} {b['rows'][k]['label']}")
        bad += 1
    for k in sorted(ka & kb):
        ra, rb = a["rows"][k], b["rows"][k]
        diff = [c for c in COMPARED if not _same(ra.get(c), rb.get(c))]
        if diff:
            bad += 1
            print(f"differs: {k} {ra['label']}: " + ", ".join(f"{c} {ra.get(c)!r} != {rb.get(c)!r}" for c in diff))
    print(
        f"{a['suite']}: {len(ka & kb)} rows matched by cell_key/param, {bad} differences "
        f"(compared: {', '.join(COMPARED)}; status {a['status']} / {b['status']})"
    )
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m suites.benchmarks.same_numbers", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dump", help="run a suite and dump its rows' numbers")
    d.add_argument("suite")
    d.add_argument("out")
    c = sub.add_parser("compare", help="compare two dumps")
    c.add_argument("a")
    c.add_argument("b")
    args = ap.parse_args(argv)
    return dump(args.suite, args.out) if args.cmd == "dump" else compare(args.a, args.b)


if __name__ == "__main__":
    sys.exit(main())
