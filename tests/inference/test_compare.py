"""Model comparison by PSIS-LOO on data with a known generating model."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from oncotwin.errors import ConvergenceWarning, ModelError
from oncotwin.inference.calibrate import calibrate_subjects
from oncotwin.inference.compare import compare
from oncotwin.inference.problem import SubjectData
from oncotwin.schedule import Schedule
from oncotwin.simulate import simulate

# Logistic growth with a clear plateau: from 100 mm3 at 0.3/day towards K = 500 mm3, observed
# 8 times over 40 days (the last four within 4% of K), 5% CV. Exponential growth cannot bend.
TIMES = np.linspace(0.0, 40.0, 8)
N_SUBJECTS = 4


@pytest.fixture(scope="module")
def posteriors():
    rng = np.random.default_rng(3)
    subjects = []
    for i in range(N_SUBJECTS):
        k = 500.0 * np.exp(0.2 * rng.standard_normal())
        f = simulate("logistic", {"v0": 100.0, "a": 0.3, "k": k}, TIMES).values
        y = f * np.exp(0.05 * rng.standard_normal(len(TIMES)))
        subjects.append(
            SubjectData(f"s{i}", TIMES, y, np.zeros(len(TIMES), bool), Schedule(), "volume", "mm3")
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a misfit model may warn
        return {
            name: calibrate_subjects(name, subjects, method="laplace", seed=0, chains=1, draws=1000)
            for name in ("exponential", "logistic")
        }


def test_logistic_wins_on_logistic_data(posteriors):
    result = compare(posteriors)
    assert result.best == "logistic"
    assert result.weights["logistic"] > 0.5
    table = result.table
    assert list(table.columns) == [
        "model",
        "elpd_loo",
        "se",
        "p_loo",
        "elpd_diff",
        "weight",
        "n_bad_k",
    ]
    assert table["model"].tolist() == ["logistic", "exponential"]
    assert table["elpd_diff"].iloc[0] == 0.0
    # not a close call: the exponential model is worse by several standard errors
    diff = table["elpd_loo"].iloc[0] - table["elpd_loo"].iloc[1]
    assert diff > 10.0, table
    assert sum(result.weights.values()) == pytest.approx(1.0, abs=1e-9)


def test_compare_needs_two_models_on_the_same_observations(posteriors):
    with pytest.raises(ModelError, match="at least two models"):
        compare({"logistic": posteriors["logistic"]})
    with pytest.raises(ModelError, match="different observations"):
        compare({"logistic": posteriors["logistic"], "exponential": posteriors["exponential"][:2]})


# Cohorts from different generating models, in different units and scales (volumes of ~100 mm3
# over 40 days; diameters of ~2 cm over 20 weeks): model="auto" must pick the generator without
# any data-set constant. 6 subjects x 12 observations, 5% CV, seed 11.
GENERATORS = {
    "exponential": ({"v0": 100.0, "a": 0.08}, np.linspace(0.0, 40.0, 12), ("volume", "mm3")),
    "gompertz": (
        {"v0": 2.0, "alpha": 0.08, "beta": 0.03},
        np.linspace(0.0, 140.0, 12),
        ("diameter", "cm"),
    ),  # fmt: skip
    "logistic": (
        {"v0": 100.0, "a": 0.25, "k": 800.0},
        np.linspace(0.0, 40.0, 12),
        ("volume", "mm3"),
    ),  # fmt: skip
}


@pytest.mark.parametrize("truth", sorted(GENERATORS))
def test_auto_selects_the_generating_model(truth):
    from oncotwin.data import PatientData

    params, times, (kind, unit) = GENERATORS[truth]
    rng = np.random.default_rng(11)
    rows = []
    for i in range(6):
        p = dict(params)
        first = next(iter(p))
        p[first] *= float(np.exp(0.2 * rng.standard_normal()))
        y = simulate(truth, p, times).values * np.exp(0.05 * rng.standard_normal(len(times)))
        rows += [{"id": f"s{i}", "time": t, "evid": 0, "dv": v, "kind": kind, "unit": unit}
                 for t, v in zip(times, y, strict=True)]  # fmt: skip
    import pandas as pd

    from oncotwin.predict import predict

    data = PatientData.from_frame(pd.DataFrame(rows), source="synthetic")
    targets = pd.DataFrame({"id": ["s0"], "time": [times[-1] + 5.0]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        result = predict(data, targets, model="auto", method="laplace", seed=0)
    assert result.comparison is not None
    assert result.comparison.best == truth, result.comparison.table
