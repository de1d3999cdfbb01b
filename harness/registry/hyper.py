"""Hyperparameter declarations of estimators: a default with its allowed range or choices, validated."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Hyper:
    """A hyperparameter: its default and allowed range (``low``/``high``, inclusive) or ``choices``."""

    default: Any
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] | None = None
    doc: str = ""
    integer: bool = False

    def validate(self, value: Any) -> str | None:
        """Return an error message, or None when ``value`` is acceptable."""
        if self.choices is not None:
            if value not in self.choices or isinstance(value, bool) != isinstance(self.default, bool):
                return f"must be one of {list(self.choices)}"
            return None
        if isinstance(self.default, bool) != isinstance(value, bool):
            return f"must be of type {type(self.default).__name__}"
        if isinstance(self.default, int | float) and not isinstance(value, int | float):
            return f"must be a number, got {value!r}"
        if isinstance(value, float) and not math.isfinite(value):
            return f"must be finite, got {value!r}"
        if (self.integer or type(self.default) is int) and not float(value).is_integer():
            return f"must be an integer, got {value!r}"
        if self.low is not None and value < self.low:
            return f"must be >= {self.low}"
        if self.high is not None and value > self.high:
            return f"must be <= {self.high}"
        return None

    def describe(self) -> str:
        if self.choices is not None:
            return f"{self.default} ∈ {list(self.choices)}"
        lo = "" if self.low is None else self.low
        hi = "" if self.high is None else self.high
        return f"{self.default} ∈ [{lo}, {hi}]" if (self.low, self.high) != (None, None) else f"{self.default}"
