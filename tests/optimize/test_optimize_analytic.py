r"""The optimiser finds a fractionation optimum known in closed form.

Model (the radiotherapy twin with exponential growth, daily fractions, one posterior draw):
``n`` fractions of ``d`` Gy, one a day, kill the tumour's clonogens by ``exp(-(alpha d + beta
d^2))`` each, while the tumour grows at rate ``g`` (1/day) between them. Clonogens left after
the last fraction (day ``n - 1``) are ``N = N0 exp(g (n - 1) - n (alpha d + beta d^2))`` and the
Poisson TCP is ``exp(-N)`` (Webb & Nahum 1993), so maximising TCP is maximising

    E(n, d) = n (alpha d + beta d^2) - gamma (n - 1),      gamma = g x 1 day,

the tumour BED with repopulation of Fowler (Br J Radiol 1989;62:679-694) times alpha. The
toxicity budget is the late normal-tissue BED ``n d (1 + d / a_n) <= B`` (alpha/beta ``a_n``).
E grows with d, so the budget binds: ``n = B / (d (1 + d/a_n))`` and

    E = B (alpha d + beta d^2 - gamma) / (d + d^2 / a_n) + gamma.

Setting dE/dd = 0, the cubic terms cancel and with ``beta = alpha / a_t``::

    (alpha + 2 beta d)(d + d^2/a_n) - (alpha d + beta d^2 - gamma)(1 + 2 d/a_n) = 0
    <=>  A d^2 - (2 gamma / a_n) d - gamma = 0,      A = alpha (1/a_n - 1/a_t) > 0
    <=>  d* = (gamma / a_n + sqrt(gamma^2 / a_n^2 + A gamma)) / A,   n* = B / (d* (1 + d*/a_n)).

(An interior optimum needs ``a_t > a_n``: hyperfractionation spares late tissue, repopulation
penalises long courses.) With alpha = 0.3/Gy, a_t = 10 Gy, a_n = 3 Gy, gamma = ln 2 / 3 (a
3-day potential doubling time) and B = 120 Gy: d* = 3.224 Gy, n* = 17.94 fractions.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from oncotwin.optimize import augmented_lagrangian, parse_objective, parse_risk, run
from oncotwin.optimize.modalities import RadiotherapyProblem
from oncotwin.optimize.rt_model import RTParams

ALPHA, AT, AN, B = 0.3, 10.0, 3.0, 120.0
GAMMA = math.log(2.0) / 3.0
A = ALPHA * (1 / AN - 1 / AT)
D_STAR = (GAMMA / AN + math.sqrt(GAMMA**2 / AN**2 + A * GAMMA)) / A
N_STAR = B / (D_STAR * (1 + D_STAR / AN))


def budget_dose(n: float) -> float:
    return 0.5 * AN * (-1 + math.sqrt(1 + 4 * B / (n * AN)))


def energy(n: float, d: float) -> float:
    return n * (ALPHA * d + ALPHA / AT * d * d) - GAMMA * (n - 1)


def test_closed_form_values() -> None:
    assert D_STAR == pytest.approx(3.2242, abs=1e-4)
    assert N_STAR == pytest.approx(17.94, abs=0.01)
    # the closed form is the maximum of E along the budget curve
    ns = np.linspace(5, 60, 20_001)
    best = ns[np.argmax([energy(n, budget_dose(n)) for n in ns])]
    assert best == pytest.approx(N_STAR, abs=0.01)


def test_augmented_lagrangian_finds_the_continuous_optimum() -> None:
    import jax.numpy as jnp

    def loss(x: object) -> object:  # x = (d, n / 10): scaled so both move alike
        d, n = x[0], 10 * x[1]  # type: ignore[index]
        return -(n * (ALPHA * d + ALPHA / AT * d * d) - GAMMA * (n - 1))

    def budget(x: object) -> object:
        d, n = x[0], 10 * x[1]  # type: ignore[index]
        return jnp.atleast_1d(n * d * (1 + d / AN) - B)

    res = augmented_lagrangian(loss, np.array([2.0, 3.0]), np.array([0.5, 0.1]),
                               np.array([10.0, 10.0]), ineq=budget, outer=20, steps=60,
                               )  # fmt: skip
    assert res.converged
    assert res.x[0] == pytest.approx(D_STAR, rel=1e-5)
    assert 10 * res.x[1] == pytest.approx(N_STAR, rel=1e-5)
    assert res.ineq[0] <= 1e-5


def _problem(**kw: object) -> RadiotherapyProblem:
    g = GAMMA  # growth per day = gamma with daily fractions
    params = RTParams(np.array([1.0]), np.array([g]), np.array([0.0]), np.array([ALPHA]),
                      np.array([AT]), np.array([1e8]))  # fmt: skip
    return RadiotherapyProblem(
        params, weekdays=False, budget=B, oar_alpha_beta=AN, fraction_range=(5, 40),
        dose_levels=(1.0,), dose_step=1e-4, max_dose_per_fraction=10.0, **kw,  # type: ignore[arg-type]
    )  # fmt: skip


def test_discrete_search_finds_the_best_whole_number_of_fractions() -> None:
    rec = run(_problem(), parse_objective("tcp"), parse_risk("mean"), refine=False)
    best = rec.best[0].candidate.params

    # brute force over whole fractions with the budget dose (rounded down as the search does)
    def rounded(n: int) -> float:
        return math.floor(budget_dose(n) / 1e-4 + 1e-9) * 1e-4

    brute = max(range(5, 41), key=lambda n: energy(n, rounded(n)))
    assert brute in (math.floor(N_STAR), math.ceil(N_STAR))
    assert best["n_fractions"] == brute
    assert best["dose_per_fraction"] == pytest.approx(rounded(brute), abs=1e-9)
    assert rec.standard.candidate.standard and rec.comparison is not None
    assert rec.comparison.probability_better == 1.0  # one draw, strictly better than 60/30


def test_gradient_refinement_recovers_the_uniform_budget_dose() -> None:
    # At a fixed number of fractions the best split of the budget is uniform (maximising a
    # convex function on the budget sphere; see the module docstring), at d = budget_dose(n).
    n = 18
    prob = _problem(gradient_fractions=(n,))
    (cand,) = prob.refine(parse_objective("tcp"), parse_risk("mean"), prob.default_constraints())
    doses = np.array([d.amount for d in cand.schedule.doses])
    assert doses.size == n
    assert np.allclose(doses, budget_dose(n), atol=2e-3)
    bed = float(np.sum(doses * (1 + doses / AN)))
    assert bed <= B + 1e-9
