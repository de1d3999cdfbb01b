"""jax's persistent compilation cache (:func:`harness.backends.jax_backend.persistent_cache`).

Each case runs fresh Python processes (the cache is configured when the JAX backend is imported): the first process
compiles and writes executables, the second loads them (jax's ``/jax/compilation_cache/cache_hits`` events) and
gives bit-identical estimates; ``off`` writes nothing; jax's own ``JAX_COMPILATION_CACHE_DIR`` wins.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("jax")

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = """
import json, jax
hits = []
jax.monitoring.register_event_listener(lambda e, **_: hits.append(e) if e.endswith("/cache_hits") else None)
import stochgrad as sg
from harness.backends import get_backend
p = sg.problem("bernoulli", objective="bernoulli_toy", dim=3, probs=0.3)
r = sg.measure("disarm", p, L=4, R=64, backend="jax", seed=7)
print(json.dumps({"hits": len(hits), "cache": get_backend("jax").threads()["jax_compilation_cache"],
                  "grad": r["grad_mean"].tolist(), "variance": r["variance"].tolist()}))
"""


def run(env: dict[str, str]) -> dict:
    base = {k: v for k, v in os.environ.items() if k not in ("STOCHGRAD_JAX_CACHE", "JAX_COMPILATION_CACHE_DIR")}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env={**base, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def entries(path: Path) -> list[Path]:
    return [p for p in path.glob("*-cache")] if path.is_dir() else []


def test_second_process_loads_what_the_first_compiled(tmp_path: Path) -> None:
    cache = tmp_path / "jax"
    first = run({"STOCHGRAD_JAX_CACHE": str(cache)})
    assert first["cache"] == str(cache)
    assert first["hits"] == 0
    written = entries(cache)
    assert written, "the first process wrote no executable"
    second = run({"STOCHGRAD_JAX_CACHE": str(cache)})
    assert second["hits"] >= 1
    assert second["grad"] == first["grad"] and second["variance"] == first["variance"]  # the same executable
    assert {p.name for p in entries(cache)} == {p.name for p in written}  # nothing compiled anew
    assert all(oct(p.stat().st_mode & 0o777) in ("0o644", "0o664", "0o666") for p in written)


def test_off_writes_nothing(tmp_path: Path) -> None:
    got = run({"STOCHGRAD_JAX_CACHE": "off", "HOME": str(tmp_path)})
    assert got["cache"] == "off" and got["hits"] == 0
    assert not any(tmp_path.rglob("*-cache"))


def test_default_directory_and_jax_own_variable(tmp_path: Path) -> None:
    got = run({"HOME": str(tmp_path)})
    assert got["cache"] == str(tmp_path / ".cache" / "stochgrad" / "jax")
    assert entries(tmp_path / ".cache" / "stochgrad" / "jax")
    own = tmp_path / "own"
    got = run({"HOME": str(tmp_path), "JAX_COMPILATION_CACHE_DIR": str(own), "STOCHGRAD_JAX_CACHE": "off"})
    assert got["cache"] == str(own)  # the user's jax setting is left alone and reported
