"""Training runs: the objective improves, resume equality, online vs offline variance, DReG/VIMCO unbiasedness,
bad configurations (exit 2, nothing written), the report section.

Statistical tests use fixed seeds (printed on failure), Bonferroni-corrected critical values and a power check.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.measure.runner import MeasureRequest, estimate
from harness.registry import get_declaration, get_estimator, implementations
from harness.runs.training_run import run_training
from harness.stats.metrics import bonferroni_z
from harness.suite.training import load_train_suite
from harness.targets.workload import WorkloadSpec
from harness.training import train_unit
from tests.support.training import assert_same_curves, fresh_checkpoint_cache, kill_at, vae_unit

ALPHA = 1e-3


@pytest.fixture(autouse=True, scope="module")
def _cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    yield from fresh_checkpoint_cache(tmp_path_factory)


def _unit(tmp: Path | None = None, **kw) -> dict:
    return vae_unit(tmp, **kw)


# -- training -------------------------------------------------------------------------------------------
def test_objective_improves_on_a_fixed_seed() -> None:
    res = train_unit(_unit(steps=300, log_every=100))
    assert res["status"] == "ok", res["message"]
    first, last = res["rows"][0], res["rows"][-1]
    assert first["step"] == 0 and last["step"] == 300
    z = bonferroni_z(1, 1 - ALPHA)
    gain = last["val_elbo"] - first["val_elbo"]
    assert gain > z * math.hypot(first["val_elbo_se"], last["val_elbo_se"]), (first, last, "seed=0")
    assert res["summary"]["test_bound"] >= res["summary"]["test_elbo"] - 3 * res["summary"]["test_bound_se"]


FITTING = {"relax", "double_cv", "rodeo"}  # the estimators that declare fitted state


@pytest.mark.parametrize(
    ("estimator", "hyper"),
    [("relax", {}), ("vimco", {}), ("rodeo", {}), ("double_cv", {"fit_samples": 256})],
)
def test_resume_equals_an_uninterrupted_run(tmp_path: Path, estimator: str, hyper: dict) -> None:
    """Killed at step 50 (state saved at 40, refitted at 30), resumed: same curves, bit for bit.  The fits of RELAX
    and of the fitted control-variate coefficients (double CV, RODEO) go through their declared fitted-state hook
    (harness.fits): saved with the state, restored on resume."""
    from harness.training.state import read_state

    fitted = get_declaration(estimator).state
    assert (fitted is not None) == (estimator in FITTING)
    kw = dict(estimator=estimator, hyper=hyper, steps=80, log_every=20, refit_every=30, n_samples=3)
    straight = train_unit(_unit(**kw))
    if fitted is not None:
        fitted.forget({})
    stateful = _unit(tmp_path, **kw)
    kill_at(stateful, 50)
    if fitted is not None:
        fitted.forget({})  # a fresh process: the fit comes back from the state file
    _, meta = read_state(Path(stateful["state_path"]))
    assert meta["step"] == 40
    if fitted is not None:  # the fit of refit step 30 only (older ones are forgotten)
        assert [r["target"]["refit"] for r in meta["fits"]] == [30]
    resumed = train_unit(stateful)
    assert resumed["status"] == "ok", resumed["message"]
    assert_same_curves(straight, resumed)
    assert straight["summary"]["test_bound"] == resumed["summary"]["test_bound"]


def test_plugin_fitted_state_is_saved_with_the_state_and_restored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plugin estimator declaring its fits with sg.FitCache (docs/plugins.md): training saves the fit of the
    current refit step, a resumed unit restores it instead of fitting again, and the curves equal a straight run."""
    import hashlib

    import stochgrad as sg
    from harness import registry

    made: list[dict] = []
    fits = sg.FitCache("toy_fitted_baseline", to_json=lambda b: {"b": b}, from_json=lambda d: d["b"])
    est = sg.register_estimator(
        "toy_fitted_baseline", distributions=["bernoulli"], unbiased=True, state=fits.declaration()
    )

    @est.implementation("torch")
    def toy(ctx):  # noqa: ANN001, ANN202
        target = ctx.problem.spec.to_dict()
        b = fits.get(target, {})
        if b is None:  # "fit": a constant baseline, a deterministic function of the target (unbiased for any value)
            made.append(target)
            b = fits.put(
                target, {}, int(hashlib.sha256(repr(sorted(target.items())).encode()).hexdigest()[:4], 16) / 65536
            )
        P = ctx.batched()
        z = ctx.sample(P)
        w = ctx.B.stop_gradient(ctx.f(z) - b)
        return ctx.B.grad_batched(lambda Q: (w * ctx.log_prob(z, Q)).mean(1), P)

    try:
        kw = dict(estimator="toy_fitted_baseline", steps=80, log_every=20, refit_every=30)
        straight = train_unit(_unit(**kw))
        assert straight["status"] == "ok", straight["message"]
        assert [t["refit"] for t in made] == [0, 30, 60]
        fits.forget({})
        made.clear()
        u = _unit(tmp_path, **kw)
        kill_at(u, 50)
        fits.forget({})  # a new process
        made.clear()
        resumed = train_unit(u)
        assert [t["refit"] for t in made] == [60], "the fit of refit step 30 was restored, not redone"
        drop = [c for c in straight["rows"][0] if "time" in c]
        pd.testing.assert_frame_equal(
            pd.DataFrame(straight["rows"]).drop(columns=drop), pd.DataFrame(resumed["rows"]).drop(columns=drop)
        )
    finally:
        registry.unregister("toy_fitted_baseline")


@pytest.mark.parametrize(
    ("raised", "reason"),
    [(KeyboardInterrupt(), "the estimator raised KeyboardInterrupt (no Ctrl-C was pressed)"), (SystemExit(3), "")],
)
def test_an_estimator_that_exits_fails_only_its_unit(raised: BaseException, reason: str) -> None:
    """A plugin whose step raises KeyboardInterrupt by itself (no Ctrl-C) or SystemExit fails its unit with the
    reason, as a cell fails in `stochgrad run`; it used to stop the whole training run (KeyboardInterrupt).  A unit
    of a well-behaved estimator right after it trains normally.  A real Ctrl-C still stops: the SIGINT handler
    installed for the unit marks it, and the interrupt is re-raised (the handler is the one cells use,
    harness.registry.interrupts, tested through `stochgrad run` in test_hardening.py / test_cli_e2e.py)."""
    import signal

    import stochgrad as sg
    from harness import registry

    est = sg.register_estimator("toy_exits", distributions=["bernoulli"], unbiased=True)

    @est.implementation("torch")
    def exits(ctx):  # noqa: ANN001, ANN202
        raise raised

    handler = signal.getsignal(signal.SIGINT)
    try:
        res = train_unit(_unit(estimator="toy_exits", steps=20, log_every=10))
        assert res["status"] == "failed"
        assert res["message"].startswith(reason or "SystemExit: 3"), res["message"]
        assert res["seconds"] > 0 and res["rows"] == []
        assert signal.getsignal(signal.SIGINT) is handler, "the unit's SIGINT handler was not restored"
        ok = train_unit(_unit(steps=20, log_every=10))
        assert ok["status"] == "ok", ok["message"]
    finally:
        registry.unregister("toy_exits")


def test_online_variance_agrees_with_offline_measurement(tmp_path: Path) -> None:
    """Fixed batch, lr → 0: the EMA variance estimates the runner's per-coordinate variance at the saved state.

    The online value is a weighted sample variance of M i.i.d. step gradients with weights w_t ∝ β^(M−t):
    E = σ²(1 − 1/n_eff), SE = sd(u)/√n_eff with n_eff = (Σw)²/Σw² and u_r the per-replicate mean squared
    deviation (its spread measured on the offline replicates)."""
    from harness.measure.offline import offline_encoder_grads, saved_weights

    M, beta, R, seed = 400, 0.99, 4000, 3
    u = _unit(tmp_path, steps=M, log_every=M, lr=1e-12, fixed_batch=True, batch_size=4, ema_decay=beta, seed=seed)
    res = train_unit(u)
    assert res["status"] == "ok", res["message"]
    online = res["rows"][-1]["grad_var"]
    G = offline_encoder_grads(u, saved_weights(u["state_path"]), R, seed)
    dev = (G - G.mean(0)) ** 2 * R / (R - 1)
    u_r = dev.mean(1)
    offline = float(u_r.mean())
    w = beta ** np.arange(M)[::-1]
    n_eff = w.sum() ** 2 / (w**2).sum()
    se = float(u_r.std(ddof=1)) * math.sqrt(1 / n_eff + 1 / R)
    z = bonferroni_z(1, 1 - ALPHA)
    assert z * se < 0.3 * offline, f"underpowered: cannot detect a 30% discrepancy (se={se:.3g}, seed={seed})"
    expected = offline * (1 - 1 / n_eff)
    assert abs(online - expected) <= z * se, (
        f"online {online:.4g} vs offline {expected:.4g} ± {z * se:.3g} (seed={seed})"
    )


# -- multi-sample estimators -----------------------------------------------------------------------
def _check_unbiased(
    G: dict[str, np.ndarray], exact: dict[str, np.ndarray], wrong: dict[str, np.ndarray], label: str, seed: int
) -> None:
    """Bonferroni z-test over all coordinates, a power check (a 10% bias of the largest |gradient| is
    detectable) and a control: the single-sample (ELBO) gradient would be rejected as the K-sample target."""
    n = sum(v.size for v in exact.values())
    z = bonferroni_z(n, 1 - ALPHA)
    for k, g in G.items():
        m, se = g.mean(0), g.std(0, ddof=1) / math.sqrt(g.shape[0])
        scale = float(np.abs(exact[k]).max())
        assert np.all(z * se < 0.1 * scale + 1e-12), f"{label} {k}: underpowered se={se} scale={scale} (seed={seed})"
        assert np.all(np.abs(m - exact[k]) <= z * se), (
            f"{label} {k}: mean {m} vs exact {exact[k]} ± {z * se} (seed={seed})"
        )
        assert np.any(np.abs(wrong[k] - exact[k]) > z * se), (
            f"{label} {k}: cannot tell the K-sample target from the ELBO's"
        )


def _bernoulli_bound_grad(problem, K: int) -> np.ndarray:
    """∇_η of −E[log (1/K) Σ_k w_k] by enumerating all K-tuples of {0,1}^D (torch autograd of the exact sum)."""
    import torch

    D = problem.dim
    cfgs = np.array(list(itertools.product([0.0, 1.0], repeat=D)))
    eta0 = problem.params_np["logits"]
    lq0 = (cfgs * -np.logaddexp(0, -eta0) + (1 - cfgs) * -np.logaddexp(0, eta0)).sum(-1)
    lp = -problem.f_np(cfgs[None])[0] + lq0  # log p(x, z) per configuration
    eta = torch.tensor(eta0, requires_grad=True)
    c = torch.tensor(cfgs)
    lq = (c * torch.nn.functional.logsigmoid(eta) + (1 - c) * torch.nn.functional.logsigmoid(-eta)).sum(-1)
    total = 0.0
    for t in itertools.product(range(len(cfgs)), repeat=K):
        idx = list(t)
        lw = torch.tensor(lp[idx]) - lq[idx]
        total = total + torch.exp(lq[idx].sum()) * (torch.logsumexp(lw, 0) - math.log(K))
    (g,) = torch.autograd.grad(-total, eta)
    return g.numpy()


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_vimco_unbiased_by_enumeration(backend: str) -> None:
    spec = WorkloadSpec("vae_bernoulli", {"latent_dim": 2}, checkpoint=0, split="val", batch_size=1)
    problem = spec.build()
    K, R, seed = 3, 40000, 11
    exact = {"logits": _bernoulli_bound_grad(problem, K)}
    elbo = {"logits": _bernoulli_bound_grad(problem, 1)}
    G, _ = estimate(MeasureRequest(get_estimator("vimco", backend), problem, L=K, R=R, seed=seed))
    _check_unbiased(G, exact, elbo, f"vimco[{backend}]", seed)


def _gaussian_bound_grad(problem, K: int, n: int) -> dict[str, np.ndarray]:
    """∇ of −E[log (1/K) Σ w_k] for D = 1 by an n^K-point Gauss–Hermite grid over (ε_1..ε_K), autograd in torch."""
    import torch

    from harness.backends import get_backend

    T = get_backend("torch")
    wl, cfg = problem.workload, problem.cfg
    x, ep = np.polynomial.hermite_e.hermegauss(n)
    wq = ep / math.sqrt(2 * math.pi)
    grid = np.array(list(itertools.product(x, repeat=K)))  # [n^K, K]
    wts = np.prod(np.array(list(itertools.product(wq, repeat=K))), axis=1)
    loc = torch.tensor(problem.params_np["loc"], requires_grad=True)
    scale = torch.tensor(problem.params_np["scale"], requires_grad=True)
    z = loc + scale * torch.tensor(grid)[..., None]  # [n^K, K, 1]
    params = {k: torch.tensor(v) for k, v in problem.state.items()}
    xx = {k: torch.tensor(v) for k, v in problem.x.items()}
    lp = wl.log_joint(T, z[..., None, :], params, xx, cfg)[..., 0]  # [n^K, K]
    lq = (-0.5 * ((z - loc) / scale) ** 2 - torch.log(scale) - 0.5 * math.log(2 * math.pi)).sum(-1)
    bound = (torch.tensor(wts) * (torch.logsumexp(lp - lq, 1) - math.log(K))).sum()
    g = torch.autograd.grad(-bound, [loc, scale])
    return {"loc": g[0].numpy(), "scale": g[1].numpy()}


@pytest.mark.parametrize("backend", ["torch", "jax"])
@pytest.mark.parametrize("name", ["dreg", "iwae_pathwise"])
def test_dreg_and_iwae_unbiased_by_quadrature(name: str, backend: str) -> None:
    spec = WorkloadSpec("vae_gaussian", {"latent_dim": 1}, checkpoint=0, split="val", batch_size=1)
    problem = spec.build()
    K, R, seed = 2, 40000, 13
    exact = _gaussian_bound_grad(problem, K, 60)
    finer = _gaussian_bound_grad(problem, K, 90)
    elbo = _gaussian_bound_grad(problem, 1, 60)
    G, _ = estimate(MeasureRequest(get_estimator(name, backend), problem, L=K, R=R, seed=seed))
    for k in exact:  # the quadrature's own error is far below the test's resolution (1% of a standard error)
        se = G[k].std(0, ddof=1) / math.sqrt(R)
        assert np.all(np.abs(exact[k] - finer[k]) < 0.01 * se), (k, exact[k], finer[k], se)
    _check_unbiased(G, exact, elbo, f"{name}[{backend}]", seed)


def test_multi_sample_estimators_are_not_expanded_on_toy_problems_or_workload_cells() -> None:
    from harness.measure.check import applicable_problems
    from harness.registry import applies

    specs = [s for s in implementations() if "multi_sample_bound" in s.requires]
    assert {s.name for s in specs} == {"dreg", "iwae_pathwise", "vimco"}
    for s in specs:
        assert applicable_problems(s) == [], s.name
        ws = WorkloadSpec("vae_gaussian" if s.name != "vimco" else "vae_bernoulli", {"latent_dim": 2})
        ok, why = applies(s, ws.traits())
        assert not ok and "multi-sample" in why


# -- suites, CLI, report ----------------------------------------------------------------------------
BAD = [
    ('estimators = ["nope"]', "train[0].estimators", "unknown estimator"),
    ('estimators = ["vimco"]\nworkload = "vae_gaussian"', "train[0].estimators", "does not apply"),
    ('estimators = ["vimco"]\nn_samples = 1', "train[0].estimators", "n_samples L >= 2"),
    ('estimators = ["disarm"]\nlr = [-1.0]', "train[0].lr", "positive"),
    ('estimators = ["disarm"]\nbackends = ["numpy"]', "train[0].backends", "support"),
    ('estimators = ["disarm"]\nstepz = 3', "train[0].stepz", "unknown key"),
    (
        'estimators = ["disarm"]\nhyper = { disarm = { temperature = 1.0 } }',
        "train[0].hyper.disarm.temperature",
        "unknown",
    ),
    ('estimators = ["disarm"]\nconfig = { latent_dim = 0 }', "train[0].config.latent_dim", "positive"),
]


@pytest.mark.parametrize(("body", "key", "words"), BAD, ids=[b[1] + "-" + b[2] for b in BAD])
def test_bad_training_configuration_exits_2_and_writes_nothing(
    tmp_path: Path, capsys, body: str, key: str, words: str
) -> None:
    from harness.cli.main import main

    lines = body.splitlines()
    wl = next((ln for ln in lines if ln.startswith("workload")), 'workload = "vae_bernoulli"')
    rest = "\n".join(ln for ln in lines if not ln.startswith("workload"))
    f = tmp_path / "bad.toml"
    f.write_text(f'[suite]\nname = "bad"\n[[train]]\n{wl}\n{rest}\n')
    out = tmp_path / "run"
    assert main(["train", str(f), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert str(f) in err and key in err and words in err, err
    assert not out.exists()


def test_cli_train_writes_curves_results_and_resumes(tmp_path: Path) -> None:
    from harness.cli.main import main
    from harness.results import undeclared

    f = tmp_path / "s.toml"
    f.write_text(
        '[suite]\nname = "tiny"\n[[train]]\nworkload = "vae_bernoulli"\nconfig = { latent_dim = 3 }\n'
        'estimators = ["disarm", "vimco"]\nseeds = [0, 1]\nsteps = 20\nlog_every = 10\nval_size = 20\n'
        "test_size = 20\ntest_samples = 5\n"
    )
    out = tmp_path / "run"
    assert main(["train", str(f), "--out", str(out)]) == 0
    curves, res = pd.read_parquet(out / "curves.parquet"), pd.read_parquet(out / "results.parquet")
    assert len(res) == 4 and len(curves) == 4 * 3
    assert set(res["objective"]) == {"elbo", "iwae2"}
    assert undeclared(list(res.columns)) == []
    assert main(["train", str(f), "--out", str(out)]) == 2  # exists: needs --resume
    assert main(["train", str(f), "--out", str(out), "--resume"]) == 0
    assert pd.read_parquet(out / "results.parquet").equals(res)
    _, units = load_train_suite(f)
    assert len(units) == 4
    html = tmp_path / "train.html"  # `stochgrad report` and `compare` dispatch on meta.json kind = "training"
    assert main(["report", str(out), "-o", str(html)]) == 0
    page = html.read_text()
    assert "training report" in page and "disarm" in page and "data:image/png;base64," in page and "<table" in page
    assert main(["report", str(out), "suites/smoke.toml", "-o", str(html)]) == 2
    assert main(["compare", str(out), str(out)]) == 0


def test_report_section_and_compare(tmp_path: Path) -> None:
    from harness.report.training import compare_training, training_section

    u = [
        _unit(estimator=e, seed=s, steps=20, log_every=10, val_size=20, test_size=20)
        for e in ("disarm", "arm")
        for s in (0, 1)
    ]
    curves, res = run_training({"name": "rep"}, u, tmp_path / "run", log=lambda s: None)
    sec = training_section(curves, res)
    assert {"figures", "tables"} <= set(sec)
    table = sec["tables"]["final"]
    assert set(table["estimator"]) == {"disarm", "arm"} and (table["seeds"] == 2).all()
    assert all(fig.startswith("data:image/png;base64,") for fig in sec["figures"].values())
    same = compare_training(res, res)
    assert len(same) == 2 and (same["bound_diff"] == 0).all() and not same["significant"].any()
    shift = 100 * (res["test_bound"].std() + 0.01)  # far beyond the seeds' spread (t with ~1 df: crit ~13)
    shifted = compare_training(res, res.assign(test_bound=res["test_bound"] + shift))
    assert shifted["significant"].all() and (shifted["bound_diff_ci_low"] > 0).all()


def test_shipped_training_suites_expand() -> None:
    from harness.backends import get_backend
    from harness.suite.expand import SuiteError

    root = Path(__file__).resolve().parents[1] / "suites"
    suite, units = load_train_suite(root / "train.toml")
    need = {"score_function_rloo", "arm", "disarm", "relax", "gumbel_softmax", "st_gumbel", "vimco"}
    assert {u["estimator"] for u in units} >= need and len({u["seed"] for u in units}) == 3
    assert {u["workload"] for u in units} == {"vae_bernoulli"} and {u["device"] for u in units} == {"cpu"}
    if "cuda" in get_backend("torch").devices():
        _, gpu = load_train_suite(root / "train_gpu.toml")
        assert {u["config"]["latent_dim"] for u in gpu} == {200} and {u["batch_size"] for u in gpu} == {100}
        assert min(u["steps"] for u in gpu) >= 1000 and {u["device"] for u in gpu} == {"cuda"}
    else:  # no GPU here: the suite is refused with the reason, before anything runs
        with pytest.raises(SuiteError, match=r"devices.*cuda"):
            load_train_suite(root / "train_gpu.toml")


def test_runner_argument_takes_any_executor(tmp_path: Path) -> None:
    """Units are JSON-able and train_unit is module-level: a runner that ships them elsewhere (here: JSON round
    trip, reversed order, like an executor returning out of order) gives the same tables as the default."""
    import json

    units = [
        _unit(estimator=e, steps=10, log_every=5, val_size=10, test_size=10, test_samples=3) for e in ("arm", "vimco")
    ]

    def shipping(fn, us):
        for u in reversed([json.loads(json.dumps(u)) for u in us]):
            yield json.loads(json.dumps(fn(u)))

    c1, r1 = run_training({"name": "x"}, units, tmp_path / "a", log=lambda s: None)
    c2, r2 = run_training({"name": "x"}, units, tmp_path / "b", runner=shipping, log=lambda s: None)
    drop = [c for c in c1.columns if "time" in c]
    pd.testing.assert_frame_equal(c1.drop(columns=drop), c2.drop(columns=drop))
    cols = ["estimator", "test_bound", "final_val_elbo"]
    pd.testing.assert_frame_equal(r1[cols], r2[cols])


def _step_cases() -> list:
    from harness.registry import applies, declarations
    from harness.training import step_traits
    from harness.workloads import get_workload

    out = []
    for wname, cfg in (
        ("vae_bernoulli", {"latent_dim": 3, "hidden": 4}),
        ("vae_categorical", {"groups": 2, "categories": 3}),
    ):
        wl = get_workload(wname)
        for d in declarations():
            trains = applies(d, step_traits(wl), n_samples=2)[0]
            if d.unbiased and "multi_sample_bound" not in d.requires and "torch" in d.impls and trains:
                out.append(pytest.param(wname, cfg, d.name, id=f"{wname}-{d.name}"))
    return out


STEP_CASES = _step_cases()


def _coords(wname: str, cfg: dict) -> int:
    from harness.workloads import get_workload

    wl = get_workload(wname)
    return int(np.prod(wl.latent_shape(wl.resolve(cfg))))


@pytest.mark.parametrize(("wname", "cfg", "est"), STEP_CASES)
def test_training_step_gives_each_example_its_unbiased_gradient(wname: str, cfg: dict, est: str) -> None:
    """The examples-as-replicates step, for every unbiased estimator that trains: the batch tiled R times in one
    call gives R independent per-example gradients, whose mean matches the enumeration truth of each example's
    own f_b (Bonferroni z over all coordinates of all cases; power: a bias of 25% of the gradient's RMS is
    detectable)."""
    import torch

    from harness.backends import get_backend
    from harness.measure.offline import workload_problem
    from harness.problems import DISTRIBUTIONS
    from harness.training.step import StepProblem, encoder_gradient
    from harness.workloads import get_workload

    # plain REINFORCE (no baseline) is far noisier here: more replicates and a stated, larger detectable bias
    # (the gradient's whole RMS: a sign or factor-2 error is still caught)
    R, detectable = (400_000, 1.0) if est == "score_function" else (20_000, 0.25)
    N, seed = 2, 5
    wl = get_workload(wname)
    full = wl.resolve(cfg)
    state = wl.init_params(full, np.random.default_rng(seed))
    problem = workload_problem(_unit(workload=wname, config=full, estimator=est, batch_size=N, seed=seed), state)
    latent = tuple(wl.latent_shape(full))
    exact = problem.exact.grads["logits"].reshape(N, *latent)
    T = get_backend("torch")
    t = {k: torch.tensor(v) for k, v in state.items()}
    x = {k: torch.tensor(np.tile(v, (R,) + (1,) * (v.ndim - 1))) for k, v in problem.x.items()}
    eta = wl.encode(T, t, x, full)
    dist = DISTRIBUTIONS[wl.latent]
    enc = set(wl.encoder_keys(full))
    dec = {k: v for k, v in t.items() if k not in enc}
    x0 = {k: v[:1] for k, v in problem.x.items()}
    sp = StepProblem(wl, full, dist, state, x0, {k: T.to_numpy(v[:1]) for k, v in eta.items()}, {"test": est})
    spec = get_estimator(est, "torch")
    g = encoder_gradient(
        spec,
        T,
        wl,
        full,
        dist,
        dec,
        x,
        eta,
        T.numpy_noise(np.random.default_rng(seed), "float64", "cpu"),
        2,
        spec.defaults(),
        "float64",
        "cpu",
        sp,
    )["logits"]
    G = T.to_numpy(g).reshape(R, N, *latent)
    m, se = G.mean(0), G.std(0, ddof=1) / math.sqrt(R)
    n_tests = sum(N * _coords(w, c) for w, c, _ in (p.values for p in STEP_CASES))
    z = bonferroni_z(n_tests, 1 - ALPHA)
    rms = float(np.sqrt(np.mean(exact**2)))
    assert z * float(se.max()) < detectable * rms, (
        f"{est} on {wname}: underpowered (se max {se.max():.3g}, rms {rms:.3g}, seed={seed})"
    )
    worst = float(np.max(np.abs(m - exact) / se))
    assert worst <= z, f"{est} on {wname}: |mean - exact|/se = {worst:.2f} > {z:.2f} (seed={seed})"


def test_train_with_dask_workers_equals_serial(tmp_path: Path) -> None:
    """`stochgrad train --workers 2` runs units on a local Dask cluster (real worker processes) and gives the
    same curves and bounds as the in-process run (timing columns excepted)."""
    from harness.cli.main import main

    f = tmp_path / "s.toml"
    f.write_text(
        '[suite]\nname = "tiny-dask"\n[[train]]\nworkload = "vae_bernoulli"\nconfig = { latent_dim = 3 }\n'
        'estimators = ["disarm"]\nseeds = [0, 1]\nsteps = 10\nlog_every = 5\nval_size = 10\n'
        "test_size = 10\ntest_samples = 3\n"
    )
    assert main(["train", str(f), "--out", str(tmp_path / "serial")]) == 0
    assert main(["train", str(f), "--out", str(tmp_path / "dask"), "--workers", "2"]) == 0
    timing = [
        c for c in pd.read_parquet(tmp_path / "serial" / "curves.parquet").columns if "time" in c or c == "run_id"
    ]
    for name in ("curves.parquet", "results.parquet"):
        a = pd.read_parquet(tmp_path / "serial" / name)
        b = pd.read_parquet(tmp_path / "dask" / name)
        drop = [c for c in a.columns if c in timing or "time" in c or c.endswith("_per_s") or c == "run_id"]
        key = [c for c in ("unit_key", "step") if c in a.columns]
        a, b = (x.drop(columns=drop).sort_values(key).reset_index(drop=True) for x in (a, b))
        pd.testing.assert_frame_equal(a, b)
    assert main(["train", str(f), "--out", str(tmp_path / "bad"), "--scheduler", "tcp://127.0.0.1:1"]) == 2
    assert not (tmp_path / "bad").exists()
