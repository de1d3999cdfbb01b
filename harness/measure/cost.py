"""Measured cost per estimator: evaluations counted by the Context on a grid of (L, D, K), fitted to a formula.

The catalog states each estimator's cost as *measured*: for a few problems the estimator applies to, at a few
sample counts L, dimensions D and (categorical) category counts K, one small estimate is drawn through the runner
and its ``f_evals``, ``grad_evals`` and ``aux_evals`` (per L-sample estimate, counted by the Context) are read back.
Each count is then fitted exactly by a combination of the monomials 1, L, D, L·D (and K, L·K, D·K, L·D·K, K², L·K²
for categorical latents), or recognized as the support's size (K^D, min(L, K^D)); a count nothing reproduces is
reported as "not of that form" with the measured points.  Nothing here reads a declaration of cost: there is none.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from harness.measure.runner import COUNT_KEYS, MeasureRequest, estimate
from harness.problems import ProblemSpec, example_problems
from harness.registry import Implementation, applies, estimator_names, get_declaration, get_estimator

GRID_L = (2, 3, 5)
GRID_D = (1, 2, 3)
GRID_K = (2, 3, 4)
R_COUNT = 2  # replicates of each counting estimate (counts are per estimate; R only checks the division)


def count_evals(spec: Implementation, problem: Any, L: int, *, R: int = R_COUNT, jit: bool = False) -> dict[str, float]:
    """``{f_evals, grad_evals, aux_evals}`` of one L-sample estimate of ``spec`` on ``problem`` (a built problem or
    one part of a target), counted by the Context through the runner."""
    _, info = estimate(MeasureRequest(spec, problem, L=L, R=R, jit=jit))
    return {k: float(info[k]) for k in COUNT_KEYS}


@dataclass
class CostFormula:
    """One estimator's measured cost: a formula per count (or the measured points where none fits)."""

    estimator: str
    problem: str  # the problem family measured (distribution / objective)
    formulas: dict[str, str] = field(default_factory=dict)  # f_evals / grad_evals / aux_evals -> "2·L·D"
    points: list[dict[str, Any]] = field(default_factory=list)  # the measured (L, D, K, counts)
    note: str = ""

    @property
    def evals(self) -> str:
        """f_evals + grad_evals as one formula (where both fitted)."""
        f, g = self.formulas.get("f_evals", "?"), self.formulas.get("grad_evals", "?")
        if "?" in (f, g) or "not" in f or "not" in g:
            return "see f_evals, grad_evals"
        return _add_formulas(f, g)


def _basis(categorical: bool) -> list[tuple[str, Any]]:
    terms = [
        ("1", lambda L, D, K: 1),
        ("L", lambda L, D, K: L),
        ("D", lambda L, D, K: D),
        ("L·D", lambda L, D, K: L * D),
    ]
    if categorical:
        terms += [
            ("K", lambda L, D, K: K),
            ("L·K", lambda L, D, K: L * K),
            ("D·K", lambda L, D, K: D * K),
            ("L·D·K", lambda L, D, K: L * D * K),
            ("K²", lambda L, D, K: K * K),
            ("L·K²", lambda L, D, K: L * K * K),
        ]
    return terms


# counts not linear in the monomials: the support's size (enumeration of any f, samples without replacement)
NONLINEAR = {
    False: [("2^D", lambda L, D, K: 2**D), ("min(L, 2^D)", lambda L, D, K: min(L, 2**D))],
    True: [("K^D", lambda L, D, K: K**D), ("min(L, K^D)", lambda L, D, K: min(L, K**D))],
}


def fit_formula(points: list[tuple[int, int, int, float]], categorical: bool) -> str | None:
    """The exact formula (rational coefficients on :func:`_basis`, or one of :data:`NONLINEAR`) through
    ``(L, D, K, count)`` points, or None."""
    for label, fn in NONLINEAR[categorical]:
        if all(float(fn(L, D, K)) == c for L, D, K, c in points) and len({c for *_, c in points}) > 1:
            return label
    basis = _basis(categorical)
    A = np.array([[fn(L, D, K) for _, fn in basis] for L, D, K, _ in points], dtype=np.float64)
    y = np.array([c for *_, c in points], dtype=np.float64)
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    fr = [Fraction(float(c)).limit_denominator(12) for c in coef]
    if not np.allclose(A @ np.array([float(c) for c in fr]), y, rtol=1e-9, atol=1e-9):
        return None
    return _render({name: c for (name, _), c in zip(basis, fr, strict=True)})


def _render(coef: dict[str, Fraction]) -> str:
    parts = []
    for name, c in coef.items():
        if c == 0:
            continue
        mag = abs(c)
        num = "" if (mag == 1 and name != "1") else (str(mag.numerator) if mag.denominator == 1 else f"{mag}")
        term = num if name == "1" else (f"{num}·{name}" if num else name)
        parts.append(("− " if c < 0 else "+ ") + term)
    if not parts:
        return "0"
    out = " ".join(parts)
    return out[2:] if out.startswith("+ ") else "−" + out[2:]


def _add_formulas(a: str, b: str) -> str:
    if "0" in (a, b):
        return b if a == "0" else a
    if any(ch in a + b for ch in "(^"):
        return f"{a} + {b}"
    coef: dict[str, Fraction] = {}
    for s in (a, b):
        if s == "0":
            continue
        for tok in s.replace("− ", "+ -").replace("−", "-").split(" + "):
            tok = tok.strip()
            sign = -1 if tok.startswith("-") else 1
            tok = tok.lstrip("-")
            if "·" in tok and tok.split("·", 1)[0].replace("/", "").isdigit():
                c, name = tok.split("·", 1)
            elif tok.replace("/", "").isdigit():
                c, name = tok, "1"
            else:
                c, name = "1", tok
            coef[name] = coef.get(name, Fraction(0)) + sign * Fraction(c)
    order = ["1", "L", "D", "L·D", "K", "L·K", "D·K", "L·D·K", "K²", "L·K²"]
    return _render({k: coef[k] for k in order if k in coef})


def _at(ps: ProblemSpec, D: int, K: int = 0) -> ProblemSpec:
    """``ps`` at dimension D (and K categories): vector parameters are replaced by their mean (a count does not
    depend on parameter values)."""
    params = {k: (float(np.mean(v)) if np.ndim(v) else v) for k, v in ps.params.items()}
    opts = {**dict(ps.options), "categories": K} if K else dict(ps.options)
    return ProblemSpec(ps.distribution, ps.objective, D, params, ps.objective_params, opts)


def _problem_for(name: str) -> ProblemSpec | None:
    """The first shipped example problem ``name`` applies to that builds at every (D, K) of the grid."""
    decl = get_declaration(name)
    L_min = max(GRID_L[0], int(decl.min_samples or 1))
    for ps in example_problems():
        traits = ps.traits()
        if "multi_sample_bound" in decl.requires:  # counted on the problem's f as the bound's -log weight
            traits = dataclasses.replace(traits, multi_sample_bound=True)
        if not applies(decl, traits, n_samples=L_min)[0]:
            continue
        try:
            for D, K in itertools.product(GRID_D, GRID_K if ps.distribution == "categorical" else (0,)):
                _at(ps, D, K).build()
        except Exception:  # an example that does not vary (a fixed-size parameter)
            continue
        return ps
    return None


def measure_formula(name: str, backend: str | None = None) -> CostFormula:
    """Count ``name``'s evaluations on a (L, D[, K]) grid of one problem it applies to, and fit the formulas
    (``backend`` default: the first of numpy, torch, jax it has; the counts agree across backends)."""
    ps = _problem_for(name)
    if ps is None:
        return CostFormula(name, "", note="no shipped example problem at variable D applies")
    spec = get_estimator(name, backend) if backend else _first_implementation(name)
    categorical = ps.distribution == "categorical"
    L_min = int(get_declaration(name).min_samples or 1)
    Ls = [n for n in GRID_L if n >= L_min] or [L_min, L_min + 1, L_min + 3]
    what = f"{ps.distribution} / {ps.objective}" + (" (separable f)" if ps.traits().separable else "")
    if "multi_sample_bound" in get_declaration(name).requires:
        what += ", as a K-sample bound (L = K)"
    out = CostFormula(name, what)
    pts: dict[str, list[tuple[int, int, int, float]]] = {k: [] for k in COUNT_KEYS}
    for L, D, K in itertools.product(Ls, GRID_D, GRID_K if categorical else (0,)):
        problem = _at(ps, D, K).build()
        got = count_evals(spec, problem, L)
        out.points.append({"L": L, "D": D, **({"K": K} if categorical else {}), **got})
        for k in COUNT_KEYS:
            pts[k].append((L, D, K, got[k]))
    for k in COUNT_KEYS:
        fitted = fit_formula(pts[k], categorical)
        out.formulas[k] = fitted if fitted is not None else "not of the form a + b·L + c·D + d·L·D (+ K terms)"
    return out


def _first_implementation(name: str) -> Implementation:
    backends = get_declaration(name).backends
    for b in ("numpy", "torch", "jax"):
        if b in backends:
            return get_estimator(name, b)
    raise KeyError(f"estimator {name!r} has no implementation on an available backend")


def measure_formulas() -> list[CostFormula]:
    """:func:`measure_formula` for every registered estimator."""
    out = []
    for name in estimator_names():
        try:
            out.append(measure_formula(name))
        except Exception as exc:  # one estimator's failure is reported in its row, never stops the table
            out.append(CostFormula(name, "", note=f"not measured: {type(exc).__name__}: {exc}"[:200]))
    return out


def formula_table(rows: list[CostFormula]) -> str:
    """A markdown table of measured formulas."""
    lines = [
        "| estimator | measured on | f_evals | grad_evals | aux_evals | evals = f + grad |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r.note:
            lines.append(f"| `{r.estimator}` | {r.note} | | | | |")
            continue
        fm = r.formulas
        lines.append(
            f"| `{r.estimator}` | {r.problem} | {fm['f_evals']} | {fm['grad_evals']} | {fm['aux_evals']} | {r.evals} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    """``python -m harness.measure.cost``: the measured-cost table (markdown) of every estimator."""
    print(formula_table(measure_formulas()))


if __name__ == "__main__":
    main()
