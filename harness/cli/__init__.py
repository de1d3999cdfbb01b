"""The ``stochgrad`` command line (:mod:`harness.cli.main`), a thin layer over the public API :mod:`stochgrad`.

``main`` is re-exported so that console scripts generated for ``harness.cli:main`` keep working beside the
declared ``harness.cli.main:main``."""

from harness.cli.main import main

__all__ = ["main"]
