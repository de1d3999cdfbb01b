"""Built-in estimator families; each module registers NumPy, PyTorch and JAX implementations.

Shared helpers for implementations live in :mod:`estimators._common`.
"""
