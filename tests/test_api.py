"""The public API (``import stochgrad as sg``): problem, measure, run, load_run, compare, plugin declarations,
validation of estimator output, and ``stochgrad check`` verdicts."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import stochgrad as sg
from harness import registry
from harness.cli.main import main
from harness.problems import ProblemError

SMOKE = {
    "suite": {"name": "api-smoke", "seed": 3, "replicates": 400, "timing": False},
    "sweep": [
        {
            "estimators": ["pathwise", "score_function"],
            "backends": ["numpy"],
            "n_samples": [2],
            "problems": [{"distribution": "normal", "params": {"loc": 0.5, "scale": 1.5}, "objective": "quadratic"}],
        }
    ],
}


def test_measure_gaussian_quadratic_exact_variance() -> None:
    """Var[∂loc] of the single-sample pathwise gradient of E(z − k)² under N(μ, σ²) is 4σ² = 9 exactly."""
    seed = 0
    df = sg.measure("pathwise", sg.problem("normal", loc=0.5, scale=1.5), L=1, R=100_000, seed=seed, timing=False)
    row = df.set_index("param").loc["loc"]
    z = 3.29  # two-sided 0.001
    assert abs(row["variance"] - 9.0) <= z * row["variance_se"], f"seed={seed}: {row['variance']}"
    assert z * row["variance_se"] < 0.2  # power: a 2% error in the variance would be detected
    assert row["variance_ci_low"] < 9.0 < row["variance_ci_high"]
    assert row["exact_grad"] == pytest.approx(1.0) and row["bias_p"] > 1e-3
    assert set(df["param"]) == {"loc", "scale"} and (df["estimator"] == "pathwise").all()


def test_measure_reinforce_matches_the_closed_form() -> None:
    """REINFORCE on N(μ, 1), f = (x − k)²: single-sample Var[∂μ] = a⁴ + 14a² + 15, a = μ − k."""
    seed, a = 4, 1.0
    p = sg.problem("normal", loc=a, scale=1.0, objective="quadratic", objective_params={"k": 0.0})
    row = sg.measure("score_function", p, L=1, R=200_000, seed=seed, timing=False).set_index("param").loc["loc"]
    exact = a**4 + 14 * a**2 + 15
    assert abs(row["variance"] - exact) <= 3.29 * row["variance_se"], f"seed={seed}"
    assert 3.29 * row["variance_se"] < 0.1 * exact


def test_problem_errors_name_the_key() -> None:
    with pytest.raises(ProblemError, match="unknown distribution 'Normal'; valid"):
        sg.problem("Normal", loc=0.0)
    with pytest.raises(ProblemError, match="params.scale"):
        sg.problem("normal", scale=-1.0)
    assert "normal" in sg.list_distributions() and "quadratic" in sg.list_objectives()


def test_measure_rejects_bad_hyper_and_unknown_estimator() -> None:
    p = sg.problem("bernoulli", probs=0.3, objective="bernoulli_toy")
    with pytest.raises(ValueError, match="hyper.temperature"):
        sg.measure("gumbel_softmax", p, hyper={"temperature": -1.0})
    with pytest.raises(sg.RegistryError, match="unknown estimator"):
        sg.measure("no_such", p)


def test_run_dict_suite_report_load_and_compare(tmp_path: Path) -> None:
    run = sg.run(SMOKE, out=tmp_path / "a")
    assert run.meta["status"] == "complete" and len(run.results) == 4
    assert {e["name"] for e in run.meta["estimators"]} >= {"pathwise", "score_function"}
    html = run.report(tmp_path / "r.html")
    assert html.exists() and html.stat().st_size > 1000
    other = sg.run(SMOKE, out=tmp_path / "b", seed=4)
    again = sg.load_run(tmp_path / "a")
    assert again.results.equals(run.results)
    cmp = sg.compare(run, other)
    assert len(cmp) == 4 and {"var_a", "var_b", "var_ratio"} <= set(cmp.columns)
    assert np.allclose(cmp["var_ratio"], cmp["var_b"] / cmp["var_a"])


@pytest.mark.parametrize(
    ("output", "match"),
    [
        (lambda ctx: {"loc": 0.0, "scale": 0.0}, r"shape \[\]"),
        (
            lambda ctx: {"loc": np.zeros((1, ctx.dim)), "scale": np.zeros((1, ctx.dim))},
            r"shape \[1, 1\].*expected \[50, 1\]",
        ),
        (
            lambda ctx: {"loc": np.zeros((ctx.R, ctx.dim), complex), "scale": np.zeros((ctx.R, ctx.dim))},
            "complex128 is not a real",
        ),
        (
            lambda ctx: {"loc": np.zeros((ctx.R, ctx.dim), int), "scale": np.zeros((ctx.R, ctx.dim))},
            "int64 is not a real",
        ),
        (lambda ctx: {"loc": np.full((ctx.R, ctx.dim), "x"), "scale": np.zeros((ctx.R, ctx.dim))}, "<U1 is not a real"),
        (
            lambda ctx: {"loc": np.full((ctx.R, ctx.dim), np.nan), "scale": np.zeros((ctx.R, ctx.dim))},
            "every replicate of .*loc.* non-finite",
        ),
        (lambda ctx: {"loc": np.zeros((ctx.R, ctx.dim))}, r"no gradient for \['scale'\]"),
        (lambda ctx: [1, 2], "returned list"),
    ],
)
def test_malformed_estimator_output_fails_the_cell(output, match: str) -> None:
    est = sg.register_estimator("malformed_test", distributions=["normal"], unbiased=True)
    est.implementation("numpy")(output)
    try:
        with pytest.raises(sg.MeasureError, match=match) as info:
            sg.measure("malformed_test", sg.problem("normal"), L=2, R=50, timing=False)
        assert "malformed_test" in str(info.value)
    finally:
        registry.unregister("malformed_test")


def test_check_correct_estimator_is_not_failed_at_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["check", "score_function_rloo", "--backend", "numpy"])
    out = capsys.readouterr().out
    assert rc == 0 and "verdict: PASS" in out, out


def test_check_estimator_that_applies_to_no_problem_is_an_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shipped problems exist for every distribution today, so the shipped set is narrowed to normal ones."""
    import harness.measure.check as validate

    normal_only = [p for p in validate.example_problems() if p.distribution == "normal"]
    monkeypatch.setattr(validate, "example_problems", lambda: normal_only)
    est = sg.register_estimator("nomatch_test", distributions=["gamma"], unbiased=True)
    est.implementation("numpy")(lambda ctx: {})
    try:
        rc = main(["check", "nomatch_test"])
        err = capsys.readouterr().err
        assert rc == 2 and "applies to no shipped problem" in err and "valid distribution names" in err, err
        assert "'gamma'" in err and "normal" in err
    finally:
        registry.unregister("nomatch_test")


def test_check_misspelled_distribution_is_refused_at_registration() -> None:
    with pytest.raises(sg.RegistryError, match="unknown distribution 'Normal'; valid: .*'normal'"):
        sg.register_estimator("misspelled_test", distributions=["Normal"], unbiased=True)
    assert "misspelled_test" not in sg.list_estimators()


def test_version_and_all() -> None:
    assert sg.__version__ and all(hasattr(sg, n) for n in sg.__all__)
    assert math.isfinite(float(sg.get_estimator("pathwise").min_samples))


# -- the public face: workloads, plan/run, check, report, train --------------------------------------------------
ROOT = Path(__file__).resolve().parents[1]


def test_public_face_is_documented_and_typed() -> None:
    """Every exported function has a docstring and annotated parameters (what docs/api.md renders)."""
    import inspect

    for name in ("Workload", "register_workload", "train", "plan_training", "check", "report", "plan", "catalog"):
        assert name in sg.__all__, name
    for name in sg.__all__:
        obj = getattr(sg, name)
        if inspect.isfunction(obj):
            assert inspect.getdoc(obj), f"sg.{name} has no docstring"
            sig = inspect.signature(obj)
            bare = [p for p in sig.parameters.values() if p.annotation is inspect.Parameter.empty]
            assert not bare and sig.return_annotation is not inspect.Signature.empty, f"sg.{name} is not typed"


def test_plan_expands_without_writing_then_runs(tmp_path: Path) -> None:
    out = tmp_path / "run"
    p = sg.plan(SMOKE, out=out)
    assert len(p.cells) == 2 and "expanded 2 cells" in p.summary() and not out.exists()
    run = p.run()
    assert run.complete and run.failed == [] and len(run.results) == 4 and run.dir == out
    with pytest.raises(sg.RunError, match="--resume needs --out"):
        sg.plan(SMOKE, resume=True)


def test_check_returns_structured_results() -> None:
    """``sg.check`` gives one ImplementationCheck per backend with per-problem results; the callback sees each."""
    seen: list[tuple[str, str | None]] = []
    report = sg.check("enumeration", backend="numpy", callback=lambda c, r: seen.append((c.backend, r and r.verdict)))
    assert report.verdict == "PASS" and [c.backend for c in report.checks] == ["numpy"]
    ic = report.checks[0]
    assert ic.unbiased and ic.verdict == "PASS" and len(ic.results) >= 2
    assert all(r.verdict == "pass" and r.estimator == "enumeration" for r in report.results)
    assert seen == [("numpy", None)] + [("numpy", "pass")] * len(ic.results)
    assert ic.header().startswith("enumeration [numpy] — unbiased") and "pass" in ic.line(ic.results[0])
    with pytest.raises(sg.CheckError, match="backend: enumeration has no 'tensorflow' implementation") as info:
        sg.check("enumeration", backend=["numpy", "tensorflow"])
    assert info.value.key == "backend"


def test_report_api_checks_inputs_before_writing(tmp_path: Path) -> None:
    run = sg.run(SMOKE, out=tmp_path / "a")
    page = sg.report(run, tmp_path / "r.html")
    assert page == tmp_path / "r.html" and page.stat().st_size > 1000 and page.stat().st_mode & 0o777 == 0o644
    with pytest.raises(sg.OutputError, match="is a directory"):
        sg.report([run.dir], tmp_path)
    with pytest.raises((FileNotFoundError, sg.RunDirError)):
        sg.report([run.dir, tmp_path / "missing"], tmp_path / "x.html")
    assert not (tmp_path / "x.html").exists()
    text, html = sg.compare_summary(run, run.dir, tmp_path / "c.html")
    assert "matched" in text and html == tmp_path / "c.html" and html.exists()


def test_train_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOCHGRAD_CACHE", str(tmp_path / "cache"))
    f = tmp_path / "t.toml"
    f.write_text(
        '[suite]\nname = "tiny"\n[[train]]\nworkload = "vae_bernoulli"\nconfig = { latent_dim = 3 }\n'
        'estimators = ["disarm"]\nsteps = 10\nlog_every = 5\nval_size = 10\ntest_size = 10\ntest_samples = 3\n'
    )
    plan = sg.plan_training(f)
    assert len(plan.units) == 1 and plan.lines() == ["vae_bernoulli disarm seed=0 lr=0.001 torch:cpu"]
    logged: list[str] = []
    run = sg.train(plan, out=tmp_path / "run", log=logged.append)
    assert run.complete and run.units_done == 1 and len(run.curves) == 3 and run.meta["kind"] == "training"
    assert len(logged) == 1 and " ok " in logged[0]
    with pytest.raises(sg.RunError, match="already holds a run; use --resume to continue it"):
        sg.train(f, out=tmp_path / "run")


# -- workloads: discovery and contained plugins -----------------------------------------------------------------
def test_builtin_workloads_are_discovered_not_listed() -> None:
    import harness.workloads as W
    from harness.plugins import import_package_modules

    assert not hasattr(W, "BUILTIN_MODULES")
    modules = import_package_modules(W.BUILTIN_PACKAGE)
    files = sorted(p.stem for p in (ROOT / "harness" / "workloads" / "models").glob("[!_]*.py"))
    assert [m.rsplit(".", 1)[-1] for m in modules] == files
    assert {"vae_bernoulli", "vae_categorical", "vae_gaussian", "blr"} <= set(sg.list_workloads())
    assert type(sg.get_workload("blr")).__module__ == "harness.workloads.models.blr"


def test_import_package_modules_skips_helpers_and_refuses_a_shadow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness.plugins import PackageShadowedError, import_package_modules

    pkg = tmp_path / "sg_found_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "b_mod.py").write_text("LOADED = True\n")
    (pkg / "a_mod.py").write_text("LOADED = True\n")
    (pkg / "_helper.py").write_text("raise RuntimeError('helpers are not imported')\n")
    (tmp_path / "sg_bare_dir").mkdir()  # no __init__.py: a namespace package
    monkeypatch.syspath_prepend(str(tmp_path))
    assert import_package_modules("sg_found_pkg") == ["sg_found_pkg.a_mod", "sg_found_pkg.b_mod"]
    with pytest.raises(PackageShadowedError, match="namespace package"):
        import_package_modules("sg_bare_dir")


WORKLOAD_PLUGIN = '''
"""A tiny workload plugin: 2 Bernoulli latents, linear encoder and decoder on 30 fixed binary 4-pixel images."""
import numpy as np

import stochgrad as sg


class TinyFactor(sg.Workload):
    name = "tiny_factor"
    latent = "bernoulli"
    backends = ("torch",)
    defaults = {"latent_dim": 2, "init_seed": 0, "reference_samples": 1000}
    train_estimator = "disarm"
    doc = "tiny plugin workload"

    def latent_shape(self, cfg):
        return (cfg["latent_dim"],)

    def dataset(self, cfg):
        x = (np.random.default_rng(0).random((30, 4)) < 0.5).astype(np.float64)
        return {"train": {"x": x[:10]}, "val": {"x": x[10:20]}, "test": {"x": x[20:]}}

    def init_params(self, cfg, rng):
        D = cfg["latent_dim"]
        return {"enc_w": rng.normal(size=(4, D)), "enc_b": np.zeros(D), "dec_w": rng.normal(size=(D, 4)),
                "dec_b": np.zeros(4)}

    def encoder_keys(self, cfg):
        return ["enc_w", "enc_b"]

    def encode(self, B, params, x, cfg):
        return {"logits": x["x"] @ params["enc_w"] + params["enc_b"]}

    def log_joint(self, B, z, params, x, cfg):
        logits = z @ params["dec_w"] + params["dec_b"]
        return (x["x"] * logits - B.softplus(logits)).sum(-1) - z.shape[-1] * np.log(2.0)
'''

PLUGIN_FILES = {
    "tiny_wl_plugin.py": WORKLOAD_PLUGIN,
    "tiny_wl_module.py": (
        "import stochgrad as sg\nfrom tiny_wl_plugin import TinyFactor\n\n\n"
        "class Other(TinyFactor):\n    name = 'tiny_other'\n\n\nsg.register_workload(Other)\n"
    ),
    "exiting_wl_plugin.py": "raise SystemExit(0)\n",
    "half_wl_plugin.py": (
        "import stochgrad as sg\nfrom tiny_wl_plugin import TinyFactor\n\n\n"
        "class Half(TinyFactor):\n    name = 'half_registered'\n\n\n"
        "sg.register_workload(Half)\nraise RuntimeError('broken after registering')\n"
    ),
    "dup_wl_plugin.py": (
        "from tiny_wl_plugin import TinyFactor\n\n\nclass Dup(TinyFactor):\n    name = 'vae_bernoulli'\n\n\n"
        "NOT_A_WORKLOAD = 42\n"
    ),
}
ENTRY_POINTS = """[stochgrad.workloads]
tiny = tiny_wl_plugin:TinyFactor
mod = tiny_wl_module
exits = exiting_wl_plugin
half = half_wl_plugin
dup = dup_wl_plugin:Dup
notwl = dup_wl_plugin:NOT_A_WORKLOAD
"""

PLUGIN_SCRIPT = """
import contextlib, io, json, sys
import stochgrad as sg
from harness.cli.main import main

text = io.StringIO()
with contextlib.redirect_stdout(text):
    rc = main(["list"])
suite = {
    "suite": {"name": "plugin-workload", "seed": 0, "replicates": 300, "timing": False},
    "sweep": [{"estimators": ["disarm", "score_function_rloo"], "backends": ["torch"], "n_samples": [2],
               "workloads": [{"name": "tiny_factor", "checkpoints": [0], "batch_size": 2}]}],
}
run = sg.run(suite, out=sys.argv[1], stream=io.StringIO())
print(json.dumps({
    "list_rc": rc, "list": text.getvalue(), "workloads": sg.list_workloads(), "failed": sg.failed_plugins(),
    "vae_doc": sg.get_workload("vae_bernoulli").doc, "complete": run.complete,
    "estimators": sorted(set(run.results["estimator"])), "workload_col": sorted(set(run.results["workload"])),
}))
"""


def test_installed_workload_plugins_load_contained_and_run(tmp_path: Path) -> None:
    """Workload plugins installed in a site directory (a dist-info with ``stochgrad.workloads`` entry points): a
    Workload subclass and a module that registers one load and run in a suite; a plugin that raises SystemExit, one
    that raises after registering (rolled back), one that takes a built-in's name and one that names no workload
    are each recorded with the reason, and nothing else is affected."""
    import json
    import os
    import subprocess
    import sys

    site = tmp_path / "site"
    dist = site / "tiny_wl_plugins-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tiny-wl-plugins\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(ENTRY_POINTS)
    for name, text in PLUGIN_FILES.items():
        (site / name).write_text(text)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "STOCHGRAD_CACHE": str(tmp_path / "cache"),
    }
    r = subprocess.run(
        [sys.executable, "-c", PLUGIN_SCRIPT, str(tmp_path / "run")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert {"tiny_factor", "tiny_other", "vae_bernoulli", "blr"} <= set(got["workloads"])
    assert "half_registered" not in got["workloads"]  # rolled back with its plugin
    assert got["vae_doc"].startswith("binary VAE")  # the built-in keeps its name
    failed = got["failed"]
    assert failed["exits (exiting_wl_plugin) [workload]"] == "SystemExit(0) raised while importing the plugin"
    assert "broken after registering" in failed["half (half_wl_plugin) [workload]"]
    assert "registered twice" in failed["dup (dup_wl_plugin:Dup) [workload]"]
    assert "expected a module, a Workload subclass" in failed["notwl (dup_wl_plugin:NOT_A_WORKLOAD) [workload]"]
    assert len(failed) == 4
    assert got["list_rc"] == 0 and "tiny_factor" in got["list"].split("WORKLOADS", 1)[1]
    assert "exits (exiting_wl_plugin) [workload]: SystemExit(0)" in got["list"].split("FAILED PLUGINS", 1)[1]
    assert got["complete"] and got["estimators"] == ["disarm", "score_function_rloo"]
    assert got["workload_col"] == ["tiny_factor"]


# -- the built-in estimators use the face plugins use ----------------------------------------------------------
ALLOWED_TOP = {"__future__", "numpy", "scipy", "torch", "jax", "stochgrad", "estimators"}


def _imports(path: Path) -> list[str]:
    import ast

    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            out.append("." * node.level + (node.module or ""))
    return out


@pytest.mark.parametrize("path", sorted((ROOT / "estimators").glob("*.py")), ids=lambda p: p.name)
def test_builtin_estimators_import_only_the_public_face(path: Path) -> None:
    """Every module of estimators/ imports stochgrad (plus the standard library, numpy/scipy/torch/jax and its own
    ``estimators._*`` helpers), never ``harness``; and never reaches past the Context for f or its derivatives."""
    import ast
    import sys

    for mod in _imports(path):
        top = mod.split(".")[0]
        assert not mod.startswith("."), f"{path.name}: relative import {mod}"
        assert top in ALLOWED_TOP or top in sys.stdlib_module_names, f"{path.name} imports {mod}"
        if top == "estimators":
            assert mod == "estimators" or mod.split(".")[1].startswith("_"), f"{path.name} imports {mod}"
    attrs = {n.attr for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Attribute)}
    reached = attrs & {"grad_np", "hess_np", "grad_batched", "objective", "per_site"}
    assert not reached, f"{path.name} evaluates f or its derivatives outside the Context: {sorted(reached)}"


@pytest.mark.parametrize("backend", ["numpy", "torch", "jax"])
def test_context_derivatives_agree_with_the_analytic_ones(backend: str) -> None:
    """ctx.f_grad and ctx.f_hess_diag: analytic on NumPy, (nested) autodiff on PyTorch/JAX, same numbers."""
    from harness.backends import get_backend

    B = get_backend(backend)
    if B.unavailable_reason():
        pytest.skip(B.unavailable_reason())
    p = sg.problem("normal", loc=[0.1, -0.4, 0.7], scale=1.0, dim=3, objective="cos", objective_params={"omega": 1.7})
    ctx = sg.Context.for_problem(p, backend, R=2, L=3)
    z = np.random.default_rng(0).normal(size=(2, 3, 3))
    zb = B.asarray(z, "float64", "cpu")
    w = 1.7
    np.testing.assert_allclose(B.to_numpy(ctx.f(zb)), np.cos(w * z).sum(-1), rtol=1e-13)
    np.testing.assert_allclose(B.to_numpy(ctx.f_grad(zb)), -w * np.sin(w * z), rtol=1e-12)
    np.testing.assert_allclose(B.to_numpy(ctx.f_hess_diag(zb)), -(w**2) * np.cos(w * z), rtol=1e-12)
    assert ctx.separable and ctx.param_names == ["loc", "scale"] and ctx.options == {}
    if B.autodiff:  # ctx.grad: per-replicate gradients of a surrogate w.r.t. the batched parameters
        g = ctx.grad(lambda P: ctx.f(P["loc"][:, None] + 0 * zb[:, :1]).sum(1))
        np.testing.assert_allclose(B.to_numpy(g["loc"]), -w * np.sin(w * np.array([[0.1, -0.4, 0.7]] * 2)))


def test_hessian_diagonal_needs_a_separable_objective() -> None:
    from types import SimpleNamespace

    from harness.backends import get_backend

    obj = SimpleNamespace(name="joint", separable=False)
    ctx = sg.Context(get_backend("numpy"), SimpleNamespace(objective=obj), {}, {}, None, 1, 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not separable"):
        ctx.f_hess_diag(np.zeros((1, 1, 2)))


def test_cli_imports_only_the_public_api() -> None:
    """The command line is a thin layer: its modules import stochgrad and each other, no other harness module."""
    for path in sorted((ROOT / "harness" / "cli").glob("*.py")):
        for mod in _imports(path):
            if mod.startswith("harness"):
                assert mod.startswith("harness.cli"), f"{path.name} imports {mod}"


def test_a_user_workload_cannot_take_a_builtin_name_before_the_builtins_load() -> None:
    """In a fresh process, registering a workload named like a built-in (before anything else is loaded) is refused
    with the names of both classes, and the built-ins all load."""
    import subprocess
    import sys

    code = (
        "import stochgrad as sg\n"
        "class Mine(sg.Workload):\n    name = 'vae_bernoulli'\n"
        "try:\n    sg.register_workload(Mine)\nexcept sg.WorkloadError as exc:\n    print('refused:', exc)\n"
        "print(sorted(sg.list_workloads()), type(sg.get_workload('vae_bernoulli')).__module__)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (
        "refused: workload: workload 'vae_bernoulli' registered twice: first by harness.workloads.models.vae"
        in r.stdout
    )
    assert "'blr', 'vae_bernoulli', 'vae_categorical', 'vae_gaussian'" in r.stdout
    assert r.stdout.strip().endswith("harness.workloads.models.vae")
