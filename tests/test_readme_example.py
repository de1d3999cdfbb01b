"""Bring your own model: the README's PyTorch example run exactly as written, ``workload_from_torch`` with torch
Datasets, ``workload_from_jax``, and their errors.

Each model's truth is checked against an enumeration written here from the user's own modules (not the harness's),
and unbiased estimators against that truth: fixed seeds (printed on failure), a two-sided z-test per coordinate
with a Bonferroni correction over every coordinate tested, and a power check (the critical z times the largest
standard error is below a stated detectable bias); a declared-biased estimator must be detected by the same test.
"""

from __future__ import annotations

import copy
import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

import stochgrad as sg
from harness.measure.check import draw
from harness.registry import get_estimator
from harness.training.engine import ENGINES
from harness.workloads import unregister_workload

ROOT = Path(__file__).resolve().parents[1]
ALPHA = 1e-3  # family-wise level of each z-test below


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOCHGRAD_CACHE", str(tmp_path / "cache"))


def readme_code() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Bring your own model", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def configs(latent: str, shape: tuple[int, ...]) -> np.ndarray:
    """Every latent configuration of one example: [C, *shape] (binary vectors, or one-hot groups)."""
    if latent == "bernoulli":
        return np.array(list(itertools.product([0.0, 1.0], repeat=shape[0])))
    G, K = shape
    eye = np.eye(K)
    return np.array([np.stack([eye[i] for i in combo]) for combo in itertools.product(range(K), repeat=G)])


def enumerate_torch(encoder: Any, log_joint: Any, x: Any, latent: str, shape: tuple[int, ...]) -> np.ndarray:
    """∇_η E_q[log q(z; η) − log p(x, z)] for each example of x, by enumeration in float64 with the user's modules
    (copies in float64); [N · prod(shape)] in the harness's order (examples, then latents)."""
    import torch

    enc, lj = copy.deepcopy(encoder).double(), log_joint
    if isinstance(lj, torch.nn.Module):
        lj = copy.deepcopy(lj).double()
    x = torch.as_tensor(x, dtype=torch.float64)
    Z = torch.as_tensor(configs(latent, shape))  # [C, *shape]
    out = []
    for b in range(x.shape[0]):
        eta = enc(x[b : b + 1]).reshape(1, *shape).detach().requires_grad_(True)
        if latent == "bernoulli":
            logq = (Z * torch.nn.functional.logsigmoid(eta) + (1 - Z) * torch.nn.functional.logsigmoid(-eta)).sum(-1)
        else:
            logq = (Z * torch.log_softmax(eta, -1)).sum((-1, -2))
        with torch.no_grad():
            f = logq.detach() - lj(Z[:, None], x[b : b + 1])[:, 0]  # [C]
        (g,) = torch.autograd.grad((logq.exp() * f).sum(), eta)
        out.append(g.reshape(-1).numpy())
    return np.concatenate(out)


def z_test(name: str, backend: str, problem: Any, exact: np.ndarray, *, R: int, seed: int, n_tests: int) -> float:
    """Largest |z| of the estimator's mean against ``exact`` over coordinates, and the power check."""
    G = draw(get_estimator(name, backend), problem, L=2, R=R, seed=seed)["logits"].reshape(R, -1)
    se = G.std(0, ddof=1) / math.sqrt(R)
    zc = stats.norm.isf(ALPHA / (2 * n_tests))
    detectable = 0.2 * float(np.sqrt(np.mean(exact**2)))  # a bias of 20% of the gradient's RMS
    assert zc * se.max() < detectable, f"{name}[{backend}] seed={seed}: underpowered, SE {se.max():.3g}"
    return float(np.max(np.abs(G.mean(0) - exact) / se))


def test_readme_torch_example_runs_as_written(tmp_path: Path) -> None:
    code = readme_code()
    assert len(code.splitlines()) <= 15, "the README's model must stay within 15 lines"
    assert "results/my-vae" in code and "import harness" not in code
    ns: dict[str, Any] = {}
    try:
        exec(compile(code.replace("results/my-vae", (tmp_path / "my-vae").as_posix()), "README.md", "exec"), ns)
        assert sg.list_workloads("my_vae") == ["my_vae"]
        run = ns["run"]
        assert run.complete and run.failed == []
        df = run.results
        assert set(df["workload"]) == {"my_vae"} and set(df["backend"]) == {"torch"}
        assert set(df["exact_method"]) == {"enumeration"} and set(df["checkpoint"]) == {0, 50}
        assert set(df["param"]) == {"eta", "encoder"}
        # the run's own bias verdicts: unbiased rows pass a Bonferroni z-test over every coordinate of the run,
        # straight-through (declared biased) is caught by the same test
        eta = df[df.param == "eta"]
        zc = stats.norm.isf(ALPHA / (2 * int(eta["n_coords"].sum())))
        unbiased = eta[eta.unbiased]
        assert set(unbiased["estimator"]) == {"disarm", "score_function_rloo"}
        assert (unbiased["bias_z"] <= zc).all(), unbiased[["estimator", "checkpoint", "bias_z"]]
        assert (eta[eta.estimator == "straight_through"]["bias_z"] > zc).all()
        assert run.report(tmp_path / "report.html").stat().st_size > 10_000

        # the harness's truth against an enumeration from the README's own modules, at the given weights
        problem = sg.WorkloadSpec("my_vae", {}, checkpoint=0, batch_size=2, batch_seed=5).build()
        exact = enumerate_torch(ns["encoder"], ns["decoder"], problem.x["x"], "bernoulli", (8,))
        np.testing.assert_allclose(problem.exact.grads["logits"].ravel(), exact, rtol=1e-9, atol=1e-12)
        n_tests = 3 * exact.size
        for name, seed in (("disarm", 11), ("score_function_rloo", 12)):
            z = z_test(name, "torch", problem, exact, R=20_000, seed=seed, n_tests=n_tests)
            assert z <= stats.norm.isf(ALPHA / (2 * n_tests)), f"{name} seed={seed}: max |z| = {z:.2f}"
        z = z_test("straight_through", "torch", problem, exact, R=20_000, seed=13, n_tests=n_tests)
        assert z > stats.norm.isf(ALPHA / (2 * n_tests)), f"straight_through seed=13 not detected: {z:.2f}"
    finally:
        unregister_workload("my_vae")


def _digits_dataset(cls: Any) -> dict[str, Any]:
    import torch

    return {k: cls(torch.as_tensor((v > 0.5) * 1.0)) for k, v in sg.datasets.digits(0).items()}


def test_workload_from_torch_with_datasets_trains_and_is_unbiased(tmp_path: Path) -> None:
    """A categorical model whose data are torch Datasets (TensorDataset items are 1-tuples), log_joint a plain
    function: truth by enumeration, RLOO unbiased, and a short ``stochgrad train`` run through the public API."""
    import torch
    from torch import nn
    from torch.utils.data import TensorDataset

    torch.manual_seed(0)
    G, K = 2, 3
    enc = nn.Sequential(nn.Linear(64, 8), nn.Tanh(), nn.Linear(8, G * K))  # [N, G·K] logits: reshaped to [N, G, K]
    dec = nn.Linear(G * K, 64).double()

    def log_joint(z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:  # a function: dec stays fixed
        logits = dec(z.flatten(-2).to(dec.weight.dtype)).to(z.dtype)
        return (x * logits - nn.functional.softplus(logits)).sum(-1) - G * math.log(K)

    name = "my_cat_vae"
    try:
        wl = sg.workload_from_torch(
            name, enc, log_joint, _digits_dataset(TensorDataset), "categorical", (G, K), config={"train_batch": 8}
        )
        assert wl.backends == ("torch",) and wl.train_estimator == "score_function_rloo"
        assert wl.encoder_keys({}) and all(k.startswith("enc.") for k in wl.param_shapes({}))
        problem = sg.WorkloadSpec(name, {}, checkpoint=0, batch_size=2).build()
        assert problem.exact.method == "enumeration"
        exact = enumerate_torch(enc, log_joint, problem.x["x"], "categorical", (G, K))
        np.testing.assert_allclose(problem.exact.grads["logits"].ravel(), exact, rtol=1e-9, atol=1e-12)
        z = z_test("score_function_rloo", "torch", problem, exact, R=20_000, seed=21, n_tests=exact.size)
        assert z <= stats.norm.isf(ALPHA / (2 * exact.size)), f"score_function_rloo seed=21: max |z| = {z:.2f}"

        suite = tmp_path / "train.toml"
        suite.write_text(
            '[suite]\nname = "byo-train"\nseed = 0\n\n[[train]]\n'
            f'workload = "{name}"\nestimators = ["score_function_rloo", "gumbel_softmax"]\nseeds = [0]\n'
            "steps = 6\nbatch_size = 8\nn_samples = 2\nlog_every = 3\nval_size = 20\ntest_samples = 4\n"
        )
        tr = sg.train(suite, out=tmp_path / "train")
        assert tr.complete
        assert set(tr.curves["estimator"]) == {"score_function_rloo", "gumbel_softmax"}
        assert len(tr.curves) == 2 * 3 and np.isfinite(tr.curves["val_elbo"]).all()
        # training from the given weights moves them: a later checkpoint differs from step 0
        later = sg.WorkloadSpec(name, {}, checkpoint=3, batch_size=2).build()
        assert any(not np.array_equal(later.state[k], problem.state[k]) for k in problem.encoder_params)
    finally:
        unregister_workload(name)


def test_workload_from_torch_dict_dataset_and_reinit() -> None:
    """Datasets yielding dicts give the model a dict; ``reinit`` draws fresh weights per seed, leaving the modules
    as they were."""
    import torch
    from torch import nn
    from torch.utils.data import Dataset

    class Pairs(Dataset):
        def __init__(self, X: np.ndarray, y: np.ndarray) -> None:
            self.X, self.y = torch.as_tensor(X), torch.as_tensor(y, dtype=torch.float64)

        def __len__(self) -> int:
            return len(self.X)

        def __getitem__(self, i: int) -> dict:
            return {"X": self.X[i], "y": self.y[i]}

    class Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.loc = nn.Linear(30, 2)
            self.raw = nn.Linear(30, 2)

        def forward(self, b: dict) -> tuple:
            return self.loc(b["X"]), nn.functional.softplus(self.raw(b["X"])) + 1e-3

    def log_joint(z: torch.Tensor, b: dict) -> torch.Tensor:  # y ~ Bernoulli(sigmoid(z0 + z1 · X0)), N(0, 1) prior
        a = z[..., 0] + z[..., 1] * b["X"][:, 0]
        return b["y"] * a - nn.functional.softplus(a) - 0.5 * (z**2).sum(-1)

    enc = Encoder()
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    data = {k: Pairs(X, y) for k, (X, y) in sg.datasets.breast_cancer(0).items()}
    try:
        wl = sg.workload_from_torch("my_normal", enc, log_joint, data, "normal", 2, reinit=True)
        assert wl.structure == "dict" and set(wl.dataset({})["train"]) == {"X", "y"}
        a, b = (wl.init_params({}, np.random.default_rng(s)) for s in (0, 1))
        assert set(a) == set(wl.weights0) and any(not np.array_equal(a[k], b[k]) for k in a)
        assert all(torch.equal(before[k], v) for k, v in enc.state_dict().items())
        problem = sg.WorkloadSpec("my_normal", {"reference_samples": 200}, checkpoint=0, batch_size=2).build()
        assert problem.exact.method == "reference" and set(problem.params_np) == {"loc", "scale"}
    finally:
        unregister_workload("my_normal")


def enumerate_jax(encode: Any, log_joint: Any, pe: Any, pd: Any, x: np.ndarray, D: int) -> np.ndarray:
    """The same enumeration in JAX from the user's pure functions (jax.grad of Σ_z q(z; η) f(z; η fixed))."""
    import jax
    import jax.numpy as jnp

    Z = jnp.asarray(configs("bernoulli", (D,)))
    out = []
    for b in range(x.shape[0]):
        xb = jnp.asarray(x[b : b + 1])
        eta0 = encode(pe, xb).reshape(1, D)

        def logq(eta: Any) -> Any:
            return (Z * jax.nn.log_sigmoid(eta) + (1 - Z) * jax.nn.log_sigmoid(-eta)).sum(-1)

        f = logq(eta0) - log_joint(pd, Z[:, None], xb)[:, 0]
        out.append(np.asarray(jax.grad(lambda e: (jnp.exp(logq(e)) * f).sum())(eta0)).ravel())
    return np.concatenate(out)


def test_workload_from_jax_pure_functions(tmp_path: Path) -> None:
    pytest.importorskip("jax")
    import jax
    import jax.numpy as jnp

    D, H = 4, 6
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
    pe = {"W": 0.3 * jax.random.normal(k1, (64, D)), "b": jnp.zeros(D)}  # a linear encoder
    pd = {"hidden": {"W": 0.3 * jax.random.normal(k2, (D, H))}, "out": {"W": 0.3 * jax.random.normal(k3, (H, 64))}}

    def encode(p: Any, x: Any) -> Any:
        return x @ p["W"] + p["b"]

    def log_joint(p: Any, z: Any, x: Any) -> Any:
        logits = jnp.tanh(z @ p["hidden"]["W"]) @ p["out"]["W"]
        return (x * logits - jax.nn.softplus(logits)).sum(-1) - D * math.log(2)

    data = {k: (v > 0.5) * 1.0 for k, v in sg.datasets.digits(0).items()}
    name = "my_jax_vae"
    try:
        wl = sg.workload_from_jax(name, encode, log_joint, data, "bernoulli", D, encoder_params=pe, decoder_params=pd)
        assert wl.backends == ("jax",)
        assert set(wl.encoder_keys({})) == {"enc.['W']", "enc.['b']"}
        assert "dec.['hidden']['W']" in wl.param_shapes({})
        problem = sg.WorkloadSpec(name, {}, checkpoint=0, batch_size=2).build()
        exact = enumerate_jax(encode, log_joint, pe, pd, problem.x["x"], D)
        np.testing.assert_allclose(problem.exact.grads["logits"].ravel(), exact, rtol=1e-9, atol=1e-12)
        n_tests = 2 * exact.size
        z = z_test("disarm", "jax", problem, exact, R=20_000, seed=31, n_tests=n_tests)
        assert z <= stats.norm.isf(ALPHA / (2 * n_tests)), f"disarm[jax] seed=31: max |z| = {z:.2f}"
        z = z_test("straight_through", "jax", problem, exact, R=20_000, seed=32, n_tests=n_tests)
        assert z > stats.norm.isf(ALPHA / (2 * n_tests)), f"straight_through[jax] seed=32 not detected: {z:.2f}"

        sweep = {"estimators": ["disarm"], "backends": ["numpy", "torch", "jax"], "n_samples": [2]}
        sweep["workloads"] = [{"name": name, "checkpoints": [0], "batch_size": 2}]
        run = sg.run(
            {"suite": {"name": "jax-byo", "replicates": 300, "timing": False}, "sweep": [sweep]}, out=tmp_path / "run"
        )
        assert run.complete and set(run.results["backend"]) == {"jax"}  # the model runs on jax only
        if "jax" in ENGINES:  # a JAX training engine trains its checkpoints
            assert sg.WorkloadSpec(name, {}, checkpoint=2, batch_size=2).build().exact.method == "enumeration"
        else:
            with pytest.raises(sg.WorkloadError, match=r"runs on \['jax'\]; training engines exist for \['torch'\]"):
                sg.WorkloadSpec(name, {}, checkpoint=2, batch_size=2).build()
    finally:
        unregister_workload(name)


def test_bad_models_are_refused_naming_the_argument() -> None:
    import torch
    from torch import nn

    data = {k: (v > 0.5) * 1.0 for k, v in sg.datasets.digits(0).items()}
    enc = nn.Linear(64, 3)

    def lj(z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return -(z**2).sum(-1) + 0 * x.sum(-1)

    cases = [
        (dict(latent="gamma", shape=3), r"latent: unknown latent 'gamma'; valid: \['bernoulli', 'categorical'"),
        (dict(latent="categorical", shape=3), r"shape: a categorical latent takes \(G, K\)"),
        (dict(latent="bernoulli", shape=4), r"encoder: returned logits of shape \[2, 3\]; expected \[2, 4\]"),
        (dict(latent="normal", shape=3), r"encoder: returned 1 array\(s\); a normal latent needs \['loc', 'scale'\]"),
        (dict(latent="bernoulli", shape=3, data={"train": data["train"]}), r"data.val: missing split"),
        (dict(latent="bernoulli", shape=3, config={"lr": -1.0}), r"config.lr: must be > 0"),
        (dict(latent="bernoulli", shape=3, config={"epochs": 3}), r"config.epochs: unknown key; valid"),
        (dict(latent="bernoulli", shape=3, train_estimator="dissarm"), r"train_estimator: unknown estimator 'dissarm'"),
        (dict(latent="bernoulli", shape=3, train_estimator="pathwise"), r"'pathwise' does not apply to bernoulli"),
    ]
    for kw, match in cases:
        d = kw.pop("data", data)
        with pytest.raises(sg.WorkloadError, match=match):
            sg.workload_from_torch("bad_model", enc, lj, d, **kw)
    with pytest.raises(sg.WorkloadError, match=r"log_joint: returned shape \[3\]"):
        sg.workload_from_torch("bad_model", enc, lambda z, x: z.sum((-1, -2)), data, "bernoulli", 3)
    with pytest.raises(sg.WorkloadError, match="registered twice"):
        sg.workload_from_torch("vae_bernoulli", enc, lj, data, "bernoulli", 3)
    assert "bad_model" not in sg.list_workloads()


def test_a_changed_model_never_reads_the_old_cache() -> None:
    """Same name, other weights or data: a different fingerprint, so other checkpoint and truth keys."""
    from torch import nn

    from harness.training.checkpoints import state_key

    data = {k: (v > 0.5) * 1.0 for k, v in sg.datasets.digits(0).items()}

    def lj(z: Any, x: Any) -> Any:
        return -(z**2).sum(-1) + 0 * x.sum(-1)

    try:
        a = sg.workload_from_torch("fp_model", nn.Linear(64, 3), lj, data, "bernoulli", 3)
        b = sg.workload_from_torch("fp_model", nn.Linear(64, 3), lj, data, "bernoulli", 3)  # replaces a
        c = sg.workload_from_torch(
            "fp_model", copy.deepcopy(b.encoder), lj, {**data, "test": data["val"]}, "bernoulli", 3
        )
        keys = {state_key(w, w.resolve({}), 5) for w in (a, b, c)}
        assert len(keys) == 3 and sg.get_workload("fp_model") is c
    finally:
        unregister_workload("fp_model")
