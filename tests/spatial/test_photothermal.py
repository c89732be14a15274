"""Pennes bioheat, Arrhenius damage and CEM43 (oncotwin.models.photothermal) against closed forms.

References: Pennes HH. J Appl Physiol 1948;1:93-122 (uniform heating with perfusion relaxes
exponentially to T_a + Q/(w_b c_b)); Sapareto SA, Dewey WC. Int J Radiat Oncol Biol Phys
1984;10:787-800 (CEM43 = t R^(43-T), R = 0.5 above 43 C).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from oncotwin.errors import ModelError
from oncotwin.models import photothermal as pt


def test_uniform_heating_matches_pennes_closed_form_and_cem43() -> None:
    p = dict(pt.TISSUE)
    mask = np.ones((6, 6), bool)
    # a source holding a steady 45 C: Q = w_b c_b (45 - 37)
    q = p["w_b"] * p["c_b"] * 8.0
    out = pt.simulate_heating(
        mask, (1.0, 1.0), np.full((6, 6), q), duration=600.0, total_time=600.0, dt=0.5
    )
    rate = p["w_b"] * p["c_b"] / (p["rho"] * p["c"])  # 1/s
    t = out["times"]
    exact = 37.0 + 8.0 * (1.0 - np.exp(-rate * t))
    np.testing.assert_allclose(out["T_peak_trace"], exact, rtol=1e-9)
    # CEM43 of that history by quadrature of the closed form (trapezoid in temperature, as coded)
    mid = 0.5 * (np.concatenate([[37.0], exact[:-1]]) + exact)
    cem = np.sum(0.5 / 60.0 * np.where(mid >= 43, 0.5, 0.25) ** (43 - mid))
    assert out["cem43"][0, 0] == pytest.approx(cem, rel=1e-9)
    omega = np.sum(0.5 * p["A"] * np.exp(-p["E_a"] / (pt.R_GAS * (mid + 273.15))))
    assert out["omega"][0, 0] == pytest.approx(omega, rel=1e-9)


def test_arrhenius_one_at_known_exposure() -> None:
    # Henriques parameters: Omega = 1 after t = exp(E_a / (R T)) / A at constant T
    p = pt.TISSUE
    T = 60.0 + 273.15
    t1 = math.exp(p["E_a"] / (pt.R_GAS * T)) / p["A"]
    assert 0.5 < t1 < 60  # seconds at 60 C: coagulation within a minute


def test_more_energy_more_tumour_damage_and_unstable_step_refused() -> None:
    shape = (20, 20)
    g = np.indices(shape).astype(float)
    mask = np.ones(shape, bool)
    tumour = ((g[0] - 8) ** 2 + (g[1] - 10) ** 2) < 16
    nano = tumour.astype(float)
    depth = g[0] * 1.0  # laser from the top edge, 1 mm voxels
    plans = [
        pt.LaserPlan("low", power=1.0e4, duration=60.0, nanoparticle_absorption=300.0),
        pt.LaserPlan("high", power=2.0e4, duration=120.0, nanoparticle_absorption=300.0),
    ]
    rows = pt.compare_plans(plans, mask, (1.0, 1.0), tumour, nano, depth, dt=0.2, total_time=180.0)
    low, high = rows
    assert high["peak_temperature_C"] > low["peak_temperature_C"] > 37.0
    assert high["tumour_mean_kill"] >= low["tumour_mean_kill"]
    with pytest.raises(ModelError, match="unstable"):
        pt.simulate_heating(
            mask, (0.05, 0.05), np.zeros(shape), duration=1.0, total_time=2.0, dt=1.0
        )
