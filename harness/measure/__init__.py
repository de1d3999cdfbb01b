"""Measuring: cells, the one runner (any target), timing, the statistical check, offline measurement at a training state."""
