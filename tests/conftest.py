"""Shared test setup: fixed thread counts, registry loaded once, GPU/browser markers."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
# jax's persistent compilation cache stays off in tests (nothing written under ~/.cache, no state carried between
# runs); tests/test_jax_cache.py turns it on in its own processes
os.environ.setdefault("STOCHGRAD_JAX_CACHE", "off")

import pytest  # noqa: E402

from harness.registry import ensure_loaded  # noqa: E402

ensure_loaded()


def has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU (none visible)")
    for item in items:
        if "gpu" in item.keywords and not has_cuda():
            item.add_marker(skip_gpu)
