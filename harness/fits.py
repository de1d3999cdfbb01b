"""Fitted estimator state: the declaration a trainer saves and restores, and a keyed cache that implements it.

Some estimators fit something to their target before they estimate (REBAR and RELAX fit the temperature and
weights of their control variate).  Such an estimator declares it: ``register_estimator(..., state=...)`` with a
:class:`FittedState`, so that a training run can save the fits with its checkpoints, restore them on resume
(bit-identical curves after a kill), and drop fits it has left behind.  Nothing outside the estimator reads its
module's private state.

Key semantics.  A fit belongs to one **target** — identified by the target's identity dict,
``ctx.problem.spec.to_dict()`` (a problem's spec; in training ``{"training": <unit key>, "refit": <step>}``) — and to
the estimator's **hyperparameters** (those that change the fit).  A **scope** is a dict of identity items; a fit is in
scope when its target identity holds every item of the scope (``{}``: every fit).

* ``export(scope) -> list[dict]``: JSON-able records of the fits in scope (saved inside a checkpoint);
* ``restore(records)``: put exported fits back, so the next estimate on the same target and hyperparameters reuses
  the fit instead of fitting again;
* ``forget(scope)``: drop the fits in scope (a trainer forgets the fits of refit steps it has passed).

:class:`FitCache` implements all three for an estimator that keeps its fits in a dict: ``get``/``put`` by
(target, hyperparameters), and ``declaration()`` gives the :class:`FittedState` to register.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Record = dict[str, Any]


@dataclass(frozen=True)
class FittedState:
    """How a trainer saves, restores and drops an estimator's fits (see the module docstring for the semantics)."""

    export: Callable[[Mapping[str, Any]], list[Record]]
    restore: Callable[[list[Record]], None]
    forget: Callable[[Mapping[str, Any]], None]
    doc: str = ""

    def validate(self) -> str:
        """ "" when usable, else what is wrong (checked by ``register_estimator``)."""
        for name in ("export", "restore", "forget"):
            if not callable(getattr(self, name)):
                return f"state.{name} must be callable, got {getattr(self, name)!r}"
        return ""


def in_scope(target: Mapping[str, Any], scope: Mapping[str, Any]) -> bool:
    """Whether the target identity holds every item of ``scope``."""
    return all(k in target and target[k] == v for k, v in scope.items())


def _canon(x: Any) -> Any:
    """The JSON form of an identity (tuples become lists), so that keys and comparisons agree after a round trip."""
    return json.loads(json.dumps(x, sort_keys=True, default=str))


class FitCache:
    """An estimator's fits keyed by (target identity, hyperparameters), with export / restore / forget.

    ``to_json(fit)`` and ``from_json(record)`` convert one fit to and from a JSON-able dict; a restored fit must be
    equal to the one exported (floats survive JSON exactly)."""

    def __init__(
        self,
        name: str,
        to_json: Callable[[Any], Record],
        from_json: Callable[[Record], Any],
        doc: str = "",
    ) -> None:
        self.name, self.to_json, self.from_json, self.doc = name, to_json, from_json, doc
        self._fits: dict[str, tuple[Any, Any, Any]] = {}  # key -> (target, hyper, fit)

    @staticmethod
    def _key(target: Mapping[str, Any], hyper: Mapping[str, Any]) -> str:
        return json.dumps({"target": target, "hyper": hyper}, sort_keys=True, default=str)

    def get(self, target: Mapping[str, Any], hyper: Mapping[str, Any]) -> Any | None:
        got = self._fits.get(self._key(target, hyper))
        return None if got is None else got[2]

    def put(self, target: Mapping[str, Any], hyper: Mapping[str, Any], fit: Any) -> Any:
        t, h = _canon(dict(target)), _canon(dict(hyper))
        self._fits[self._key(t, h)] = (t, h, fit)
        return fit

    def __len__(self) -> int:
        return len(self._fits)

    def export(self, scope: Mapping[str, Any]) -> list[Record]:
        scope = _canon(dict(scope))
        return [
            {"estimator": self.name, "target": t, "hyper": h, "fit": self.to_json(f)}
            for t, h, f in self._fits.values()
            if in_scope(t, scope)
        ]

    def restore(self, records: list[Record]) -> None:
        for r in records:
            if r.get("estimator", self.name) == self.name:
                self.put(r["target"], r["hyper"], self.from_json(r["fit"]))

    def forget(self, scope: Mapping[str, Any]) -> None:
        scope = _canon(dict(scope))
        for k in [k for k, (t, _, _) in self._fits.items() if in_scope(t, scope)]:
            del self._fits[k]

    def declaration(self) -> FittedState:
        return FittedState(self.export, self.restore, self.forget, self.doc)
