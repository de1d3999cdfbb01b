"""Equal-evaluation variance table of the discrete estimators from a ``suites/workloads_discrete.toml`` run.

    python -m suites.benchmarks.discrete_table <run dir> [--param eta]
    python -m suites.benchmarks.discrete_table --train <training run dir>   (suites/train_discrete.toml)

Prints, per workload, checkpoint and L, one markdown row per estimator: the variance of one L-sample estimate of the
batch's η-gradient (mean over coordinates), the measured evaluation counts per L-sample estimate (``f_evals``,
``grad_evals`` summed over the batch's examples; docs/notes/cost.md), ``variance_per_eval`` = variance × evals with
its 95% interval, and its ratio to RLOO's at the same point.  The counts are checked against the estimators'
documented costs (:data:`DOCUMENTED`, per example; a mismatch is printed as such, never hidden).  Then the biased
relaxations' rows: Gumbel-Rao against straight-through Gumbel-softmax at equal temperature, with the RMS bias, its
interval and the noise floor √(variance / R) that an unbiased estimator's RMS bias estimate sits at.

With ``--train``: the final held-out bounds of a training run, per workload and estimator: the mean over seeds of
the test bound (importance-weighted, K = ``test_bound_k``) and its standard error over seeds, and the same for the
final validation ELBO.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable

import pandas as pd

from harness.runs.store import load_run

# documented (f, ∂f) evaluations per example and L-sample estimate (module docstrings; tests/test_costs.py), C^D the
# number of configurations of the latent (the unordered set estimator draws min(L, C^D) distinct points)
DOCUMENTED: dict[str, Callable[[int, int], tuple[int, int]]] = {
    "score_function_rloo": lambda L, S: (L, 0),
    "disarm": lambda L, S: (2 * L, 0),
    "relax": lambda L, S: (3 * L, 2 * L),
    "arms": lambda L, S: (L, 0),
    "double_cv": lambda L, S: (L, L),
    "rodeo": lambda L, S: (L, L),
    "unordered_set": lambda L, S: (min(L, S), 0),
    "gumbel_rao": lambda L, S: (0, L),
    "st_gumbel": lambda L, S: (0, L),
}
ORDER = list(DOCUMENTED)
BIASED = ("st_gumbel", "gumbel_rao")


def support(cfg: dict) -> int:
    """Configurations of one example's latent (vae_bernoulli: 2^latent_dim; vae_categorical: categories^groups)."""
    if "groups" in cfg:
        return int(cfg["categories"]) ** int(cfg["groups"])
    return 2 ** int(cfg["latent_dim"])


def _fmt(x: float) -> str:
    return f"{x:.3g}" if math.isfinite(x) else "nan"


def variance_table(df: pd.DataFrame, param: str) -> str:
    """The markdown table of the unbiased estimators (see the module docstring)."""
    d = df[(df["param"] == param) & ~df["estimator"].isin(BIASED)].copy()
    out = [
        "| workload | ckpt | L | estimator | variance | f_evals | grad_evals | documented | var × evals [95% CI] | / RLOO |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (wl, ck, L), g in d.groupby(["workload", "checkpoint", "n_samples"], sort=True):
        ref = g.loc[g["estimator"] == "score_function_rloo", "variance_per_eval"]
        base = float(ref.iloc[0]) if len(ref) else math.nan
        g = g.assign(o=g["estimator"].map(ORDER.index)).sort_values("o")
        for _, r in g.iterrows():
            cfg = config(r["workload_config"])
            n_ex = int(r["n_coords"]) // latent_size(cfg)  # the η rows hold every example's latent parameters
            f_doc, g_doc = (n_ex * v for v in DOCUMENTED[r["estimator"]](int(L), support(cfg)))
            ok = (f_doc, g_doc) == (r["f_evals"], r["grad_evals"])
            doc = f"{f_doc}+{g_doc}" + ("" if ok else " (MISMATCH)")
            ci = f"{_fmt(r['variance_per_eval'])} [{_fmt(r['variance_per_eval_ci_low'])}, {_fmt(r['variance_per_eval_ci_high'])}]"
            out.append(
                f"| {wl} {label(cfg)} | {ck} | {L} | {r['estimator']} | {_fmt(r['variance'])} | {r['f_evals']:.0f} | "
                f"{r['grad_evals']:.0f} | {doc} | {ci} | {_fmt(r['variance_per_eval'] / base)} |"
            )
    return "\n".join(out)


def bias_table(df: pd.DataFrame, param: str) -> str:
    """Gumbel-Rao next to straight-through Gumbel-softmax at equal temperature: RMS bias, interval, noise floor."""
    d = df[(df["param"] == param) & df["estimator"].isin(BIASED)].copy()
    out = [
        "| workload | ckpt | τ | estimator | RMS bias [95% CI] | noise floor √(var/R) | bias_p | variance | var × evals |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (wl, ck, tau), g in d.groupby(["workload", "checkpoint", "h_temperature"], sort=True):
        for _, r in g.sort_values("estimator", ascending=False).iterrows():
            floor = math.sqrt(r["variance"] / r["n_replicates"])
            out.append(
                f"| {wl} | {ck} | {tau} | {r['estimator']} | {_fmt(r['bias'])} [{_fmt(r['bias_ci_low'])}, "
                f"{_fmt(r['bias_ci_high'])}] | {_fmt(floor)} | {r['bias_p']:.2g} | {_fmt(r['variance'])} | "
                f"{_fmt(r['variance_per_eval'])} |"
            )
    return "\n".join(out)


def config(s: object) -> dict:
    """A workload configuration stored as JSON in the results."""
    return s if isinstance(s, dict) else json.loads(str(s))


def latent_size(cfg: dict) -> int:
    """η coordinates per example: latent_dim (Bernoulli) or groups × categories (categorical)."""
    return int(cfg["groups"]) * int(cfg["categories"]) if "groups" in cfg else int(cfg["latent_dim"])


def label(cfg: dict) -> str:
    return f"({cfg['groups']}×{cfg['categories']})" if "groups" in cfg else f"(D={cfg['latent_dim']})"


def training_table(df: pd.DataFrame) -> str:
    """Final test bound per (workload, estimator): mean ± SE over seeds (see the module docstring)."""
    out = [
        "| workload | estimator | seeds | steps | test bound (K) mean ± SE | test ELBO mean ± SE |",
        "|---|---|---|---|---|---|",
    ]
    last = df.drop_duplicates("unit_key", keep="last")  # results.parquet: one row per unit (curves: curves.parquet)
    for (wl, est), g in last.groupby(["workload", "estimator"], sort=True):
        n = len(g)
        se = lambda c: float(g[c].std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan  # noqa: E731
        out.append(
            f"| {wl} | {est} | {n} | {int(g['steps'].max())} | {g['test_bound'].mean():.3f} ± {se('test_bound'):.3f} "
            f"({int(g['test_bound_k'].iloc[0])}) | {g['test_elbo'].mean():.3f} ± {se('test_elbo'):.3f} |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="run directory of suites/workloads_discrete.toml (or of a training run, --train)")
    ap.add_argument("--train", action="store_true", help="the run is a training run: final held-out bounds")
    ap.add_argument("--param", default="eta", help="row kind: eta (η-gradient of the batch) or encoder")
    a = ap.parse_args(argv)
    df, _ = load_run(a.run)
    if a.train:
        print(training_table(df))
        return
    print(variance_table(df, a.param))
    print()
    print(bias_table(df, a.param))


if __name__ == "__main__":
    main()
