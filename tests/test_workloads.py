"""Model workloads: unbiased estimators vs enumeration/quadrature/reference, the chain rule, checkpoints, errors.

Statistical tests use fixed seeds (printed on failure), Bonferroni-corrected t/z critical values and a power
check (harness.measure.check.check_problem: a 10% bias of the exact gradient's RMS must be detectable).
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from harness.measure.check import check_problem, z_critical
from harness.measure.runner import estimate_target, request_for
from harness.registry import applies, implementations
from harness.targets.workload import WorkloadSpec
from harness.training import checkpoints
from harness.workloads import WorkloadError
from harness.workloads.chain import encoder_grads
from tests.support.training import fresh_checkpoint_cache

CK = 50  # a trained checkpoint that is cheap to make
SMALL = {  # enumerable: 2^6 and 3^3 configurations per example
    "vae_bernoulli": WorkloadSpec("vae_bernoulli", {"latent_dim": 6, "hidden": 8}, checkpoint=CK, batch_size=2),
    "vae_categorical": WorkloadSpec("vae_categorical", {"groups": 3, "categories": 3}, checkpoint=CK, batch_size=2),
}
SLOW = {"score_function", "measure_valued", "arsm"}  # costly to power on these objectives (see below)


@pytest.fixture(autouse=True, scope="module")
def _cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    yield from fresh_checkpoint_cache(tmp_path_factory)


def _cases(backends: tuple[str, ...]) -> list:
    out = []
    for wname, ws in SMALL.items():
        for s in implementations():
            if s.backend in backends and s.unbiased and applies(s, ws.traits())[0]:
                slow = s.name in SLOW or s.backend != "numpy"
                marks = [pytest.mark.slow] if slow else []
                out.append(pytest.param(wname, s.name, s.backend, marks=marks, id=f"{wname}-{s.name}-{s.backend}"))
    return out


UNBIASED_CASES = _cases(("numpy", "torch", "jax"))


def _battery_tests() -> int:
    """Coordinates tested over the whole battery: the Bonferroni count of its family-wise level (alpha = 1e-3)."""
    from harness.workloads import get_workload

    def coords(ws: WorkloadSpec) -> int:
        wl = get_workload(ws.workload)
        return ws.batch_size * int(np.prod(wl.latent_shape(wl.resolve(ws.config))))

    return sum(coords(SMALL[p.values[0]]) for p in UNBIASED_CASES)


@pytest.mark.parametrize(("wname", "est", "backend"), UNBIASED_CASES)
def test_unbiased_matches_enumeration(wname: str, est: str, backend: str) -> None:
    """Every unbiased estimator that applies, on the batch objective, against exact enumeration.

    The critical value is Bonferroni over every coordinate of every case of this battery (family-wise level 1e-3),
    so that a checkpoint change does not turn a per-case false alarm into a failure (at the FORMAT 2 checkpoints,
    vae_categorical score_function_rloo numpy gave |t| = 4.44 against the per-case 4.21 on seed 3, R = 20000; seeds
    4-9 give at most 2.43 and seed 3 with R = 200000 gives 2.55: docs/notes/workloads.md)."""
    from harness.registry import get_estimator

    problem = SMALL[wname].build()
    assert problem.exact.method == "enumeration"
    spec = get_estimator(est, backend)
    # plain REINFORCE's variance (~300 per coordinate here) makes a 10% test cost ~10^8 samples: it gets a
    # stated, larger detectable bias (the whole gradient's RMS: a sign or factor-2 error is still caught)
    # (at the FORMAT 2 checkpoints Var ≈ 365 per coordinate: R = 600000 reached power ratio 1.10, so its cap is 10^6)
    detectable = 1.0 if est == "score_function" else 0.1
    max_R = 1_000_000 if est == "score_function" else 600_000
    r = check_problem(spec, problem, L=4, R=20000, max_R=max_R, seed=3, detectable=detectable, n_tests=_battery_tests())
    assert r.verdict == "pass", r.line()


def test_per_example_estimates_match_enumeration() -> None:
    """The measurement path (one call per example, concatenated) is unbiased too."""
    from harness.measure.cells import Cell
    from harness.registry import get_estimator

    ws = SMALL["vae_bernoulli"]
    cell = Cell("disarm", "numpy", "cpu", ws, n_samples=2, n_replicates=40000, seed=11, timing=False)
    problem = ws.build()
    G, _ = estimate_target(request_for(cell, get_estimator("disarm", "numpy"), problem), problem)
    g = G["logits"]
    assert g.shape == (40000, problem.dim)
    m, se = g.mean(0), g.std(0, ddof=1) / math.sqrt(g.shape[0])
    e = problem.exact.grads["logits"]
    zc = z_critical(1e-3, e.size)
    assert np.all(np.abs(m - e) / se < zc), f"seed=11 z={np.abs(m - e) / se}"
    assert zc * se.max() < 0.1 * np.sqrt(np.mean(e**2)), "underpowered"


@pytest.mark.parametrize(
    ("est", "L", "R"),
    [
        ("pathwise", 8, 20000),
        pytest.param("score_function_rloo", 32, 50000, marks=pytest.mark.slow),  # Var ~ 5e3 per coordinate at L=8
    ],
)
def test_blr_matches_quadrature(est: str, L: int, R: int) -> None:
    from harness.registry import get_estimator

    problem = WorkloadSpec("blr", {}, checkpoint=CK).build()
    assert problem.exact.method == "quadrature" and problem.exact.abs_err < 1e-8
    r = check_problem(get_estimator(est, "numpy"), problem, L=L, R=R, max_R=200000, seed=5)
    assert r.verdict == "pass", r.line()


def test_blr_quadrature_matches_reference() -> None:
    q = WorkloadSpec("blr", {"reference_samples": 20000}, checkpoint=CK).build().exact
    r = WorkloadSpec("blr", {"reference_samples": 20000}, checkpoint=CK, truth="reference").build().exact
    assert r.method == "reference"
    zc = z_critical(1e-3, 62)
    for k in q.grads:
        z = np.abs(q.grads[k] - r.grads[k]) / r.extra["se"][k]
        assert np.all(z < zc), (k, z.max())


@pytest.mark.parametrize("wname", sorted(SMALL))
def test_enumeration_matches_reference(wname: str) -> None:
    """The two truths agree (the reference is the local-expectation estimator, independent of the registry)."""
    from dataclasses import replace

    e = SMALL[wname].build().exact
    r = replace(SMALL[wname], truth="reference").build().exact
    se = r.extra["se"]["logits"]
    z = np.abs(e.grads["logits"] - r.grads["logits"]) / se
    assert np.all(z < z_critical(1e-3, z.size)), z.max()
    assert z_critical(1e-3, z.size) * se.max() < 0.1 * np.sqrt(np.mean(e.grads["logits"] ** 2)), "underpowered"


def test_gaussian_vae_against_reference() -> None:
    """pathwise and RLOO on vae_gaussian vs the reference (z uses both standard errors)."""
    from harness.measure.runner import MeasureRequest, estimate
    from harness.registry import get_estimator

    problem = WorkloadSpec(
        "vae_gaussian", {"latent_dim": 4, "reference_samples": 40000}, checkpoint=CK, batch_size=2
    ).build()
    ex = problem.exact
    assert ex.method == "reference"
    for est, R in (("pathwise", 20000), ("score_function_rloo", 40000)):
        G, _ = estimate(MeasureRequest(get_estimator(est, "numpy"), problem, L=4, R=R, seed=7))
        for k in ("loc", "scale"):
            g = G[k]
            se = np.sqrt(g.var(0, ddof=1) / R + ex.extra["se"][k] ** 2)
            z = np.abs(g.mean(0) - ex.grads[k]) / se
            zc = z_critical(1e-3, 4 * g.shape[1])
            assert np.all(z < zc), (est, k, z.max(), "seed=7")
            assert zc * se.max() < 0.25 * np.sqrt(np.mean(ex.grads[k] ** 2)), (est, k, "underpowered")


@pytest.mark.parametrize("wname", ["vae_bernoulli", "vae_categorical", "vae_gaussian", "blr"])
def test_chain_rule_matches_autograd(wname: str) -> None:
    """Jᵀ G_r (numpy, torch vmap+vjp, jax vmap+vjp) equals autograd of Σ ⟨G_r, η(φ)⟩, replicate by replicate."""
    torch = pytest.importorskip("torch")
    from harness.backends import get_backend

    cfg = (
        {}
        if wname == "blr"
        else {"hidden": 5, "latent_dim": 3}
        if wname != "vae_categorical"
        else {"hidden": 5, "groups": 2, "categories": 3}
    )
    problem = WorkloadSpec(wname, cfg, checkpoint=CK, batch_size=1 if wname == "blr" else 3).build()
    rng = np.random.default_rng(0)
    G = {k: rng.standard_normal((4, *v.shape)) for k, v in problem.params_np.items()}
    T = get_backend("torch")
    enc = {k: torch.tensor(v, requires_grad=True) for k, v in problem.encoder_params.items()}
    fixed = {k: torch.tensor(v) for k, v in problem.state.items() if k not in enc}
    x = {k: torch.tensor(v) for k, v in problem.x.items()}
    want = {k: [] for k in enc}
    for r in range(4):
        eta = problem.workload.encode(T, {**fixed, **enc}, x, problem.cfg)
        s = sum((eta[k].reshape(problem.params_np[k].shape) * torch.tensor(G[k][r])).sum() for k in eta)
        for k, g in zip(enc, torch.autograd.grad(s, list(enc.values()))):
            want[k].append(g.numpy())
    for backend in ("numpy", "torch", "jax"):
        got = encoder_grads(problem, G, backend)
        for k in enc:
            np.testing.assert_allclose(got[k], np.stack(want[k]), rtol=1e-10, atol=1e-12, err_msg=f"{backend} {k}")


@pytest.mark.parametrize("wname", ["vae_bernoulli", "vae_categorical", "vae_gaussian", "blr"])
def test_objective_gradient_numpy_matches_autograd(wname: str) -> None:
    """The analytic ∂f/∂z (numpy pathwise / relaxed estimators use it) equals torch autograd of f."""
    torch = pytest.importorskip("torch")
    from harness.backends import get_backend

    cfg = {} if wname == "blr" else {"hidden": 5}
    problem = WorkloadSpec(wname, cfg, checkpoint=CK, batch_size=1 if wname == "blr" else 2).build()
    rng = np.random.default_rng(1)
    z = rng.random((3, 2, *problem.event_shape))  # relaxed (continuous) points: f is differentiable there
    zt = torch.tensor(z, requires_grad=True)
    op = {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in problem.op.items()}
    (want,) = torch.autograd.grad(problem.objective(get_backend("torch"), zt, op).sum(), zt)
    np.testing.assert_allclose(problem.objective.grad_np(z, problem.op), want.numpy(), rtol=1e-9, atol=1e-10)


def test_objective_is_written_once_for_every_backend() -> None:
    from harness.backends import get_backend

    problem = SMALL["vae_categorical"].build()
    z = np.eye(3)[np.random.default_rng(2).integers(0, 3, (2, 5, problem.dim))]
    ref = problem.objective(get_backend("numpy"), z, problem.op)
    for name in ("torch", "jax"):
        B = get_backend(name)
        op = {k: B.asarray(v, "float64", "cpu") if isinstance(v, np.ndarray) else v for k, v in problem.op.items()}
        got = B.to_numpy(problem.objective(B, B.asarray(z, "float64", "cpu"), op))
        np.testing.assert_allclose(got, ref, rtol=1e-12)


def test_checkpoints_are_cached_and_resumable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    monkeypatch.setenv("STOCHGRAD_CACHE", str(tmp_path / "a"))
    checkpoints.forget_memory()
    ws = WorkloadSpec("vae_bernoulli", {"latent_dim": 4}, checkpoint=6, batch_size=2)
    before = checkpoints.TRAINED_STEPS["count"]
    s6 = ws.build().state
    assert checkpoints.TRAINED_STEPS["count"] - before == 6
    files = sorted((tmp_path / "a").glob("vae_bernoulli-state-*.npz"))
    assert len(files) == 2  # steps 0 and 6
    mtimes = [f.stat().st_mtime_ns for f in files]
    checkpoints.forget_memory()  # a new process: only the disk cache is left
    again = ws.build().state
    assert checkpoints.TRAINED_STEPS["count"] - before == 6, "the cached checkpoint was retrained"
    assert [f.stat().st_mtime_ns for f in files] == mtimes
    assert all(np.array_equal(s6[k], again[k]) for k in s6)
    assert not list((tmp_path / "a").glob("*.tmp")), "atomic writes leave no temporary files"
    # a measurement-only key (the reference's sample count) reuses the trained checkpoint
    replace(ws, config={"latent_dim": 4, "reference_samples": 10}).build()
    assert checkpoints.TRAINED_STEPS["count"] - before == 6
    # resuming from a cached step 3 (weights + Adam moments) equals training straight to 6
    monkeypatch.setenv("STOCHGRAD_CACHE", str(tmp_path / "b"))
    checkpoints.forget_memory()

    replace(ws, checkpoint=3).build()
    resumed = ws.build().state
    for k in s6:
        np.testing.assert_allclose(resumed[k], s6[k], rtol=1e-12, atol=1e-14)
    assert not np.allclose(s6["enc_W0"], replace(ws, checkpoint=0).build().state["enc_W0"]), "training moved nothing"


def test_training_lowers_the_negative_elbo() -> None:
    """The checkpoints are trained models: the validation negative ELBO falls (exact, by enumeration)."""
    ws = SMALL["vae_bernoulli"]
    from dataclasses import replace

    v0 = replace(ws, checkpoint=0, batch_size=16).build().exact.value
    v1 = replace(ws, checkpoint=400, batch_size=16).build().exact.value
    assert v1 < v0 - 16 * 5.0, (v0, v1)  # at least 5 nats per example


BAD = {
    "unknown workload": (WorkloadSpec("vae_bernouli"), "workload", "vae_bernoulli"),
    "unknown config key": (WorkloadSpec("vae_bernoulli", {"latent": 3}), "config.latent", "latent_dim"),
    "bad config type": (WorkloadSpec("vae_bernoulli", {"latent_dim": "ten"}), "config.latent_dim", "int"),
    "enumeration too large": (WorkloadSpec("vae_bernoulli", {"latent_dim": 32}, truth="enumeration"), "truth", "4096"),
    "enumeration categorical": (WorkloadSpec("vae_categorical", {}, truth="enumeration"), "truth", "reference"),
    "no quadrature": (WorkloadSpec("vae_gaussian", {}, truth="quadrature"), "truth", "reference"),
    "unknown truth": (WorkloadSpec("blr", {}, truth="exact"), "truth", "enumeration"),
    "bad split": (WorkloadSpec("blr", {}, split="dev"), "split", "val"),
    "batch too large": (WorkloadSpec("blr", {}, batch_size=2), "batch_size", "[1, 1]"),
    "negative checkpoint": (WorkloadSpec("blr", {}, checkpoint=-1), "checkpoint", "non-negative"),
    "bad binarize": (WorkloadSpec("vae_bernoulli", {"binarize": "random"}), "config.binarize", "dynamic"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_workload_spec(case: str) -> None:
    spec, key, needle = BAD[case]
    with pytest.raises(WorkloadError) as info:
        spec.build()
    assert info.value.key == key and needle in str(info.value), str(info.value)


GOOD_SWEEP = '[suite]\nname = "w"\nreplicates = 50\n\n[[sweep]]\nestimators = ["disarm"]\nbackends = ["numpy"]\nn_samples = [2]\n'


@pytest.mark.parametrize(
    ("table", "needles"),
    [
        ('name = "vae_bernouli"', ["sweep[0].workloads[0].name", "valid", "vae_bernoulli"]),
        ('name = "vae_bernoulli"\ncheckpoints = [300, 100]', ["workloads[0].checkpoints", "strictly increasing"]),
        ('name = "vae_bernoulli"\ntruth = "enumeration"', ["workloads[0].truth", "4096"]),
        ('name = "vae_bernoulli"\nconfig = { latent = 3 }', ["workloads[0].config.latent", "latent_dim"]),
        ('name = "vae_bernoulli"\nbatchsize = 3', ["workloads[0].batchsize", "unknown key", "batch_size"]),
    ],
)
def test_bad_workload_suite_exits_2(table: str, needles: list[str], tmp_path: Path, capsys) -> None:
    from harness.cli.main import main

    suite = tmp_path / "s.toml"
    suite.write_text(GOOD_SWEEP + "\n[[sweep.workloads]]\n" + table + "\n")
    out = tmp_path / "run"
    assert main(["run", str(suite), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert str(suite) in err and "Traceback" not in err
    for n in needles:
        assert n in err, (n, err)
    assert not out.exists()


def test_workload_suite_runs_and_resumes(tmp_path: Path) -> None:
    """A workload suite expands per checkpoint, rows carry eta/encoder with variance_total, and --resume works."""
    import pandas as pd

    from harness.measure.runner import run_cell
    from harness.runs import suite_run as execute_mod
    from harness.runs.store import load_run
    from harness.suite.expand import expand

    suite = tmp_path / "s.toml"
    suite.write_text(
        GOOD_SWEEP.replace('["disarm"]', '["disarm", "score_function_rloo", "enumeration"]')
        + '\n[[sweep.workloads]]\nname = "vae_bernoulli"\nconfig = { latent_dim = 4 }\n'
        "checkpoints = [0, 5]\nbatch_size = 2\n"
    )
    exp = expand(suite)
    assert len(exp.cells) == 4 and any("separable" in k for k in exp.dropped)
    run_dir = tmp_path / "run"
    calls: list[str] = []

    def interrupting(cell):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(cell.key())
        return run_cell(cell)

    with pytest.raises(KeyboardInterrupt):
        execute_mod.execute(exp, suite, run_dir, runner=interrupting, stream=io.StringIO())
    resumed: list[str] = []

    def counting(cell):
        resumed.append(cell.key())
        out = run_cell(cell)
        assert out.status == "ok", out.message
        return out

    execute_mod.execute(exp, suite, run_dir, resume=True, runner=counting, stream=io.StringIO())
    assert not set(resumed) & set(calls) and len(resumed) == 2
    df, meta = load_run(run_dir)
    assert meta["status"] == "complete"
    assert set(df["param"]) == {"eta", "encoder"} and set(df["checkpoint"]) == {0, 5}
    assert set(df["workload"]) == {"vae_bernoulli"} and set(df["exact_method"]) == {"enumeration"}
    np.testing.assert_allclose(df["variance_total"], df["variance"] * df["n_coords"])
    assert (df["variance_total_ci_low"] <= df["variance_total"]).all()
    assert (df["variance_total"] <= df["variance_total_ci_high"]).all()
    enc = df[df.param == "encoder"]
    assert (enc["n_coords"] == 64 * 4 + 4).all()
    # the readout's wall-clock (chain rule to the encoder, statistics) is measured once per cell, on each of its rows
    assert (df["readout_seconds"] > 0).all()
    assert (df.groupby(["estimator", "checkpoint"])["readout_seconds"].nunique() == 1).all()
    assert isinstance(df, pd.DataFrame)
    from harness.results import undeclared

    assert not undeclared(list(df.columns)), undeclared(list(df.columns))
    from harness.report.which_estimator import which_estimator

    table = which_estimator(df, "encoder", rank_by="samples")
    assert list(table["checkpoint"]) == [0, 5]
    for _, r in table.iterrows():  # at equal L the winner is the unbiased row with the smallest total variance
        sub = enc[(enc.checkpoint == r["checkpoint"]) & enc.unbiased]
        best = sub.loc[sub["variance_total"].idxmin()]
        assert r["best"] == r["at_equal_L"] == f"{best['estimator']}[{best['backend']}]"
        timed = sub[np.isfinite(sub["efficiency"])]  # at equal time (the default): the smallest variance × time
        fast = timed.loc[timed["efficiency"].idxmin()] if len(timed) else None
        assert r["at_equal_time"] == ("unavailable" if fast is None else f"{fast['estimator']}[{fast['backend']}]")


def test_byo_workload_registered_through_the_api() -> None:
    """A user's model (docs/examples/byo_workload.py, run as written: it imports only stochgrad, torch and numpy)
    runs every applicable estimator with no estimator code."""
    import importlib.util

    import stochgrad as sg
    from harness.registry import get_estimator
    from harness.workloads import unregister_workload

    path = Path(__file__).resolve().parents[1] / "docs" / "examples" / "byo_workload.py"
    spec = importlib.util.spec_from_file_location("byo_workload", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sg.register_workload(module.TinyBernoulliModel)
    try:
        assert "tiny_bernoulli" in sg.list_workloads("tiny*")
        ws = WorkloadSpec("tiny_bernoulli", {}, checkpoint=20, batch_size=2)
        problem = ws.build()
        assert problem.exact.method == "enumeration"
        assert not applies(get_estimator("gumbel_softmax", "numpy"), ws.traits())[0]  # a torch-only model
        assert applies(get_estimator("gumbel_softmax", "torch"), ws.traits())[0]
        r = check_problem(get_estimator("disarm", "torch"), problem, L=2, R=20000, max_R=100000, seed=9)
        assert r.verdict == "pass", r.line()
        g = encoder_grads(problem, {"logits": np.ones((2, problem.dim))}, "torch")
        assert set(g) == set(problem.encoder_params)
    finally:
        unregister_workload("tiny_bernoulli")


def test_broken_workload_plugin_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.workloads as W

    class EP:
        name, value, group = "broken", "nowhere_pkg:WL", W.ENTRY_POINT_GROUP

        def load(self):
            raise ImportError("no module named nowhere_pkg")

    monkeypatch.setattr(W.metadata, "entry_points", lambda group: [EP()] if group == W.ENTRY_POINT_GROUP else [])
    monkeypatch.setitem(W._LOADED, "plugins", False)
    monkeypatch.setattr(W, "_FAILED", {})
    failed = W.load_plugins()
    assert "broken (nowhere_pkg:WL)" in failed and "nowhere_pkg" in failed["broken (nowhere_pkg:WL)"]
    assert "vae_bernoulli" in W.workload_names()


def test_batch_objective_adds_other_examples_noise() -> None:
    """per_example = false is unbiased too, but DisARM then carries the other examples' f noise: the
    variance CIs separate (the design choice of harness.targets.workload)."""
    from dataclasses import replace

    from harness.measure.cells import Cell
    from harness.registry import get_estimator
    from harness.stats.metrics import summarize

    spec = get_estimator("disarm", "numpy")
    out = {}
    for per_example in (True, False):
        ws = replace(SMALL["vae_bernoulli"], per_example=per_example)
        problem = ws.build()
        cell = Cell("disarm", "numpy", "cpu", ws, n_samples=1, n_replicates=20000, seed=13, timing=False)
        G, _ = estimate_target(request_for(cell, spec, problem), problem)
        out[per_example] = summarize(G["logits"], problem.exact.grads["logits"])
        zc = z_critical(1e-3, 2 * problem.dim)  # bias_z is the max over coordinates
        assert out[per_example]["bias_z"] < zc, (per_example, out[per_example], "seed=13")
    assert out[False]["variance_ci_low"] > out[True]["variance_ci_high"], out


def test_dynamic_binarization_is_fixed_per_batch_seed() -> None:
    from dataclasses import replace

    ws = WorkloadSpec("vae_bernoulli", {"latent_dim": 4, "binarize": "dynamic"}, checkpoint=3, batch_size=3)
    x = ws.build().x["x"]
    assert set(np.unique(x)) <= {0.0, 1.0}
    np.testing.assert_array_equal(ws.build().x["x"], x)  # the evaluation batch's draw is fixed by batch_seed
    np.testing.assert_array_equal(replace(ws, example=1).build().x["x"], x[1:2])  # sub-problems share it
    fixed = replace(ws, config={"latent_dim": 4}).build().x["x"]
    assert not np.array_equal(fixed, x), "dynamic binarization equals the fixed threshold"
    assert ws.label() == "vae_bernoulli(binarize=dynamic,latent_dim=4)@3/val[3]"


@pytest.mark.parametrize("path", ["suites/workloads.toml", "suites/workloads_gpu.toml"])
def test_shipped_workload_suites_expand(path: str) -> None:
    """Every shipped workload at >= 2 checkpoints; the CPU suite includes enumerable VAEs; GPU: D = 200, N = 100."""
    from harness.suite.expand import expand
    from harness.targets.workload import check_spec
    from harness.targets.workload_truth import method_for

    root = Path(__file__).resolve().parents[1]
    exp = expand(root / path)
    specs = list({c.target.key(): c.target for c in exp.cells}.values())
    by_model: dict[str, set[int]] = {}
    methods = set()
    for s in specs:
        by_model.setdefault(s.label().split("@")[0], set()).add(s.checkpoint)
        wl, cfg, _, _ = check_spec(s)
        methods.add(method_for(wl, tuple(wl.latent_shape(cfg)), s.truth))
    assert all(len(v) >= 2 for v in by_model.values()), by_model
    if "gpu" in path:
        assert all(s.dim == 100 * 200 for s in specs) and {c.device for c in exp.cells} == {"cuda", "gpu"}
    else:
        assert {s.workload for s in specs} == {"vae_bernoulli", "vae_categorical", "vae_gaussian", "blr"}
        assert methods == {"enumeration", "reference", "quadrature"}


def test_the_encoder_truth_is_computed_once_per_target(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every cell on one target (estimators, backends' cells) reads the same encoder-weight truth and its standard
    errors through the squared Jacobian (a D = 200 workload: 800 × 157 000, 3-6 s): it is computed once and kept,
    with the same numbers as computed directly; another checkpoint, or another truth, is computed anew."""
    from harness.targets import workload as W
    from harness.workloads.chain import flat

    spec = SMALL["vae_bernoulli"]
    problem = spec.build()
    ex, names, enc = problem.exact, problem.param_names, list(problem.encoder_params)
    se = np.concatenate([np.full(ex.grads[k].size, 0.01) for k in names])
    real, calls = W.jacobian, []
    monkeypatch.setattr(W, "jacobian", lambda p: calls.append(p.spec.checkpoint) or real(p))
    W._ENCODER_TRUTH.clear()
    a = problem._encoder_truth(ex, se, "numpy")
    b = spec.build()._encoder_truth(ex, se, "numpy")  # the next cell builds its own problem on the same target
    assert calls == [CK] and a[0] is b[0] and a[1] is b[1]
    e_direct = flat(encoder_grads(problem, {k: ex.grads[k][None] for k in names}, "numpy"), enc)[0]
    np.testing.assert_array_equal(a[0], e_direct)
    np.testing.assert_array_equal(a[1], np.sqrt(real(problem).T ** 2 @ se**2))
    problem._encoder_truth(ex, 2 * se, "numpy")  # another truth
    other = replace(spec, checkpoint=0).build()
    other._encoder_truth(other.exact, se, "numpy")  # another target
    assert calls == [CK, CK, 0]
