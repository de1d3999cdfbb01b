"""Measuring one cell: the estimator's Context, cells, the runner, timing, and the statistical check."""
