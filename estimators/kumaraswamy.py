"""Kumaraswamy surrogate for Beta (in progress)."""
