"""Calibration grid of harness.stats.metrics: coverage, one-sided bounds and bias-test size, whatever the tails.

Each :class:`Case` draws replicate estimates whose mean and variance are known exactly: Student-t, |Student-t|,
symmetric (±) and one-sided Pareto at tail indices 2.1 … 8, normal, exponential, lognormal (σ = 1, 1.5) and
products of 2 and 3 normals — plus the shipped Student-t ∂df cell (score function, L = 4, student_t(6, 0.5, 1),
f = Σ z², D = 2) drawn through the registry.  Sets of R replicates are drawn many at once ([S, R, C], NumPy over
sets) and summarized by exactly the code that measures a cell (``batch_summary``, ``bias_tests``):

* :func:`coverage` — fraction of sets whose *reported* variance interval covers the truth, every set counted
  (two-sided where no heavy tail is flagged, [lower bound, ∞) where it is), the flag rate, the two-sided width,
  and the one-sided bound's validity P(bound <= truth) and median bound ÷ truth on flagged sets;
* :func:`bias_size` — the bias test's false rejections on these unbiased estimates at per-row levels, raw
  (``bias_p`` < level, the verdict before issue 20) and as verdicts ("biased" / "cannot judge").

``python -m suites.benchmarks.calibration`` prints the tables of docs/notes/measurement.md ("Coverage whatever the
tails"); tests/test_calibration.py runs a fast subset and, marked ``slow``, the whole grid.  Coverage needs only
``batch_summary``, so ``--only coverage`` also measures an older harness (``PYTHONPATH=<old tree>:.``).
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import integrate, special, stats

Sampler = Callable[[np.random.Generator, tuple[int, ...]], np.ndarray]
TAIL_INDICES = (2.1, 2.5, 3.0, 3.5, 4.0, 5.0, 8.0)
R_VALUES = (2000, 20000)
CHUNK_VALUES = 4_000_000  # replicate values per chunk of sets (memory ~ a few hundred MB at most)
LEVELS = (0.05, 1e-3, 2.5e-5)  # per-row levels of the bias-size table (2.5e-5: a 2000-row report's Bonferroni)


@dataclass(frozen=True)
class Case:
    """Replicate estimates with an exact mean (per coordinate) and variance (mean over coordinates).

    ``draw(rng, (S, R))`` samples one-coordinate cases; ``draw_sets`` (S, R, seed) -> [S, R, C] overrides it."""

    name: str
    tail: float  # tail index (moments of order < tail are finite); inf: every moment finite
    mean: tuple[float, ...]
    variance: float
    draw: Sampler | None = None
    draw_sets_fn: Callable[[int, int, int], np.ndarray] | None = field(default=None, compare=False)

    def draw_sets(self, S: int, R: int, seed: int) -> np.ndarray:
        """S independent sets of R replicates, [S, R, C] float64."""
        if self.draw_sets_fn is not None:
            return self.draw_sets_fn(S, R, seed)
        assert self.draw is not None
        return np.asarray(self.draw(np.random.default_rng(seed), (S, R)), dtype=np.float64)[..., None]


def _student_t(nu: float) -> Case:
    return Case(f"student-t({nu:g})", nu, (0.0,), nu / (nu - 2), lambda rng, s: rng.standard_t(nu, s))


def _half_t(nu: float) -> Case:
    """|T|, T ~ t(ν): E|T| = 2√ν Γ((ν+1)/2) / (√π (ν−1) Γ(ν/2)), E T² = ν/(ν−2)."""
    lg = special.gammaln((nu + 1) / 2) - special.gammaln(nu / 2)
    m = 2 * math.sqrt(nu) * math.exp(lg) / (math.sqrt(math.pi) * (nu - 1))
    return Case(f"|student-t({nu:g})|", nu, (m,), nu / (nu - 2) - m * m, lambda rng, s: np.abs(rng.standard_t(nu, s)))


def _pareto(a: float) -> Case:
    """Y with P(Y > y) = y^-a (y >= 1): mean a/(a−1), variance a/((a−1)²(a−2))."""
    return Case(f"pareto({a:g})", a, (a / (a - 1),), a / ((a - 1) ** 2 * (a - 2)), lambda rng, s: rng.pareto(a, s) + 1)


def _sym_pareto(a: float) -> Case:
    """±Y, Y Pareto(a) as above with a random sign: mean 0, variance E Y² = a/(a−2)."""

    def draw(rng: np.random.Generator, s: tuple[int, ...]) -> np.ndarray:
        y = rng.pareto(a, s) + 1.0
        return np.where(rng.random(s) < 0.5, -y, y)

    return Case(f"±pareto({a:g})", a, (0.0,), a / (a - 2), draw)


def _lognormal(sigma: float) -> Case:
    e = math.exp(sigma * sigma)
    return Case(
        f"lognormal({sigma:g})", math.inf, (math.sqrt(e),), (e - 1) * e, lambda rng, s: rng.lognormal(0, sigma, s)
    )


def _normal_product(n: int) -> Case:
    """Z₁⋯Zₙ, Zᵢ standard normal: mean 0, variance 1 (tails exp(−c|x|^{2/n}): light, but not before their asymptote)."""

    def draw(rng: np.random.Generator, s: tuple[int, ...]) -> np.ndarray:
        out = rng.standard_normal(s)
        for _ in range(n - 1):
            out *= rng.standard_normal(s)
        return out

    return Case(f"normal^{n} product", math.inf, (0.0,), 1.0, draw)


LIGHT = (
    Case("normal", math.inf, (0.0,), 1.0, lambda rng, s: rng.standard_normal(s)),
    Case("exponential", math.inf, (1.0,), 1.0, lambda rng, s: rng.standard_exponential(s)),
    _lognormal(1.0),
    _lognormal(1.5),
    _normal_product(2),
    _normal_product(3),
)
HEAVY = tuple(f(a) for f in (_student_t, _half_t, _sym_pareto, _pareto) for a in TAIL_INDICES)
GRID: tuple[Case, ...] = HEAVY + LIGHT


# -- the shipped Student-t ∂df cell ------------------------------------------------------------------------------
T_PARAMS = {"df": 6.0, "loc": 0.5, "scale": 1.0}
T_L, T_D = 4, 2


def student_t_df_variance(D: int = T_D, L: int = T_L, nu: float = 6.0, mu: float = 0.5) -> float:
    """Exact variance of one coordinate of the L-sample score-function estimate of ∂ν E[Σ_d z_d²], z_d ~ t(ν, μ, 1).

    h = f(z) s(z_1), f = Σ_d z_d², s = ∂ν log p.  Independent coordinates give E h = E[z² s] and
    E h² = E[z⁴ s²] + 2(D−1) E[z²] E[z² s²] + (D−1) E[z⁴] E[s²] + (D−1)(D−2) E[z²]² E[s²]; Var = (E h² − (E h)²)/L,
    each expectation a 1-D adaptive quadrature (D = 1: 1.35991, D = 2: 1.40945; tests/test_calibration.py checks
    them against a 30-digit mpmath quadrature).  Moments of order 4 of f·s need ν > 4; ν = 6 has them."""

    def s(z: Any) -> Any:
        x2 = (z - mu) ** 2
        return 0.5 * (
            special.digamma((nu + 1) / 2)
            - special.digamma(nu / 2)
            - 1 / nu
            - np.log1p(x2 / nu)
            + (nu + 1) * x2 / (nu * (nu + x2))
        )

    def E(g: Callable[[Any], Any]) -> float:
        f = lambda z: g(z) * stats.t.pdf(z, nu, mu, 1.0)  # noqa: E731
        return sum(
            integrate.quad(f, a, b, limit=500, epsabs=0, epsrel=1e-12)[0] for a, b in ((-np.inf, mu), (mu, np.inf))
        )

    z2, z4 = E(lambda z: z**2), E(lambda z: z**4)
    z2s, z4s2, z2s2, s2 = (
        E(lambda z: z**2 * s(z)),
        E(lambda z: z**4 * s(z) ** 2),
        E(lambda z: z**2 * s(z) ** 2),
        E(lambda z: s(z) ** 2),
    )
    eh2 = z4s2 + 2 * (D - 1) * z2 * z2s2 + (D - 1) * z4 * s2 + (D - 1) * (D - 2) * z2 * z2 * s2
    return (eh2 - z2s**2) / L


def _df_cell_sets(S: int, R: int, seed: int) -> np.ndarray:
    from harness.measure.runner import MeasureRequest, estimate
    from harness.problems import ProblemSpec
    from harness.registry import get_estimator

    problem = ProblemSpec("student_t", "quadratic", T_D, T_PARAMS, {}).build()
    G, _ = estimate(MeasureRequest(get_estimator("score_function", "numpy"), problem, L=T_L, R=S * R, seed=seed))
    return G["df"].reshape(S, R, -1)


def df_cell() -> Case:
    """The Student-t ∂df cell of suites/default.toml (tail index 3: finite variance, infinite fourth moment)."""
    return Case("student-t ∂df cell", 3.0, (-0.125,) * T_D, student_t_df_variance(), draw_sets_fn=_df_cell_sets)


CASES = {c.name: c for c in GRID}


# -- measurements ------------------------------------------------------------------------------------------------
def _seed(case: Case, R: int, salt: int) -> int:
    return (sum(map(ord, case.name)) * 1_000_003 + R * 7919 + salt) % 2**31


def _chunks(S: int, R: int, C: int) -> list[tuple[int, int]]:
    step = max(1, CHUNK_VALUES // (R * C))
    return [(a, min(step, S - a)) for a in range(0, S, step)]


def covered(lo: np.ndarray, hi: np.ndarray, truth: float) -> np.ndarray:
    """Whether each reported interval contains ``truth``; an upper limit NaN (heavy tails) means [lo, ∞)."""
    return (lo <= truth) & (np.isnan(hi) | (truth <= hi))


@dataclass
class Coverage:
    """Coverage of the reported variance interval over S sets of R replicates (every set counted)."""

    case: str
    R: int
    S: int
    flagged: float  # fraction of sets flagged heavy-tailed (one-sided bound reported)
    coverage: float  # fraction of sets whose reported interval covers the exact variance
    coverage_unflagged: float  # among sets that report a two-sided interval
    width: float  # median relative width (high − low)/truth of the two-sided intervals
    widening: float  # median, over the two-sided sets, of their width ÷ the plain Hall interval's on the same set
    bound_valid: float  # P(bound <= truth) among flagged sets
    bound_median: float  # median bound ÷ truth among flagged sets
    seconds: float

    @property
    def se(self) -> float:
        """Monte Carlo standard error of ``coverage``."""
        return math.sqrt(max(self.coverage * (1 - self.coverage), 0.0025) / self.S)


def coverage(case: Case, R: int, S: int, salt: int = 0) -> Coverage:
    """Draw S sets of R replicates and summarize each with ``harness.stats.metrics.batch_summary``; the plain Hall interval
    of the per-replicate variance statistic (``mean_interval``, the two-sided interval before issue 20) on the same
    sets gives ``widening``."""
    from harness.stats.metrics import batch_summary, mean_interval

    t0 = time.perf_counter()
    lo, hi, flag, hall = [], [], [], []
    mean = np.asarray(case.mean)
    for a, s in _chunks(S, R, len(mean)):
        G = case.draw_sets(s, R, _seed(case, R, salt) + a)
        res = batch_summary(G, mean)
        lo.append(res["variance_ci_low"])
        hi.append(res["variance_ci_high"])
        flag.append(np.asarray(res["heavy"]) > 0)
        dev = G - G.mean(1, keepdims=True)
        _, _, hlo, hhi = mean_interval((dev * dev).mean(-1) * (R / (R - 1)))
        hall.append(hhi - np.maximum(hlo, 0.0))
    lo_a, hi_a, fl = np.concatenate(lo), np.concatenate(hi), np.concatenate(flag)
    hall_w = np.concatenate(hall)
    v = case.variance
    cov = covered(lo_a, hi_a, v)
    two = ~fl
    nan = math.nan
    return Coverage(
        case.name,
        R,
        S,
        float(fl.mean()),
        float(cov.mean()),
        float(cov[two].mean()) if two.any() else nan,
        float(np.median((hi_a[two] - lo_a[two]) / v)) if two.any() else nan,
        float(np.median((hi_a[two] - lo_a[two]) / hall_w[two])) if two.any() else nan,
        float(np.mean(lo_a[fl] <= v)) if fl.any() else nan,
        float(np.median(lo_a[fl]) / v) if fl.any() else nan,
        time.perf_counter() - t0,
    )


@dataclass
class Size:
    """False rejections of the bias test on unbiased replicates: counts per per-row level."""

    case: str
    R: int
    S: int
    raw: dict[float, int]  # bias_p < level: the verdict before issue 20
    biased: dict[float, int]  # verdict "biased" (bias_p_judged < level)
    unjudged: dict[float, int]  # verdict "cannot judge"
    seconds: float

    def ratio(self, level: float, kind: str = "biased") -> float:
        """Rejection rate ÷ nominal level."""
        return getattr(self, kind)[level] / (self.S * level)

    def upper(self, level: float, kind: str = "biased") -> float:
        """One-sided 95% upper bound of the rejection rate ÷ nominal (exact Poisson)."""
        return float(stats.chi2.ppf(0.95, 2 * (getattr(self, kind)[level] + 1)) / 2) / (self.S * level)


def bias_size(case: Case, R: int, S: int, levels: tuple[float, ...] = LEVELS, salt: int = 1) -> Size:
    """Draw S sets and count bias-test rejections and verdicts (``harness.stats.metrics.bias_tests``, ``bias_verdict``)."""
    from harness.stats.metrics import bias_tests, bias_verdict

    t0 = time.perf_counter()
    mean = np.asarray(case.mean)
    p, pj = [], []
    for a, s in _chunks(S, R, len(mean)):
        res = bias_tests(case.draw_sets(s, R, _seed(case, R, salt) + a), mean)
        p.append(res["bias_p"])
        pj.append(res["bias_p_judged"])
    p_a, pj_a = np.concatenate(p), np.concatenate(pj)
    raw, biased, unjudged = {}, {}, {}
    for lv in levels:
        verdict = bias_verdict(p_a, pj_a, lv)
        raw[lv] = int(np.sum(p_a < lv))
        biased[lv] = int(np.sum(verdict == "biased"))
        unjudged[lv] = int(np.sum(verdict == "cannot judge"))
    return Size(case.name, R, S, raw, biased, unjudged, time.perf_counter() - t0)


# -- tables --------------------------------------------------------------------------------------------------------
def _cell(name: str) -> str:
    """A case name inside a markdown table cell (|student-t(ν)| holds pipes)."""
    return name.replace("|", "\\|")


def coverage_table(rows: list[Coverage]) -> str:
    out = [
        "| case | R | sets | flagged | coverage (all sets) | two-sided coverage | two-sided width ÷ truth | "
        "width ÷ plain Hall | bound ≤ truth | median bound ÷ truth |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    f = lambda x, d=3: "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{d}f}"  # noqa: E731
    for r in rows:
        out.append(
            f"| {_cell(r.case)} | {r.R} | {r.S} | {f(r.flagged)} | {f(r.coverage)} | {f(r.coverage_unflagged)} | "
            f"{f(r.width)} | {f(r.widening)} | {f(r.bound_valid)} | {f(r.bound_median, 2)} |"
        )
    return "\n".join(out)


def size_table(rows: list[Size], levels: tuple[float, ...] = LEVELS) -> str:
    head = " | ".join(f"{lv:g}: raw / biased / cannot judge" for lv in levels)
    out = [f"| case | R | sets | {head} |", "|---|---|---|" + "---|" * len(levels)]
    for r in rows:
        cells = []
        for lv in levels:
            cells.append(
                f"{r.ratio(lv, 'raw'):.2g} / {r.ratio(lv):.2g} (≤ {r.upper(lv):.2g}) / {r.ratio(lv, 'unjudged'):.2g}"
            )
        out.append(f"| {_cell(r.case)} | {r.R} | {r.S} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m suites.benchmarks.calibration", description=__doc__.split("\n")[0])
    ap.add_argument("--only", choices=["coverage", "size"], help="one of the two tables (default: both)")
    ap.add_argument("--sets", type=int, default=1000, help="replicate sets per case for coverage (default 1000)")
    ap.add_argument("--size-sets", type=int, default=20000, help="replicate sets per case for the bias size")
    ap.add_argument("--R", type=int, nargs="+", default=list(R_VALUES), help="replicates per set (default 2000 20000)")
    ap.add_argument("--cases", nargs="+", help="case names (default: the grid; 'cell' adds the Student-t ∂df cell)")
    ap.add_argument("--cell", action="store_true", help="add the Student-t ∂df cell")
    a = ap.parse_args(argv)
    names = a.cases or [c.name for c in GRID]
    cases = [CASES[n] for n in names if n != "cell"]
    if a.cell or "cell" in names:
        cases.append(df_cell())
    if a.only in (None, "coverage"):
        rows = []
        for R in a.R:
            for c in cases:
                rows.append(coverage(c, R, a.sets))
                print(f"# {c.name} R={R}: coverage {rows[-1].coverage:.3f} ({rows[-1].seconds:.1f} s)", flush=True)
        print(coverage_table(rows), flush=True)
    if a.only in (None, "size"):
        srows = []
        for R in a.R:
            for c in cases:
                srows.append(bias_size(c, R, a.size_sets))
                print(f"# {c.name} R={R}: size ({srows[-1].seconds:.1f} s)", flush=True)
        print(size_table(srows), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
