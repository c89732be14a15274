"""Privacy primitives: keyed pseudonyms (RFC 2104 HMAC-SHA256), per-patient date shifts that
keep intervals, identifier removal, and synthetic cohorts drawn from a population model
(checked against the closed form of exponential growth and against the real patients)."""

from __future__ import annotations

import hashlib
import hmac

import numpy as np
import pandas as pd
import pytest

from oncotwin.errors import ModelError
from oncotwin.inference.population import Population
from oncotwin.inference.posterior import Diagnostics
from oncotwin.inference.problem import SubjectData
from oncotwin.privacy import (
    date_shift,
    identifier_hits,
    pseudonym,
    pseudonymise,
    synthetic_cohort,
)
from oncotwin.schedule import Schedule

KEY = b"k1"


def test_pseudonym_is_hmac_sha256_of_the_id() -> None:
    # RFC 4231 test case 2: HMAC-SHA256("Jefe", "what do ya want for nothing?")
    assert hmac.new(b"Jefe", b"what do ya want for nothing?", hashlib.sha256).hexdigest() == (
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")  # fmt: skip
    want = hmac.new(KEY, b"id:P1", hashlib.sha256).hexdigest()[:16]
    assert pseudonym(KEY, "P1") == "R-" + want
    assert pseudonym(KEY, "P1") != pseudonym(b"k2", "P1") != pseudonym(KEY, "P2")


def test_date_shift_range_and_intervals() -> None:
    shifts = [date_shift(KEY, f"P{i}", 30) for i in range(500)]
    assert all(-30 <= s <= 30 and s != 0 for s in shifts)
    assert len(set(shifts)) > 40  # spread over the range, not one constant
    frame = pd.DataFrame({"id": ["A", "A", "B"], "time": [0.0, 7.5, 3.0], "evid": 0,
                          "dv": [1.0, 2.0, 3.0], "name": ["Ann", "Ann", "Bob"],
                          "birth_date": ["1960-01-01"] * 3, "age": [60, 60, 70],
                          "zip_code": [12345] * 3, "stage": ["IIIA"] * 3})  # fmt: skip
    exp = pseudonymise(frame, KEY, max_shift_days=30)
    a = exp.events[exp.events["id"] == pseudonym(KEY, "A")]["time"].tolist()
    assert a[1] - a[0] == 7.5 and a[0] == date_shift(KEY, "A", 30)
    assert set(exp.dropped_columns) == {"name", "birth_date", "zip_code", "stage"}
    assert list(exp.events.columns) == ["id", "time", "evid", "dv", "age"]
    assert identifier_hits(exp.events, ["A", "B", "Ann", "Bob", "1960"]) == []
    assert identifier_hits(frame, ["Bob"]) == [(2, "name")]


def _population(omega: float, z_real: np.ndarray, s: int = 20) -> Population:
    return Population(
        model="exponential", error_model="proportional", names=("v0", "a", "sigma"),
        mu=np.tile([0.0, np.log(0.05)], (s, 1)), omega=np.full((s, 2), omega),
        corr_chol=np.tile(np.eye(2), (s, 1, 1)), beta=np.zeros((s, 0, 2)),
        z_error=np.full((s, 1), np.log(1e-9)), covariates=(), covariate_center=np.zeros(0),
        covariate_scale=np.zeros(0), subjects=tuple(f"R{i}" for i in range(len(z_real))),
        z_subjects=np.tile(z_real, (s, 1, 1)),
        diagnostics=Diagnostics("nuts", 1.0, 1000.0, 1000.0, 0, 4), method="nuts",
    )  # fmt: skip


def _real(refs: list[float]) -> list[SubjectData]:
    t = np.array([0.0, 7, 14])
    return [SubjectData(f"R{i}", t, r * np.exp(0.05 * t) * 1.01, np.zeros(3, bool), Schedule(),
                        "volume", "mm3") for i, r in enumerate(refs)]  # fmt: skip


def test_synthetic_cohort_follows_the_population_closed_form() -> None:
    # omega 1e-6, sigma 1e-9: every synthetic patient is the typical one, V = ref e^{0.05 t}
    real = _real([100.0, 400.0])  # reference: geometric mean of 101 and 404 = 202
    far = np.array([[3.0, 3.0], [-3.0, -3.0]])  # real patients far from the typical one
    out = synthetic_cohort(_population(1e-6, far), 3, [0.0, 10.0, 20.0], real=real, seed=1)
    want = 202.0 * np.exp(0.05 * np.array([0.0, 10.0, 20.0]))
    for _, g in out.events.groupby("id"):
        np.testing.assert_allclose(g["dv"].to_numpy(), want, rtol=1e-5)
    assert out.check["n_redrawn"] == 0 and out.check["exact_row_matches"] == 0
    assert out.check["reference_size"] == pytest.approx(202.0)
    again = synthetic_cohort(_population(1e-6, far), 3, [0.0, 10.0, 20.0], real=real, seed=1)
    pd.testing.assert_frame_equal(out.events, again.events)


def test_synthetic_draws_too_close_to_a_real_patient_are_refused() -> None:
    real = _real([100.0])
    at_mu = np.array([[0.0, np.log(0.05)]])  # a real patient sits at the population mean
    # Distances are in between-subject SDs: a draw lies beyond 5 SDs (in 2-D) with
    # probability exp(-12.5) ~ 4e-6, so every one of 50 draws is refused.
    with pytest.raises(ModelError, match="within 5.0 SDs of a real patient"):
        synthetic_cohort(_population(0.5, at_mu), 2, [0.0, 7.0], real=real, min_distance=5.0,
                         max_redraws=50)  # fmt: skip
    spread = synthetic_cohort(_population(0.5, at_mu), 50, [0.0, 7.0], real=real, seed=3,
                              min_distance=0.5)  # fmt: skip
    # P(|eta| < 0.5) = 1 - exp(-0.125) = 12%: some of 50 draws are refused and redrawn
    assert spread.check["n_redrawn"] > 0 and spread.check["min_distance"] >= 0.5
