"""stochgrad's harness: registry, backends, problems with exact ground truth, runner, store, report, CLI."""

__version__ = "0.1.0"
