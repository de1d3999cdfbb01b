"""A small published asv dashboard for tests and the docs screenshot: two commits of a tiny suite, --quick.

``published_dashboard(tmp)`` makes a scratch git repository with two commits, benchmarks both with
``asv run --quick`` on a one-cell suite (``$STOCHGRAD_ASV_SUITE``), runs ``asv publish`` and bundles the CDN
assets (``suites.benchmarks.asv_tools.bundle_offline``); ``serve(html_dir)`` serves it on 127.0.0.1 (asv's pages
fetch their JSON, which browsers refuse from file://), as ``asv preview`` does.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from suites.benchmarks.asv_tools import VENDOR_DIR, bundle_offline

ROOT = Path(__file__).resolve().parents[2]
TINY_SUITE = """
[suite]
name = "asv-dashboard"
seed = 7
replicates = 2000

[[sweep]]
estimators = ["score_function", "score_function_rloo"]
backends = ["numpy"]
n_samples = [8]
  [[sweep.problems]]
  distribution = "bernoulli"
  params = { probs = 0.3 }
  objective = "bernoulli_toy"
  dims = [2]
"""


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    r = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r.stdout


def published_dashboard(tmp: Path) -> Path:
    """Publish a two-commit dashboard under ``tmp`` and return its html directory (assets bundled)."""
    repo = tmp / "repo"
    repo.mkdir(parents=True)
    g = ["git", "-c", "user.name=t", "-c", "user.email=t@localhost", "-c", "commit.gpgsign=false"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOCHGRAD_ASV")}
    suite = tmp / "tiny.toml"
    suite.write_text(TINY_SUITE)
    env.update(
        HOME=str(tmp),
        PYTHONPATH=str(ROOT),
        ASV_PYTHONPATH=str(ROOT),
        STOCHGRAD_ASV_CODE_ROOT=str(ROOT),
        OMP_NUM_THREADS="1",
        STOCHGRAD_ASV_GPU="0",
        STOCHGRAD_ASV_SUITE=str(suite),
    )
    _run(["git", "init", "-q"], repo, env)
    shas = []
    for msg in ("base", "next"):
        _run([*g, "commit", "-q", "--allow-empty", "-m", msg], repo, env)
        shas.append(_run(["git", "rev-parse", "HEAD"], repo, env).strip())
    lines = (ROOT / "asv.conf.json").read_text().splitlines()
    conf = json.loads("\n".join(x for x in lines if not x.strip().startswith("//")))
    conf.update(
        repo=str(repo),
        branches=["HEAD"],
        benchmark_dir=str(ROOT / "suites" / "benchmarks"),
        results_dir=str(tmp / "results"),
        html_dir=str(tmp / "html"),
        env_dir=str(tmp / "env"),
    )
    cfg = tmp / "asv.conf.json"
    cfg.write_text(json.dumps(conf))
    asv = [sys.executable, "-m", "asv"]
    _run([*asv, "machine", "--yes", "--machine", "testbox", "--config", str(cfg)], tmp, env)
    for sha in shas:
        _run(
            [
                *asv,
                "run",
                "--config",
                str(cfg),
                "--python=same",
                "--machine",
                "testbox",
                "--quick",
                "--set-commit-hash",
                sha,
            ],
            tmp,
            env,
        )
    _run([*asv, "publish", "--config", str(cfg)], tmp, env)
    bundle_offline(tmp / "html", ROOT / VENDOR_DIR)
    return tmp / "html"


@contextlib.contextmanager
def serve(html_dir: Path) -> Iterator[str]:
    """Serve ``html_dir`` on an ephemeral 127.0.0.1 port; yields the base URL."""
    handler = functools.partial(_Quiet, directory=str(html_dir))
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}/"
    finally:
        srv.shutdown()
        srv.server_close()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:  # no request log on stderr
        pass
