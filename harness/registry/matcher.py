"""The one capability matcher: does an estimator apply to a target?  Declarations against traits, nothing else.

:func:`applies` reads an estimator's declaration (distributions, ``requires``, ``oracle``, ``min_samples``) and a
target's :class:`~harness.problems.target.Traits` (latent distribution, differentiable, separable, multi-sample
bound, exact value, backends).  Suite expansion, ``stochgrad check``, training suites and every future caller
(``recommend``) ask it; no caller decides applicability from an estimator's name.  The rules, in order (the
first that fails is the reason):

1. the implementation's backend is one the target runs on;
2. the estimator declares the target's latent distribution (or ``"*"``);
3. ``requires = ("differentiable",)``: f is differentiable in z;
4. ``requires = ("separable",)``: f is a sum over sites;
5. ``requires = ("multi_sample_bound",)``: the target measures a K-sample bound's gradient;
6. ``requires = ("differentiable",)``: ∂f/∂z exists on the implementation's backend (autodiff, or an analytic
   derivative where the backend has no autodiff);
7. ``oracle=True``: the target knows E[f] exactly (an oracle baseline uses it);
8. ``min_samples <= L`` when L is given.
"""

from __future__ import annotations

from harness.problems.target import Traits
from harness.registry.declarations import Estimator, Implementation


def applies(est: Estimator | Implementation, traits: Traits, *, n_samples: int | None = None) -> tuple[bool, str]:
    """``(True, "")`` when ``est`` applies to a target with ``traits`` (at L = ``n_samples``), else ``(False, why)``.

    ``est`` is a declaration (backend-independent rules only) or one backend's implementation (all rules).
    """
    backend = est.backend if isinstance(est, Implementation) else None
    name = est.name
    if backend is not None and backend not in traits.backends:
        note = traits.backend_notes.get(backend)
        return False, note or f"{traits.name} runs on {list(traits.backends)} only"
    if not est.applies_to(traits.latent):
        return False, f"{name} does not apply to {traits.latent}"
    if "differentiable" in est.requires and not traits.differentiable:
        return False, f"{name} needs a differentiable objective ({traits.name} is not)"
    if "separable" in est.requires and not traits.separable:
        return False, f"{name} needs a separable objective ({traits.name} is not)"
    if "multi_sample_bound" in est.requires and not traits.multi_sample_bound:
        return False, f"{name} estimates a multi-sample bound's gradient ({traits.name} has none)"
    if "differentiable" in est.requires and backend is not None and backend not in traits.grad_backends:
        return False, f"{name} on {backend} needs an analytic ∂f/∂z ({traits.name} has none)"
    if est.oracle and not traits.exact_value:
        return False, f"{name} is an oracle baseline: it uses the exact E[f], which {traits.name} does not know"
    if n_samples is not None and est.min_samples > n_samples:
        return False, f"{name} needs n_samples L >= {est.min_samples}"
    return True, ""
