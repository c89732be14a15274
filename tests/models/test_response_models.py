"""The response models of the registry (radiotherapy, immunotherapy, hormone therapy,
neutropenia): each against an independent implementation or a hand-worked solution, the
fixed-step RK4 path against tight adaptive Tsit5 and its convergence order, and parameter
recovery from synthetic data through the same ``calibrate`` call as every tumour model.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import pytest

from oncotwin.errors import ConvergenceWarning
from oncotwin.inference.calibrate import calibrate_subjects
from oncotwin.inference.problem import SubjectData
from oncotwin.models import MODELS, hormone, immune, myelosuppression, radiation
from oncotwin.schedule import Dose, Schedule, Switch
from oncotwin.simulate import SolverSettings, simulate

TIGHT = SolverSettings(rtol=1e-10, atol=1e-12, max_steps=200_000)
DOCETAXEL = Schedule(tuple(Dose(21.0 * k, 135.0, "docetaxel", 1 / 24) for k in range(4)))
ABIRATERONE = Schedule(
    switches=(Switch(0.0, "abiraterone", True), Switch(200.0, "abiraterone", False),
              Switch(420.0, "abiraterone", True)),
)  # fmt: skip
PEMBROLIZUMAB = Schedule(tuple(Dose(21.0 * k, 200.0, "pembrolizumab") for k in range(6)))
FIXED_STEP = {
    "friberg_anc": (DOCETAXEL, np.linspace(0.0, 84.0, 29)),
    "zhang_psa": (ABIRATERONE, np.linspace(0.0, 700.0, 36)),
    "kuznetsov_immune": (PEMBROLIZUMAB, np.linspace(0.0, 150.0, 31)),
}


def rel_err(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a) / np.asarray(b) - 1.0)))


@pytest.mark.parametrize("name", sorted(FIXED_STEP))
def test_fixed_step_rk4_matches_tight_adaptive_solver(name):
    """RK4 on each model's own grid (save times, exposure jumps, even nodes), against diffrax
    Tsit5 at rtol 1e-10 on the same vector field (the model with ``fixed_step`` switched off):
    within 0.1 % (measured: Friberg 2e-4, Zhang 7e-6, Kuznetsov 6e-6), far below the noise of
    any measurement the models are calibrated on."""
    model = MODELS[name]
    schedule, times = FIXED_STEP[name]
    params = model.prior_medians(10.0)
    rk4 = simulate(model, params, times, schedule)
    tsit5 = simulate(dataclasses.replace(model, fixed_step=False), params, times, schedule,
                     solver=TIGHT)  # fmt: skip
    assert rk4.method == "ode (fixed-step RK4)" and tsit5.method == "ode"
    assert rel_err(rk4.values, tsit5.values) < 1e-3, name
    # and the treatment visibly changes the course (a wrong exposure could not hide)
    untreated = simulate(model, params, times).values
    assert rel_err(untreated, rk4.values) > 0.2


def test_fixed_step_rk4_is_fourth_order():
    """Halving the step divides the error by about 2^4: the observed order tends to 4 (within
    0.3 at the finest pair; above 4 on coarser grids, the pre-asymptotic regime), Kuznetsov
    model untreated over 150 days, against tight Tsit5."""
    model = MODELS["kuznetsov_immune"]
    params = model.prior_medians(10.0)
    times = np.array([0.0, 150.0])  # one interval: the grid is the even nodes only
    exact = simulate(dataclasses.replace(model, fixed_step=False), params, times, solver=TIGHT)
    errors = []
    for substeps in (8, 16, 32):
        solver = SolverSettings(rk4_nodes=16, rk4_substeps=substeps)
        v = simulate(model, params, times, solver=solver).values
        errors.append(abs(v[-1] - exact.values[-1]))
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert abs(orders[-1] - 4.0) < 0.3 and np.all(orders > 3.7), (errors, orders)


def test_friberg_kpd_slope_matches_docetaxel_area():
    """KPD_SLOPE = Friberg's docetaxel slope (8.58 /µM, Friberg 2002 as transcribed in the
    module) x AUC of 135 mg through the Bruno 1996 PK (dose / CL), divided by the integral of
    the unit K-PD exposure with the docetaxel half-life 0.5 day."""
    auc_um_day = 135.0 / myelosuppression.DOCETAXEL_PK.cl * 1000.0 / 807.88
    expected = myelosuppression.DOCETAXEL_FRIBERG.slope * auc_um_day / (0.5 / math.log(2.0))
    assert myelosuppression.KPD_SLOPE == pytest.approx(expected, rel=5e-3)


def test_friberg_registry_nadir_matches_the_pk_driven_model():
    """The registry model (K-PD exposure, prior medians = Friberg's docetaxel values) against the
    module's PK-driven Friberg model (three-compartment docetaxel PK, adaptive solver) after
    135 mg over 1 h: nadir depth within 3 % and nadir day within 0.5 day (1.354 x10^9/L on
    day 7.27 for the PK model)."""
    t = np.linspace(0.0, 21.0, 2101)
    pk_driven = np.asarray(
        myelosuppression.simulate_anc(
            t, [0.0], [135.0], myelosuppression.DOCETAXEL_PK, myelosuppression.DOCETAXEL_FRIBERG,
            dose_durations=[1 / 24],
        )
    )  # fmt: skip
    params = MODELS["friberg_anc"].prior_medians(5.05)
    one_dose = Schedule((Dose(0.0, 135.0, "docetaxel", 1 / 24),))
    kpd = simulate("friberg_anc", params, t, one_dose).values
    assert kpd.min() == pytest.approx(pk_driven.min(), rel=0.03)
    assert abs(t[kpd.argmin()] - t[pk_driven.argmin()]) < 0.5
    # without a dose the marrow stays at its baseline
    steady = simulate("friberg_anc", params, t[::100]).values
    np.testing.assert_allclose(steady, 5.05, rtol=1e-12)


def test_zhang_registry_matches_the_switching_simulator():
    """Continuous abiraterone from t0: the registry model's PSA relative to baseline equals the
    module's event-driven diffrax simulation (log cells) of the published patient #1 started
    at 40 % of equilibrium with T- at `resist` x the sensitive cells."""
    p = {"v0": 12.0, "burden": 0.4, "resist": 2e-3, "r_scale": 1.0}
    ts = np.linspace(0.0, 900.0, 46)
    on = Schedule(switches=(Switch(0.0, "abiraterone", True),))
    ours = simulate("zhang_psa", p, ts, on).values
    params = hormone.zhang_params()
    eq = hormone.pretreatment_equilibrium(params)
    cells = np.array([0.4 * eq[0], 0.4 * eq[1], 2e-3 * 0.4 * (eq[0] + eq[1])])
    y0 = np.concatenate([cells, [cells.sum() / float(params.sigma)]])
    ref = hormone.simulate_continuous(params, y0, ts)
    np.testing.assert_allclose(ours, 12.0 * np.asarray(ref.psa) / float(ref.psa[0]), rtol=1e-5)
    assert ours.min() < 0.5 * 12.0 and ours[-1] > ours.min()  # response, then resistance


def test_kuznetsov_registry_matches_the_dimensionless_model():
    """Without checkpoint inhibitor the registry model is the published Kuznetsov model in
    days: tumour(t days) = y(t / 9.08) of the module's diffrax solution of the dimensionless
    model, scaled to v0 at t0."""
    p = {"v0": 30.0, "cells": 150.0, "effectors": 0.8, "growth": 1.636, "potency": 1.0}
    ts = np.linspace(0.0, 120.0, 25)
    ours = simulate("kuznetsov_immune", p, ts).values
    ys, ok = immune.simulate_kuznetsov(
        immune.kuznetsov_params(), [0.8, 150.0], ts / immune.KUZNETSOV_DAYS_PER_UNIT
    )
    assert bool(ok)
    np.testing.assert_allclose(ours, 30.0 * np.asarray(ys[:, 1]) / 150.0, rtol=1e-5)


def test_lq_regrowth_against_a_fraction_by_fraction_loop():
    """Closed form against a hand loop: between fractions viable cells grow by exp(lam dt) and
    damaged cells decay by exp(-kc dt); at a fraction of d Gy a share 1 - exp(-alpha d (1 + d /
    10)) of viable cells moves to the damaged pool. 60 Gy in 30 weekday fractions from day 3."""
    p = {"v0": 40.0, "lam": 0.02, "alpha": 0.2, "kc": 0.07}
    days = [3.0 + 7 * w + d for w in range(6) for d in range(5)]
    schedule = Schedule(tuple(Dose(t, 2.0, "radiotherapy", 0.0, "Gy") for t in days))
    times = np.array([0.0, 2.5, 3.0, 3.5, 10.0, 40.5, 45.0, 80.0, 150.0])
    ours = simulate("lq_regrowth", p, times, schedule).values

    def by_hand(t_end: float) -> float:
        viable, damaged, t = 40.0, 0.0, 0.0
        for tf in [d for d in days if d <= t_end]:
            viable *= math.exp(p["lam"] * (tf - t))
            damaged *= math.exp(-p["kc"] * (tf - t))
            killed = viable * (1.0 - math.exp(-p["alpha"] * (2.0 + 2.0**2 / 10.0)))
            viable, damaged, t = viable - killed, damaged + killed, tf
        return viable * math.exp(p["lam"] * (t_end - t)) + damaged * math.exp(
            -p["kc"] * (t_end - t)
        )

    np.testing.assert_allclose(ours, [by_hand(t) for t in times], rtol=1e-12)
    # Milligram doses of other agents do not act on this model.
    chemo = Schedule((Dose(5.0, 100.0, "docetaxel"),))
    untreated = simulate("lq_regrowth", p, times, chemo).values
    np.testing.assert_allclose(untreated, 40.0 * np.exp(0.02 * times), rtol=1e-12)


def _recover(name: str, truth: dict, schedule: Schedule, times: np.ndarray, sd: float):
    values = simulate(name, truth, times, schedule).values
    y = values * np.exp(sd * np.random.default_rng(3).standard_normal(len(times)))
    subject = SubjectData("s", times, y, np.zeros(len(times), bool), schedule, "x", "1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        (post,) = calibrate_subjects(name, [subject], method="laplace", seed=0, draws=2000)
    return post


def test_friberg_recovers_patient_parameters_from_anc():
    """Synthetic patient (MTT 4.5 d, gamma 0.2, slope 3, baseline 5) with 11 ANC samples over two
    cycles of docetaxel, 10 % noise: every true value inside its 90 % interval."""
    truth = {"v0": 5.0, "mtt": 4.5, "gamma": 0.2, "slope": 3.0}
    times = np.array([0, 4, 7, 10, 14, 21, 25, 28, 31, 35, 42.0])
    post = _recover("friberg_anc", truth, DOCETAXEL, times, 0.1)
    for k, v in truth.items():
        lo, hi = np.quantile(post.params[k], [0.05, 0.95])
        assert lo < v < hi, (k, lo, v, hi)


def test_lq_regrowth_recovers_radiosensitivity():
    """Weekly sizes through 60 Gy / 30 fractions and 22 weeks after (long enough to see the
    regrowth, without which alpha and the growth rate trade off), 5 % noise: every true value
    inside its 90 % interval, alpha within 15 %."""
    truth = {"v0": 50.0, "lam": 0.015, "alpha": 0.12, "kc": 0.04}
    days = [7 * w + d for w in range(6) for d in range(5)]
    schedule = Schedule(tuple(Dose(float(t), 2.0, "radiotherapy", 0.0, "Gy") for t in days))
    times = np.arange(0.0, 200.0, 7.0)
    post = _recover("lq_regrowth", truth, schedule, times, 0.05)
    for k, v in truth.items():
        lo, hi = np.quantile(post.params[k], [0.05, 0.95])
        assert lo < v < hi, (k, lo, v, hi)
    assert abs(np.median(post.params["alpha"]) / 0.12 - 1.0) < 0.15


def test_registry_lists_the_response_models():
    for model in (radiation.lq_regrowth, immune.kuznetsov_immune, hormone.zhang_psa,
                  myelosuppression.friberg_anc):  # fmt: skip
        assert MODELS[model.name] is model and model.uses_exposure
