"""Machine, library and device facts recorded in every run's meta.json."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from harness.backends import BACKEND_NAMES, backend_status, get_backend
from harness.measure.timing import thread_settings

PACKAGES = ("stochgrad", "numpy", "scipy", "pandas", "pyarrow", "matplotlib", "jinja2", "torch", "jax", "jaxlib", "asv")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_commit(cwd: str | Path | None = None) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd, capture_output=True, text=True, timeout=5
        )
        if out.returncode == 0:
            return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown"


def package_versions() -> dict[str, str]:
    out = {}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = "not installed"
    return out


def gpu_info() -> dict[str, Any]:
    try:
        r = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if r.returncode == 0:
            return {"nvidia_smi": [line.strip() for line in r.stdout.splitlines() if line.strip()]}
    except (OSError, subprocess.SubprocessError):
        pass
    return {}


def gpu_frameworks() -> dict[str, Any]:
    """CUDA/cuDNN versions torch was built with and JAX's GPU platform version (only where a GPU is used)."""
    out: dict[str, Any] = {}
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
        out["torch"] = {"cuda": torch.version.cuda, "cudnn": cudnn, "devices": torch.cuda.device_count()}
    jax = sys.modules.get("jax")
    if jax is not None:
        try:
            gpus = jax.devices("gpu")
            out["jax"] = {"platform_version": gpus[0].client.platform_version, "devices": len(gpus)}
        except Exception:
            pass
    return out


def machine_info() -> dict[str, Any]:
    threads: dict[str, Any] = {"os_cpu_count": os.cpu_count(), **thread_settings()}
    devices: dict[str, Any] = {}
    for b in BACKEND_NAMES:
        be = get_backend(b)
        if be.unavailable_reason() is None:
            threads.update(be.threads())
            devices[b] = be.device_names()
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": threads,
        "devices": devices,
        "gpu": {**gpu_info(), **gpu_frameworks()},
        "backends": backend_status(),
        "packages": package_versions(),
    }
