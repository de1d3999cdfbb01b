"""The columns of ``results.parquet``: name, dtype and meaning of each, in one list (:data:`SCHEMA`).

``SCHEMA`` is the single source of the columns: results/README.md's column table is generated from it
(``python -m harness.results``; a test keeps them equal) and the report reads its column list from here.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.stats.metrics import METRIC_KEYS

BIAS_COLUMNS = ("bias_t", "bias_df", "bias_p", "bias_p_judged")


@dataclass(frozen=True)
class Column:
    name: str
    dtype: str  # str | int | float | bool
    meaning: str
    group: str = "identity"


def _cols(group: str, rows: list[tuple[str, str, str]]) -> list[Column]:
    return [Column(n, t, m, group) for n, t, m in rows]


SCHEMA: list[Column] = [
    *_cols(
        "identity",
        [
            ("run_id", "str", "run directory name"),
            ("suite", "str", "suite name"),
            ("estimator", "str", "estimator name"),
            ("backend", "str", "numpy | torch | jax"),
            ("device", "str", "the backend's device (cpu, cuda:0, gpu)"),
            ("distribution", "str", "distribution family"),
            ("objective", "str", "objective f(z)"),
            ("dim", "int", "D, the number of independent sites"),
            ("n_samples", "int", "L, samples per estimate"),
            ("n_replicates", "int", "R, replicate estimates drawn (more than requested with a precision target)"),
            ("param", "str", "the parameter this row measures the gradient of"),
            ("problem", "str", "readable problem label"),
            ("family", "str", "estimator family"),
            ("unbiased", "bool", "declared unbiased at this cell's hyperparameters"),
            ("oracle", "bool", "an oracle baseline (uses the exact answer): a reference line, never a recommendation"),
            ("dtype", "str", "measurement dtype (float64 | float32)"),
            ("cell_key", "str", "identity hash of the cell"),
            ("seed", "int", "the cell's derived seed: sha256(suite seed, cell key)"),
        ],
    ),
    *_cols(
        "truth",
        [
            ("exact_grad", "float", "mean over the parameter's coordinates of the exact gradient"),
            ("exact_value", "float", "E[f(z)]"),
            ("exact_method", "str", "closed_form | enumeration | quadrature | reference"),
            (
                "exact_abs_err",
                "float",
                "error bound of the truth per coordinate (quadrature estimate, reference SE; 0 if exact)",
            ),
        ],
    ),
    *_cols(
        "metrics",
        [
            ("grad_mean", "float", "mean over coordinates c of the replicate mean m_c"),
            ("bias", "float", "sqrt(mean_c (m_c − e_c)²), e_c the exact gradient"),
            (
                "bias_ci_low",
                "float",
                "95% interval of the RMS bias (Hall-corrected, simultaneous over coordinates): low",
            ),
            ("bias_ci_high", "float", "95% interval of the RMS bias: high"),
            ("bias_z", "float", "max_c |m_c − e_c| / se_c with the replicate SE (se floored at rounding level)"),
            ("bias_t", "float", "max_c |m_c − e_c| / se_c with the batch-means SE (the bias test, heavy-tail robust)"),
            ("bias_df", "float", "degrees of freedom of the bias test (batches − 1)"),
            ("bias_p", "float", "p-value of the bias test, Bonferroni over the parameter's coordinates"),
            (
                "bias_p_judged",
                "float",
                "bias_p over the coordinates whose rejection the test can judge (the tail opposite to the deviation "
                "shows evidence of lightness); bias_p < level <= bias_p_judged: the verdict is 'cannot judge'",
            ),
            ("variance", "float", "mean_c Var_r[G_rc]: the variance of one L-sample estimate"),
            (
                "variance_se",
                "float",
                "standard error of variance (fourth-moment method; the fourth moment completed by the fitted tail "
                "where the sample shows less)",
            ),
            (
                "variance_ci_low",
                "float",
                "95% interval of variance (Hall's skewness-corrected): low; with heavy_tail set, a one-sided "
                "95% lower bound valid whatever the tail (ci_method truncated-lower-bound)",
            ),
            ("variance_ci_high", "float", "95% interval of variance: high (NaN with heavy_tail set: no upper limit)"),
            (
                "variance_rel_halfwidth",
                "float",
                "half-width of the variance interval / variance (what --precision targets)",
            ),
            ("mse", "float", "mean_c mean_r (G_rc − e_c)²"),
            ("mse_se", "float", "standard error of mse"),
            ("mse_ci_low", "float", "95% interval of mse: low (a one-sided lower bound with heavy_tail set)"),
            ("mse_ci_high", "float", "95% interval of mse: high (NaN with heavy_tail set)"),
            ("snr", "float", "sqrt(mean_c m_c² / variance)"),
            ("samples_to_snr1", "float", "n_samples / snr²: the L at which the estimate's SNR reaches 1"),
            ("nan_fraction", "float", "fraction of non-finite estimate entries (their replicates are dropped)"),
            ("n_replicates_used", "float", "replicates used for the metrics"),
            (
                "ci_method",
                "str",
                "interval method of variance/mse/bias: hall-studentized | truncated-lower-bound (heavy tails: "
                "variance and mse get the largest one-sided lower bound of mean(min(v_r, c_j)) over truncation "
                "levels c_j, Bonferroni over the levels)",
            ),
            (
                "tail_index",
                "float",
                "Hill estimate of the tail index α of the estimates (moments of order < α are finite) from the "
                "k = ⌈√R⌉ largest per-replicate squared deviations Σ_c (G_rc − m_c)²; inf: bounded or tied "
                "extremes; NaN: R < 50",
            ),
            ("tail_index_ucb", "float", "99% upper confidence bound of tail_index (exact for a Pareto tail)"),
            (
                "tail_index_moment",
                "float",
                "tail index from the Dekkers-Einmahl-de Haan moment estimator on the same order statistics "
                "(inf for exponential-type tails, which Hill reads as α ≈ log(R/k))",
            ),
            (
                "tail_index_gpd",
                "float",
                "tail index 1/ξ of a generalized Pareto fit (Zhang-Stephens) to the 4⌈√R⌉ largest excesses of "
                "√(Σ_c (G_rc − m_c)²); inf: bounded or tied extremes",
            ),
            (
                "tail_index_lcb",
                "float",
                "80% lower confidence bound of tail_index_gpd (1/(ξ + 0.84(1 + ξ)/√n)): what decides heavy_tail",
            ),
            (
                "heavy_tail",
                "str",
                "'' (tail_index_lcb > 4: evidence of a finite fourth moment) | fourth_moment (no such evidence: "
                "the fourth moment may be infinite) | variance (tail_index_lcb <= 2: the variance may be infinite)",
            ),
            (
                "variance_ci_valid",
                "bool",
                "the variance interval is two-sided and its assumptions hold (no heavy tail flagged); False: "
                "only a lower bound (heavy tails) or no interval (< 2 replicates)",
            ),
        ],
    ),
    *_cols(
        "precision",
        [
            ("precision_target", "float", "requested relative half-width of the variance interval (NaN: fixed R)"),
            ("precision_achieved", "float", "worst relative half-width over the cell's parameters"),
            (
                "precision_capped",
                "bool",
                "a precision target was set and a replicate or time cap stopped the cell first",
            ),
            ("precision_cap_reason", "str", "'' | replicates | time"),
            ("n_chunks", "int", "vectorized estimator calls made"),
            ("chunk_replicates", "int", "replicates per call of the first chunk"),
            ("estimate_seconds", "float", "wall-clock time spent drawing the replicates"),
            (
                "readout_seconds",
                "float",
                "wall-clock time from the replicates to the cell's rows: a workload's chain rule to the encoder weights "
                "and every row's statistics (the truth is computed before and not counted; the same value on each of "
                "the cell's rows)",
            ),
        ],
    ),
    *_cols(
        "workload",
        [
            ("workload", "str", "model workload name (workload cells only; param is eta or encoder)"),
            ("workload_config", "str", "the workload's configuration (JSON)"),
            ("checkpoint", "int", "training step of the model state measured"),
            ("per_example", "bool", "each example's gradient estimated with its own f_b (else the batch objective)"),
            ("n_coords", "int", "coordinates of the parameter (η of the batch, or the encoder weights)"),
            ("variance_total", "float", "total variance (trace) = variance × n_coords"),
            ("variance_total_ci_low", "float", "95% interval of variance_total: low"),
            ("variance_total_ci_high", "float", "95% interval of variance_total: high"),
            ("truth_se_max", "float", "largest standard error of a reference truth (0 when exact)"),
            ("bias_z_truth", "float", "max |bias| / sqrt(SE_estimate² + SE_truth²): bias against an uncertain truth"),
            ("truth_too_imprecise", "bool", "the reference's median SE exceeds the estimate's: no bias verdict"),
        ],
    ),
    *_cols(
        "training",
        [
            ("unit_key", "str", "identity hash of a training unit (training runs; stochgrad train)"),
            ("train_seed", "int", "training seed: initialization, minibatches and estimator noise"),
            ("lr", "float", "Adam learning rate (encoder and decoder)"),
            ("batch_size", "int", "training minibatch size"),
            ("train_steps", "int", "optimizer steps the unit was asked for"),
            ("steps", "int", "optimizer steps done"),
            ("test_bound", "float", "importance-weighted bound (K = test_bound_k) on the test split, mean per example"),
            ("test_bound_se", "float", "standard error of test_bound over test examples"),
            ("test_bound_k", "int", "samples K of the final test bound"),
            ("test_elbo", "float", "single-sample ELBO on the test split, mean per example"),
            ("test_size", "int", "test examples in test_bound"),
            ("final_val_elbo", "float", "held-out ELBO on the validation examples at the last step"),
            ("best_val_elbo", "float", "largest logged held-out ELBO"),
            (
                "final_train_objective",
                "float",
                "training objective (ELBO or K-sample bound) on the batches of the last window",
            ),
            (
                "train_time_s",
                "float",
                "device-synchronized wall-clock seconds of the optimizer steps (evaluations and compilation "
                "excluded)",
            ),
            ("steps_per_s", "float", "steps / train_time_s"),
            ("eval_time_s", "float", "seconds of the final test evaluation"),
            (
                "step_compiled",
                "bool",
                "the training step ran as one compiled function (JAX's jitted step; PyTorch: False, eager autograd)",
            ),
            (
                "step_eager_reason",
                "str",
                "why a JAX unit's step ran eagerly, op by op ('' when it was compiled, and on PyTorch)",
            ),
            (
                "grad_var_final",
                "float",
                "online encoder-gradient variance at the last step (EMA, mean over encoder weights)",
            ),
            ("grad_var_mean", "float", "mean of the logged online encoder-gradient variances"),
        ],
    ),
    *_cols(
        "timing",
        [
            ("time_median_s", "float", "per-call time (R = 1, warm, device synchronized): median"),
            ("time_iqr_s", "float", "per-call time: interquartile range"),
            (
                "compile_time_s",
                "float",
                "seconds the cell spent compiling — JAX: tracing, lowering and XLA compilation of its estimate and "
                "timing calls, counted by jax.monitoring (0 when it reused an earlier cell's compilation: one per "
                "estimator, shapes, L, R, dtype and device); PyTorch: first call minus the median (torch.compile's "
                "compilation with compile_backend, else eager warm-up); NumPy: NaN.  Training units: the seconds "
                "their steps spent tracing and compiling (jax.monitoring; 0 on PyTorch), kept out of train_time_s",
            ),
            ("time_samples", "float", "timing samples taken"),
            ("time_inner_loops", "float", "calls per timing sample"),
            ("first_call_s", "float", "the first call, timed alone"),
            ("time_min_s", "float", "fastest timing sample"),
            ("time_converged", "bool", "IQR/median reached the target before the time cap"),
            ("threads", "int", "threads pinned for every backend"),
            ("efficiency", "float", "variance × time_median_s (lower is better)"),
            ("efficiency_ci_low", "float", "95% interval of efficiency (variance interval and time SE combined): low"),
            ("efficiency_ci_high", "float", "95% interval of efficiency: high"),
        ],
    ),
    *_cols(
        "cost",
        [
            (
                "f_evals",
                "float",
                "objective evaluations (points) per L-sample estimate, counted by the Context (workloads: summed over "
                "the examples of one estimate); see docs/notes/cost.md",
            ),
            (
                "grad_evals",
                "float",
                "∂f/∂z evaluations (points of a backward pass / VJP through f) per L-sample estimate, counted",
            ),
            (
                "aux_evals",
                "float",
                "evaluations of a learned or fitted surrogate (RELAX's r_ρ, a plugin's network) per estimate, counted",
            ),
            ("evals", "float", "f_evals + grad_evals: the equal-evaluation cost of one estimate"),
            (
                "variance_per_eval",
                "float",
                "variance × evals (variance at equal evaluations; lower is better)",
            ),
            (
                "variance_per_eval_ci_low",
                "float",
                "95% interval of variance_per_eval (the variance interval × evals; counts are exact): low",
            ),
            ("variance_per_eval_ci_high", "float", "95% interval of variance_per_eval: high"),
        ],
    ),
]
PREFIX_COLUMNS = {
    "h_": "hyperparameter value (defaults filled in)",
    "p_": "distribution parameter (the scalar value; NaN when it differs across coordinates — see problem)",
    "o_": "objective parameter (scalar value, as p_)",
}
COLUMNS: dict[str, Column] = {c.name: c for c in SCHEMA}
COLUMN_ORDER = [c.name for c in SCHEMA]
SORT_KEYS = ["estimator", "backend", "device", "problem", "n_samples", "param"]


def register_columns(columns: list[Column]) -> None:
    """Add columns (e.g. a workload's); a name may be declared once."""
    for c in columns:
        if c.name in COLUMNS and COLUMNS[c.name] != c:
            raise ValueError(f"column {c.name!r} declared twice with different meanings")
        if c.name not in COLUMNS:
            SCHEMA.append(c)
            COLUMNS[c.name] = c
            COLUMN_ORDER.append(c.name)


def undeclared(columns: list[str]) -> list[str]:
    """Columns not in the schema (and not a declared prefix family)."""
    return [c for c in columns if c not in COLUMNS and not any(c.startswith(p) for p in PREFIX_COLUMNS)]


def schema_markdown() -> str:
    """The column table of results/README.md, generated from :data:`SCHEMA`."""
    out = []
    for group in dict.fromkeys(c.group for c in SCHEMA):
        out += [f"\n### {group}\n", "| column | dtype | meaning |", "|---|---|---|"]
        out += [
            f"| `{c.name}` | {c.dtype} | {c.meaning.replace('|', chr(92) + '|')} |" for c in SCHEMA if c.group == group
        ]
    out += ["\n### prefixes\n", "| columns | meaning |", "|---|---|"]
    out += [f"| `{p}<name>` | {m} |" for p, m in PREFIX_COLUMNS.items()]
    return "\n".join(out).strip() + "\n"


assert set(METRIC_KEYS) <= set(COLUMNS), "every metric has a schema entry"
