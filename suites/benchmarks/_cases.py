"""Benchmark cases for asv, generated from the estimator registry and a regression suite file.

The suite (``suites/regression.toml``, or the file named by ``$STOCHGRAD_ASV_SUITE``) is expanded with
:func:`harness.suite.expand.expand`; every resulting cell becomes one combination of four asv parameters, all
stable strings:

* ``estimator`` — registered name, plus ``[k=v,...]`` when the suite sets hyperparameters;
* ``backend``   — ``backend:device`` (``numpy:cpu``, ``torch:cpu``, ``jax:cpu``, ``torch:cuda``, ``jax:gpu``);
* ``problem``   — ``distribution(params)/objective[objective params]/D=dim``, formatted here (not by the
  harness) so that a cosmetic change elsewhere never renames a benchmark;
* ``L``         — the number of samples per estimate.

asv benchmarks the cartesian product of the four lists; a combination that is not a cell (estimator not
applicable to the problem, no implementation on that backend) or whose backend/device is unavailable on
this machine raises ``NotImplementedError`` in setup, which asv records as skipped (n/a).  GPU cells
(``torch:cuda``, ``jax:gpu``) are generated only where ``nvidia-smi -L`` lists a GPU (override with
``STOCHGRAD_ASV_GPU=1``/``0``): the check runs no CUDA code, so asv's forkserver children stay clean.

Within one asv run (``$STOCHGRAD_ASV_MEMO``, a folder set by suites/benchmarks/asv_tools.py) the fixed-seed
accuracy statistics of a combination are computed once and shared by track_variance and track_bias_z.

Test-only hook: ``$STOCHGRAD_ASV_PLUGINS`` is a comma-separated list of module names or ``.py`` files that
are imported after the built-in estimators, so a plugin can register (or replace) an estimator before
the benchmarks are generated (used by the regression demo in tests/test_asv.py).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import math
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.backends import BACKEND_NAMES, get_backend
from harness.measure.cells import Cell
from harness.measure.runner import estimate, prepare, request_for
from harness.problems import ProblemSpec
from harness.registry import ensure_loaded, get_estimator
from harness.stats.metrics import BIAS_ALPHA, bias_test, summarize
from harness.suite.expand import expand

SUITE_ENV = "STOCHGRAD_ASV_SUITE"
PLUGINS_ENV = "STOCHGRAD_ASV_PLUGINS"
GPU_ENV = "STOCHGRAD_ASV_GPU"
MEMO_ENV = "STOCHGRAD_ASV_MEMO"
CODE_ROOT_ENV = "STOCHGRAD_ASV_CODE_ROOT"
DEFAULT_SUITE = Path(__file__).resolve().parents[1] / "regression.toml"
BIAS_FLOOR = -math.log10(BIAS_ALPHA)  # track_bias: -log10 p floored here; the floor means "no detectable bias"
DEVICE_ORDER = ("cpu", "cuda", "gpu")

Key = tuple[str, str, str, str]


def _fmt(v: Any) -> str:
    a = np.asarray(v, dtype=float)
    if a.ndim == 0:
        return f"{float(a):g}"
    return "[" + ",".join(f"{x:g}" for x in a.ravel()) + "]"


def problem_id(spec: ProblemSpec) -> str:
    """Stable, readable problem string: ``normal(loc=0.5,scale=1.5)/quadratic/D=2``."""
    ps = ",".join(f"{k}={_fmt(v)}" for k, v in spec.params.items())
    op = ",".join(f"{k}={_fmt(v)}" for k, v in spec.objective_params.items())
    opts = "".join(f",{k}={v}" for k, v in sorted(spec.options.items()))
    return f"{spec.distribution}({ps}{opts})/{spec.objective}" + (f"[{op}]" if op else "") + f"/D={spec.dim}"


def estimator_id(cell: Cell) -> str:
    hp = ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(cell.hyper.items()))
    return cell.estimator + (f"[{hp}]" if hp else "")


def case_key(cell: Cell) -> Key:
    return (estimator_id(cell), f"{cell.backend}:{cell.device}", problem_id(cell.target), str(cell.n_samples))


def load_plugins(spec: str | None = None) -> list[str]:
    """Import the modules / .py files named in ``$STOCHGRAD_ASV_PLUGINS`` (after the built-ins)."""
    spec = os.environ.get(PLUGINS_ENV, "") if spec is None else spec
    loaded = []
    ensure_loaded()
    for item in filter(None, (s.strip() for s in spec.split(","))):
        if item.endswith(".py"):
            name = "stochgrad_asv_plugin_" + hashlib.sha1(item.encode()).hexdigest()[:8]
            mspec = importlib.util.spec_from_file_location(name, item)
            if mspec is None or mspec.loader is None:
                raise ImportError(f"{PLUGINS_ENV}: cannot load {item}")
            mod = importlib.util.module_from_spec(mspec)
            mspec.loader.exec_module(mod)
        else:
            importlib.import_module(item)
        loaded.append(item)
    return loaded


@dataclass
class Catalog:
    """The expanded regression suite: asv parameter axes and the cells behind valid combinations."""

    suite_path: str
    suite_seed: int
    cases: dict[Key, Cell]
    estimators: list[str]
    backends: list[str]
    problems: list[str]
    n_samples: list[str]

    @property
    def params(self) -> tuple[list[str], list[str], list[str], list[str]]:
        return (self.estimators, self.backends, self.problems, self.n_samples)

    def cell(self, estimator: str, backend: str, problem: str, L: str) -> Cell:
        """The cell for a parameter combination, or ``NotImplementedError`` (asv: skipped) with why."""
        cell = self.cases.get((estimator, backend, problem, L))
        if cell is None:
            raise NotImplementedError(
                f"{estimator} on {backend} is not a cell of {Path(self.suite_path).name} for {problem}, L={L} "
                "(not applicable, not implemented on this backend, or excluded)"
            )
        reason = get_backend(cell.backend).device_error(cell.device)
        if reason:
            raise NotImplementedError(f"{backend} unavailable here: {reason}")
        return cell

    def seed(self, key: Key) -> int:
        """Fixed seed per parameter combination (independent of order and of the harness' cell hashing)."""
        h = hashlib.sha256(f"{self.suite_seed}|{'|'.join(key)}".encode()).digest()
        return int.from_bytes(h[:8], "little") >> 2


def _backend_rank(bdev: str) -> tuple[int, int, str]:
    b, _, d = bdev.partition(":")
    plat = d.partition(":")[0]
    return (DEVICE_ORDER.index(plat) if plat in DEVICE_ORDER else 9, BACKEND_NAMES.index(b), d)


def gpu_visible() -> bool:
    """Whether GPU cells are generated: ``$STOCHGRAD_ASV_GPU`` if set, else ``nvidia-smi -L`` lists a GPU."""
    forced = os.environ.get(GPU_ENV)
    if forced is not None:
        return forced.strip().lower() not in ("0", "", "false", "no")
    if not shutil.which("nvidia-smi"):
        return False
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and "GPU" in out.stdout


def check_code_root() -> None:
    """With ``$STOCHGRAD_ASV_CODE_ROOT`` set (by suites/benchmarks/asv_tools.py), fail unless that code is imported."""
    want = os.environ.get(CODE_ROOT_ENV)
    if not want:
        return
    import estimators
    import harness.registry

    for mod in (harness.registry, estimators):
        got = Path(mod.__file__ or "").resolve()
        if not got.is_relative_to(Path(want).resolve()):
            raise ImportError(f"asv benchmarks import {mod.__name__} from {got}, not from {want} (PYTHONPATH lost?)")


def build_catalog(path: str | Path | None = None, gpu: bool | None = None) -> Catalog:
    path = str(path or os.environ.get(SUITE_ENV) or DEFAULT_SUITE)
    check_code_root()
    load_plugins()
    exp = expand(path)
    gpu = gpu_visible() if gpu is None else gpu
    cases: dict[Key, Cell] = {}
    for c in exp.cells:
        if c.device != "cpu" and not gpu:
            continue
        k = case_key(c)
        if k in cases:
            raise ValueError(f"{path}: two cells map to the same asv parameters {k}")
        cases[k] = c
    problems = list(dict.fromkeys(k[2] for k in cases))
    return Catalog(
        suite_path=path,
        suite_seed=int(exp.suite.get("seed", 0)),
        cases=cases,
        estimators=sorted({k[0] for k in cases}),
        backends=sorted({k[1] for k in cases}, key=_backend_rank),
        problems=problems,
        n_samples=sorted({k[3] for k in cases}, key=int),
    )


# -- per-process memo: asv re-runs setup between timed samples, so setup must be cheap after the first --
_TIMED: dict[Key, tuple[Callable[[], None], Callable[[], None]]] = {}
_ACCURACY: dict[Key, dict[str, float]] = {}


def device_sync(backend: str, device: str) -> Callable[[], None]:
    """A global device barrier (used by the benchmarks' timer before each clock read)."""
    if backend == "torch" and device.startswith("cuda"):
        import torch

        return torch.cuda.synchronize
    return lambda: None


def timed_call(catalog: Catalog, key: Key) -> tuple[Callable[[], None], Callable[[], None]]:
    """(call, barrier): one R = 1 estimator call that blocks on its output; compiled and warmed up here."""
    if key not in _TIMED:
        cell = catalog.cell(*key)
        spec = get_estimator(cell.estimator, cell.backend)
        B = get_backend(cell.backend)
        caller = prepare(request_for(cell, spec, cell.target.build()), 1)
        fn = caller.timed

        def call() -> None:
            B.sync(fn())

        for _ in range(3):  # first call compiles (jax.jit); the next ones warm caches up
            call()
        _TIMED[key] = (call, device_sync(cell.backend, cell.device))
    return _TIMED[key]


def _memo_file(key: Key) -> Path | None:
    memo = os.environ.get(MEMO_ENV)
    if not memo:
        return None
    return Path(memo) / (hashlib.sha1("|".join(key).encode()).hexdigest() + ".json")


def accuracy(catalog: Catalog, key: Key) -> dict[str, float]:
    """Variance (summed over parameters) and bias z-score (max over coordinates) of R fixed-seed estimates."""
    memo = _memo_file(key)
    if key not in _ACCURACY and memo is not None and memo.exists():
        catalog.cell(*key)  # still skip what is unavailable
        _ACCURACY[key] = json.loads(memo.read_text())
    if key not in _ACCURACY:
        cell = catalog.cell(*key)
        problem = cell.target.build()
        t0 = time.perf_counter()
        G = _estimate_cell(catalog, key, problem)
        eps = float(np.finfo(cell.dtype).eps)
        stats = [summarize(G[k], problem.exact.grads[k], rel_eps=eps) for k in problem.param_names]
        p = min(bias_test(G[k], problem.exact.grads[k], rel_eps=eps)["bias_p"] for k in problem.param_names)
        _ACCURACY[key] = {
            "variance": float(sum(s["variance"] for s in stats)),
            "bias_z": float(max(s["bias_z"] for s in stats)),
            "bias_p": float(min(1.0, p * len(problem.param_names))),  # Bonferroni over the parameters
            "seconds": time.perf_counter() - t0,
        }
        if memo is not None:
            tmp = memo.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(_ACCURACY[key]))
            tmp.replace(memo)
    return _ACCURACY[key]


def run_estimate(catalog: Catalog, key: Key) -> Callable[[], None]:
    """A callable running one vectorized R-replicate estimate (for peakmem_)."""
    problem = catalog.cell(*key).target.build()
    problem.exact  # noqa: B018  (ground truth computed outside the measured call)

    def run() -> None:
        _estimate_cell(catalog, key, problem)

    return run


def _estimate_cell(catalog: Catalog, key: Key, problem: Any) -> dict[str, np.ndarray]:
    """The cell's fixed-seed vectorized R-replicate estimate (what track_ and peakmem_ measure)."""
    cell = catalog.cell(*key)
    req = request_for(cell, get_estimator(cell.estimator, cell.backend), problem)
    G, _ = estimate(req.with_(seed=catalog.seed(key), precision=None))
    return G
