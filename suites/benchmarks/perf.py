"""``make perf``: is stochgrad's timing right, and is its throughput near the framework's floor?

Prints markdown tables (nothing is asserted; numbers go to docs/notes/measurement.md):

1. **timing validation** — stochgrad's per-call median (``harness.measure.timing.time_call`` on the R = 1 callable
   the runner times) against ``torch.utils.benchmark.Timer.blocked_autorange`` on the *same* torch callable
   and a hand-written JAX loop (``block_until_ready`` after every call) on the same jitted callable.
   The two methods alternate ``--rounds`` times; the ratio of their medians should sit in 0.9–1.1.
2. **throughput** — time to measure one cell's variance (``estimate`` + ``summarize`` for every parameter,
   warm: compiled functions cached) against (a) a minimal hand-vectorized implementation in the same
   framework (per-replicate gradients of [R, D] leaf parameters, variance over R), (b) the noise floor (R·L·D
   standard normals in that framework and dtype) and (c) the per-replicate autograd loop a user would
   write (timed on ``--loop-reps`` replicates, scaled linearly to R).  Cells: normal(0.5, 1.5), f = z², pathwise
   and score_function, torch and jax on CPU, at (D=1, L=1, R=2e5) and (D=100, L=16, R=1e4).
3. **GPU** (only with a CUDA device): per-call time vs D, and pathwise at D = 1e7 as sample-array bytes/s
   against the card's measured device-to-device copy bandwidth.
4. **CI study** (opt-in, ``--only ci``, ~5 min): coverage of four variance-interval methods on heavy- and
   light-tailed per-sample gradient terms with exact variances (why ``harness.stats.metrics`` uses Hall's).

Run ``python -m suites.benchmarks.perf [--threads 1] [--rounds 3] [--json out.json]``.  Threads are pinned (default 1:
on a shared machine OpenMP thread pools slow small torch ops severalfold; every backend gets the same).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from harness.measure.timing import pin_threads
from harness.stats.metrics import Z95

K, LOC, SCALE = 0.0, 0.5, 1.5
C = 0.5 * math.log(2 * math.pi)


def _median_time(fn: Callable[[], Any], reps: int = 3) -> float:
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def _table(title: str, head: list[str], rows: list[list[Any]]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1e4 else f"{v:.3e}"
        return str(v)

    lines = [f"\n### {title}\n", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def _problem(D: int) -> Any:
    from harness.problems import ProblemSpec

    return ProblemSpec("normal", "quadratic", D, {"loc": LOC, "scale": SCALE}, {"k": K}).build()


# -- 1. timing validation ------------------------------------------------------------------------------
def _blocks(run_block: Callable[[int], float], block_s: float, total_s: float) -> list[float]:
    """Per-call times of blocks of calls: calibrate ``n`` calls to >= ``block_s``, repeat for ``total_s``."""
    import gc

    n = 1
    while run_block(n) < block_s:
        n *= 2
    out, t_end = [], time.perf_counter() + total_s
    gc.disable()  # as timeit and torch.utils.benchmark do
    try:
        while time.perf_counter() < t_end or len(out) < 5:
            out.append(run_block(n) / n)
    finally:
        gc.enable()
    return out


def _jax_block(fn: Callable[[], Any]) -> Callable[[int], float]:
    """A hand-written JAX timing block: ``n`` calls, each followed by ``block_until_ready``."""
    import jax

    def run(n: int) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            jax.block_until_ready(fn())
        return time.perf_counter() - t0

    return run


def timing_validation(rounds: int) -> tuple[str, list[dict]]:
    """Per-call time of the same callables by stochgrad and by a reference timer, two ways:

    - typical: stochgrad's default protocol (10 ms samples, stops once IQR/median <= 5%) vs the reference's
      own default (torch ``blocked_autorange(min_run_time=1)``; JAX: 10 ms blocks for 1 s), medians;
    - uncontended: both with ~0.5 ms blocks for 1 s, minima — robust to other processes taking the CPU.
    """
    import torch
    import torch.utils.benchmark as tb

    from harness.backends import get_backend
    from harness.measure.runner import MeasureRequest, prepare
    from harness.measure.timing import TimingConfig, time_call
    from harness.registry import get_estimator

    short = TimingConfig(min_sample_s=5e-4, target_rel_iqr=0.0, max_time_s=1.0, max_repeats=10**6)
    rows, recs = [], []
    for backend in ("torch", "jax"):
        B = get_backend(backend)
        for est in ("pathwise", "score_function"):
            for D, L in ((1, 1), (100, 16), (1000, 64)):
                caller = prepare(MeasureRequest(get_estimator(est, backend), _problem(D), L=L, R=1), cache=False)
                fn = caller.timed
                if backend == "torch":
                    timer = tb.Timer("fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
                    ref_typical = lambda: timer.blocked_autorange(min_run_time=1.0).median  # noqa: E731
                    ref_block = lambda n: timer.timeit(n).mean * n  # noqa: E731
                else:
                    ref_block = _jax_block(fn)
                    ref_typical = lambda: statistics.median(_blocks(ref_block, 0.01, 1.0))  # noqa: E731
                t: dict[str, list[float]] = {k: [] for k in ("ours", "ref", "ours_min", "ref_min")}
                for _ in range(rounds):  # interleaved
                    t["ours"].append(time_call(fn, B.sync).time_median_s)
                    t["ref"].append(ref_typical())
                    t["ours_min"].append(time_call(fn, B.sync, short).time_min_s)
                    t["ref_min"].append(min(_blocks(ref_block, 5e-4, 1.0)))
                m = {k: statistics.median(v) if k in ("ours", "ref") else min(v) for k, v in t.items()}
                name = "torch.utils.benchmark.Timer" if backend == "torch" else "hand-timed JAX loop"
                rows.append(
                    [
                        backend,
                        est,
                        D,
                        L,
                        m["ours"] * 1e6,
                        m["ref"] * 1e6,
                        m["ours"] / m["ref"],
                        m["ours_min"] * 1e6,
                        m["ref_min"] * 1e6,
                        m["ours_min"] / m["ref_min"],
                        name,
                    ]
                )
                recs.append(dict(backend=backend, estimator=est, D=D, L=L, **{f"{k}_s": v for k, v in m.items()}))
    head = [
        "backend",
        "estimator",
        "D",
        "L",
        "stochgrad median µs",
        "reference median µs",
        "ratio",
        "stochgrad min µs",
        "reference min µs",
        "ratio (min)",
        "reference",
    ]
    return _table("Per-call time (R = 1): stochgrad vs reference timers", head, rows), recs


# -- 2. throughput: hand-vectorized, noise floor, per-replicate loop -------------------------------------
def _torch_fns(est: str, R: int, L: int, D: int, loop_reps: int) -> dict[str, Callable[[], Any]]:
    import torch

    f64 = torch.float64
    gen = torch.Generator().manual_seed(0)

    def surrogate(loc: Any, scale: Any, eps: Any) -> Any:  # loc, scale [..., D]; eps [..., L, D] -> [...]
        z = loc.unsqueeze(-2) + scale.unsqueeze(-2) * eps
        if est == "pathwise":
            return ((z - K) ** 2).sum(-1).mean(-1)
        z = z.detach()
        w = ((z - K) ** 2).sum(-1)
        u = (z - loc.unsqueeze(-2)) / scale.unsqueeze(-2)
        return (w * (-0.5 * u * u - torch.log(scale.unsqueeze(-2)) - C).sum(-1)).mean(-1)

    def hand() -> Any:
        loc = torch.full((R, D), LOC, dtype=f64, requires_grad=True)
        scale = torch.full((R, D), SCALE, dtype=f64, requires_grad=True)
        eps = torch.randn((R, L, D), generator=gen, dtype=f64)
        gl, gs = torch.autograd.grad(surrogate(loc, scale, eps).sum(), [loc, scale])
        return float(gl.var(0).mean()), float(gs.var(0).mean())

    def loop() -> Any:
        out = []
        for _ in range(loop_reps):
            loc = torch.full((D,), LOC, dtype=f64, requires_grad=True)
            scale = torch.full((D,), SCALE, dtype=f64, requires_grad=True)
            eps = torch.randn((L, D), generator=gen, dtype=f64)
            out.append(torch.cat(torch.autograd.grad(surrogate(loc, scale, eps), [loc, scale])))
        return torch.stack(out).var(0).mean().item()

    return {"hand": hand, "noise": lambda: torch.randn((R, L, D), generator=gen, dtype=f64), "loop": loop}


def _jax_fns(est: str, R: int, L: int, D: int, loop_reps: int) -> dict[str, Callable[[], Any]]:
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)  # as the jax backend does: float64 like every other method

    def surrogate(P: dict, eps: Any) -> Any:
        loc, scale = P["loc"][..., None, :], P["scale"][..., None, :]
        z = loc + scale * eps
        if est == "pathwise":
            return ((z - K) ** 2).sum(-1).mean(-1)
        z = jax.lax.stop_gradient(z)
        w = ((z - K) ** 2).sum(-1)
        u = (z - loc) / scale
        return (w * (-0.5 * u * u - jnp.log(scale) - C).sum(-1)).mean(-1)

    @jax.jit
    def hand_jit(P0: dict, key: Any) -> Any:  # parameters are arguments (a constant would be folded by XLA)
        P = {k: jnp.broadcast_to(v, (R, D)) for k, v in P0.items()}
        eps = jax.random.normal(key, (R, L, D), dtype=jnp.float64)
        g = jax.grad(lambda P: surrogate(P, eps).sum())(P)
        return g["loc"].var(0, ddof=1).mean(), g["scale"].var(0, ddof=1).mean()

    noise_jit = jax.jit(lambda key: jax.random.normal(key, (R, L, D), dtype=jnp.float64))
    one = jax.jit(lambda P, key: jax.grad(surrogate)(P, jax.random.normal(key, (L, D), dtype=jnp.float64)))
    P1 = {"loc": jnp.full((D,), LOC), "scale": jnp.full((D,), SCALE)}
    keys = np.asarray(jax.random.split(jax.random.PRNGKey(1), loop_reps))
    state = {"i": 0}

    def key() -> Any:
        state["i"] += 1
        return jax.random.PRNGKey(state["i"])

    def loop() -> Any:  # what a user writes: a jitted per-replicate gradient, called R times from Python
        gs = [one(P1, k) for k in keys]
        return float(np.var([np.concatenate([np.asarray(g["loc"]), np.asarray(g["scale"])]) for g in gs], 0).mean())

    hand = lambda: [float(v) for v in hand_jit(P1, key())]  # noqa: E731
    hand(), jax.block_until_ready(noise_jit(key())), one(P1, keys[0])  # compile outside the timed region
    return {"hand": hand, "noise": lambda: jax.block_until_ready(noise_jit(key())), "loop": loop}


def throughput(rounds: int, loop_reps: int) -> tuple[str, list[dict]]:
    from harness.measure.runner import MeasureRequest, estimate
    from harness.registry import get_estimator
    from harness.stats.metrics import summarize

    rows, recs = [], []
    for D, L, R in ((1, 1, 200_000), (100, 16, 10_000)):
        problem = _problem(D)
        for backend in ("torch", "jax"):
            for est in ("pathwise", "score_function"):
                spec = get_estimator(est, backend)
                seeds = iter(range(10**6))

                def ours() -> Any:
                    G, _ = estimate(MeasureRequest(spec, problem, L=L, R=R, seed=next(seeds)))
                    return [summarize(G[k], problem.exact.grads[k]) for k in problem.param_names]

                t0 = time.perf_counter()
                ours()  # cold: includes JAX compilation of the chunk sizes (cached afterwards)
                cold = time.perf_counter() - t0
                fns = (_torch_fns if backend == "torch" else _jax_fns)(est, R, L, D, min(loop_reps, R))
                t: dict[str, list[float]] = {"ours": [], "hand": [], "noise": []}
                t_end = time.perf_counter() + 2.0
                while len(t["ours"]) < rounds or (time.perf_counter() < t_end and len(t["ours"]) < 50):
                    for k, f in (("ours", ours), ("hand", fns["hand"]), ("noise", fns["noise"])):
                        t[k].append(_median_time(f, 1))  # interleaved: machine load hits every method alike
                m = {k: statistics.median(v) for k, v in t.items()}
                loop = _median_time(fns["loop"], 1) * R / min(loop_reps, R)
                rec = dict(
                    D=D,
                    L=L,
                    R=R,
                    backend=backend,
                    estimator=est,
                    stochgrad_s=m["ours"],
                    cold_s=cold,
                    hand_s=m["hand"],
                    noise_s=m["noise"],
                    loop_s=loop,
                )
                recs.append(rec)
                rows.append(
                    [
                        f"D={D} L={L} R={R:.0e}",
                        backend,
                        est,
                        m["ours"],
                        cold,
                        m["hand"],
                        m["noise"],
                        loop,
                        m["ours"] / m["hand"],
                        m["ours"] / m["noise"],
                        loop / m["ours"],
                    ]
                )
    head = [
        "cell",
        "backend",
        "estimator",
        "stochgrad s",
        "cold s",
        "(a) hand s",
        "(b) noise s",
        "(c) loop s",
        "vs (a)",
        "vs (b)",
        "(c) / stochgrad",
    ]
    return _table("Time to measure a cell's variance (warm; cold = first call incl. compilation)", head, rows), recs


# -- 3. GPU --------------------------------------------------------------------------------------------
def gpu_tables(rounds: int) -> tuple[str, list[dict]]:
    import torch

    from harness.backends import get_backend
    from harness.measure.runner import MeasureRequest, prepare
    from harness.measure.timing import TimingConfig, time_call
    from harness.registry import get_estimator

    n = 10**7
    x = torch.randn(n, dtype=torch.float64, device="cuda")
    y = torch.empty_like(x)

    def copy() -> Any:
        return y.copy_(x)

    tc = time_call(copy, get_backend("torch").sync, TimingConfig(max_time_s=1.0)).time_median_s
    copy_bw = 2 * n * 8 / tc  # read + write
    rows, recs = [], []
    for backend, device in (("torch", "cuda"), ("jax", "gpu")):
        B = get_backend(backend)
        if B.device_error(device):
            continue
        for est in ("pathwise", "score_function"):
            for D in (10**3, 10**4, 10**5, 10**6, 10**7):
                req = MeasureRequest(get_estimator(est, backend), _problem(D), L=1, R=1, device=device)
                caller = prepare(req, cache=False)
                tm = time_call(caller.timed, B.sync, TimingConfig(max_time_s=1.0))
                bw = D * 8 / tm.time_median_s
                rec = dict(
                    backend=backend,
                    device=device,
                    estimator=est,
                    D=D,
                    time_s=tm.time_median_s,
                    compile_s=tm.compile_time_s,
                    sample_bytes_per_s=bw,
                    copy_bytes_per_s=copy_bw,
                )
                recs.append(rec)
                rows.append(
                    [
                        backend,
                        est,
                        D,
                        tm.time_median_s * 1e6,
                        tm.time_iqr_s * 1e6,
                        bw / 1e9,
                        tm.time_median_s / (2 * D * 8 / copy_bw),
                    ]
                )
    head = ["backend", "estimator", "D", "per-call µs", "IQR µs", "sample GB/s", "time / copy of the sample"]
    title = f"GPU ({torch.cuda.get_device_name(0)}; copy bandwidth {copy_bw / 1e9:.0f} GB/s), L = 1, float64"
    return _table(title, head, rows), recs


# -- 4. CI study (opt-in: --only ci) ----------------------------------------------------------------------
def ci_study(sets: int) -> tuple[str, list[dict]]:
    """Coverage of 95% variance intervals, four methods, on per-sample score-function / pathwise terms with
    exact variances (Gamma(0.3) moments by quadrature after u = z^a; Gaussian and Bernoulli in closed form)."""
    from scipy import integrate, special
    from scipy import stats as st

    from harness.stats.metrics import mean_interval

    rng = np.random.default_rng(2024)
    a, z = 0.3, Z95

    def gamma_case(f: Callable, sc: Callable) -> tuple[Callable, float]:
        def E(fn: Callable) -> float:
            dens = lambda u: fn(u ** (1 / a)) * np.exp(-(u ** (1 / a))) / (a * special.gamma(a))  # noqa: E731
            return sum(
                integrate.quad(dens, lo, hi, limit=2000, epsabs=0, epsrel=1e-13)[0] for lo, hi in ((0, 1), (1, np.inf))
            )

        h = lambda x: f(x) * sc(x)  # noqa: E731
        return (lambda n: h(rng.standard_gamma(a, n))), E(lambda x: h(x) ** 2) - E(h) ** 2

    conc, rate = (lambda x: np.log(x) - special.digamma(a)), (lambda x: a - x)
    quad = lambda x: (x - 1) ** 2  # noqa: E731
    bern = np.array([(0 - 0.499) ** 2 * (0 - 0.3), (1 - 0.499) ** 2 * (1 - 0.3)])
    cases = {
        "gamma(0.3), cos z, d/dconc": gamma_case(np.cos, conc),
        "gamma(0.3), cos z, d/drate": gamma_case(np.cos, rate),
        "gamma(0.3), (z-1)^2, d/dconc": gamma_case(quad, conc),
        "gamma(0.3), (z-1)^2, d/drate": gamma_case(quad, rate),
        "normal(0.5,1.5) pathwise, z^2, d/dscale": (
            (lambda n: (lambda e: 2 * (0.5 + 1.5 * e) * e)(rng.standard_normal(n))),
            4 * (0.25 + 2 * 2.25),
        ),
        "bernoulli(0.3) score fn, REBAR toy": (
            (lambda n: bern[(rng.random(n) < 0.3).astype(int)]),
            0.7 * 0.3 * (bern[1] - bern[0]) ** 2,
        ),
    }
    rows, recs = [], []
    for name, (draw, truth) in cases.items():
        for R in (300, 1000, 10000):
            S = sets if R < 10000 else max(sets // 3, 100)
            G = draw(R * S).reshape(R, S)
            v = (G - G.mean(0)) ** 2 * R / (R - 1)
            V, se = v.mean(0), v.std(0, ddof=1) / math.sqrt(R)
            nb = 20
            bv = G[: (R // nb) * nb].reshape(nb, R // nb, S).var(1, ddof=1)
            tq = st.t.ppf(0.975, nb - 1) * bv.std(0, ddof=1) / math.sqrt(nb)
            _, _, lo, hi = mean_interval(v, axis=0)
            ivs = {
                "normal": (V - z * se, V + z * se),
                "log": (V * np.exp(-z * se / V), V * np.exp(z * se / V)),
                "batch means": (bv.mean(0) - tq, bv.mean(0) + tq),
                "Hall": (lo, hi),
            }
            cov = {k: float(np.mean((lo_ <= truth) & (truth <= hi_))) for k, (lo_, hi_) in ivs.items()}
            recs.append(dict(case=name, R=R, sets=S, **cov))
            rows.append([name, R, S, *cov.values()])
    head = ["case", "R", "sets", "normal (4th moment)", "log-normal", "batch means (20, t)", "Hall (used)"]
    return _table("Coverage of nominal 95% variance intervals", head, rows), recs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m suites.benchmarks.perf", description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1, help="threads for every backend (default 1)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved repetitions per measurement")
    ap.add_argument("--loop-reps", type=int, default=2000, help="replicates timed in the per-replicate loop")
    ap.add_argument(
        "--only",
        default="timing,throughput,gpu",
        help="sections (comma-separated): timing, throughput, gpu, ci (CI coverage study, slow)",
    )
    ap.add_argument("--json", help="also write the raw numbers here")
    a = ap.parse_args(argv)
    settings = pin_threads(a.threads)
    from harness.registry import ensure_loaded
    from harness.runs.machine import cpu_model

    ensure_loaded()
    print(f"# stochgrad perf — {cpu_model()}, threads={settings['threads']}, float64", flush=True)
    out: dict[str, Any] = {"threads": settings, "cpu": cpu_model()}
    sections = set(a.only.split(","))
    if "timing" in sections:
        text, out["timing"] = timing_validation(a.rounds)
        print(text, flush=True)
    if "throughput" in sections:
        text, out["throughput"] = throughput(a.rounds, a.loop_reps)
        print(text, flush=True)
    if "ci" in sections:
        text, out["ci"] = ci_study(2000)
        print(text, flush=True)
    if "gpu" in sections:
        import torch

        if torch.cuda.is_available():
            text, out["gpu"] = gpu_tables(a.rounds)
            print(text, flush=True)
        else:
            print("\n(no CUDA device: GPU table skipped)")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(out, fh, indent=2, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
