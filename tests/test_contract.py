"""The model contract: every model in the library goes through simulate -> calibrate (synthetic
data) -> forecast with the same calls and no special cases.

Reference: data simulated from the model itself at its prior-median parameters (reference size
100) under a weekly dosing schedule, 5% proportional noise, seed 0; the twin's 99% forecast
interval one week after the last observation must contain the true value, and its median must
be within 25% of it. (99%, not 90%: with a dozen models a 90% interval would miss the truth for
about one of them by chance alone.)
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from oncotwin.errors import ConvergenceWarning
from oncotwin.inference.calibrate import calibrate_subjects
from oncotwin.inference.problem import SubjectData
from oncotwin.models import MODELS
from oncotwin.schedule import Dose, Schedule
from oncotwin.simulate import simulate
from oncotwin.twin import DigitalTwin

TIMES = np.linspace(0.0, 42.0, 13)
WEEKLY = Schedule(tuple(Dose(7.0 * k, 100.0) for k in range(8)), half_life={"drug": 2.0})
FUTURE = np.array([49.0])


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_simulates_calibrates_and_forecasts(name):
    model = MODELS[name]
    truth = model.prior_medians(100.0)
    values = simulate(model, truth, np.concatenate([TIMES, FUTURE]), WEEKLY).values
    rng = np.random.default_rng(0)
    y = values[:-1] * np.exp(0.05 * rng.standard_normal(len(TIMES)))
    subject = SubjectData("s", TIMES, y, np.zeros(len(TIMES), bool), WEEKLY, "volume", "mm3")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        (post,) = calibrate_subjects(
            name, [subject], method="laplace", seed=0, chains=1, draws=2000
        )
    assert post.model == name and set(post.params) == set(model.param_names) | {"sigma"}
    forecast = DigitalTwin(subject, [post]).forecast(FUTURE, seed=0)
    lo, hi = forecast.interval(0.99)
    true = values[-1]
    assert np.all(np.isfinite(forecast.draws))
    assert lo[0] < true < hi[0], (name, lo, true, hi)
    assert abs(np.log(forecast.median[0] / true)) < np.log(1.25), (name, forecast.median, true)
