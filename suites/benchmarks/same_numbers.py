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

``expand SUITE... OUT`` dumps what each suite expands into without running it (cell keys and the counted drop
reasons); ``compare`` on two such dumps requires identical cell keys and total drop counts per suite (reason texts,
and counts per reason, are printed where they differ but not required to match).
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


def expand_dump(suites: list[str], out: str) -> int:
    """{suite: {"cells": sorted cell keys, "dropped": {reason: count}}} for each suite file, nothing run."""
    from harness.suite.expand import expand

    got = {}
    for suite in suites:
        exp = expand(suite, confirmed=True)
        got[suite] = {"cells": sorted(c.key() for c in exp.cells), "dropped": dict(exp.dropped)}
        print(f"{suite}: {len(exp.cells)} cells, {sum(exp.dropped.values())} dropped")
    Path(out).write_text(json.dumps({"expansions": got}, indent=1, sort_keys=True))
    return 0


def compare_expansions(a: dict[str, Any], b: dict[str, Any]) -> int:
    bad = 0
    for suite in sorted(set(a) | set(b)):
        ea, eb = a.get(suite), b.get(suite)
        if ea is None or eb is None:
            print(f"{suite}: expanded on one side only")
            bad += 1
            continue
        ca, cb = set(ea["cells"]), set(eb["cells"])
        same_counts = sorted(ea["dropped"].values()) == sorted(eb["dropped"].values())
        print(
            f"{suite}: {len(ca & cb)} cell keys in common, {len(ca - cb)} only before, {len(cb - ca)} only after; "
            f"dropped {sum(ea['dropped'].values())} / {sum(eb['dropped'].values())}"
            + ("" if same_counts else " (drop counts per reason differ)")
        )
        for why in sorted(set(ea["dropped"]) ^ set(eb["dropped"])):
            print(f"    reason text {'before' if why in ea['dropped'] else 'after'}: {why!r}")
        bad += (ca != cb) + (sum(ea["dropped"].values()) != sum(eb["dropped"].values()))
    print(f"{len(set(a) | set(b))} suites, {bad} differences")
    return 1 if bad else 0


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def compare(a_path: str, b_path: str) -> int:
    """Print matched rows and every difference; 0 when keys and numbers are identical."""
    a, b = (json.loads(Path(p).read_text()) for p in (a_path, b_path))
    if "expansions" in a:
        return compare_expansions(a["expansions"], b["expansions"])
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
    e = sub.add_parser("expand", help="dump suites' expansions (cell keys, drop counts), nothing run")
    e.add_argument("suites", nargs="+")
    e.add_argument("out")
    c = sub.add_parser("compare", help="compare two dumps")
    c.add_argument("a")
    c.add_argument("b")
    args = ap.parse_args(argv)
    if args.cmd == "expand":
        return expand_dump(args.suites, args.out)
    return dump(args.suite, args.out) if args.cmd == "dump" else compare(args.a, args.b)


if __name__ == "__main__":
    sys.exit(main())
