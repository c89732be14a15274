"""Whole-trial simulations: type-I error of the Cox HR, prognostic adjustment, failures as
data, eligibility, and bit-identical results across chunkings and Dask worker counts."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from oncotwin.trials import CohortSource, design_from_dict, draw_cohort, load_design, run_trial
from oncotwin.trials.analysis import prognostic_adjustment, rejection_rate, replicate_estimates

NULL = Path(__file__).with_name("null_design.yaml")


@pytest.fixture(scope="module")
def design():
    return load_design(NULL)


@pytest.fixture(scope="module")
def null_trials(design):
    # 400 replicate trials of 160 patients, two identical arms.
    return run_trial(design, 160, replicates=400, chunk_size=16384, keep_visits=False)


def test_identical_arms_hr_ci_covers_one_95_percent(null_trials):
    est = replicate_estimates(null_trials, endpoint="os")
    assert len(est) == 400 and est["se"].notna().all()
    covered = float(np.mean((est["low"] <= 0.0) & (est["high"] >= 0.0)))
    mc = np.sqrt(0.95 * 0.05 / 400)  # Monte Carlo SE of a 95 % coverage: 0.011
    assert abs(covered - 0.95) < 3 * mc
    rate, se = rejection_rate(est, 0.05)
    assert rate == pytest.approx(1 - covered)
    # PFS (events at scheduled assessments, heavy ties) too.
    est = replicate_estimates(null_trials, endpoint="pfs")
    assert abs(rejection_rate(est, 0.05)[0] - 0.05) < 3 * mc


def test_prognostic_adjustment_reduces_variance_and_keeps_type_i_error(null_trials):
    mc = np.sqrt(0.05 * 0.95 / 400)
    cont = prognostic_adjustment(null_trials, endpoint="pct_change")
    # The twin forecast (log-parameter error 0.1) explains most of the spread of the change
    # at week 8 apart from measurement noise: large reduction, and the test keeps its level.
    # ANCOVA theory: variance ratio 1 - rho^2 (rho: score-outcome correlation).
    rho = cont["score_outcome_correlation"]
    assert rho > 0.7
    assert cont["variance_reduction"] == pytest.approx(rho**2, abs=0.05)
    assert cont["empirical_variance_reduction"] == pytest.approx(rho**2, abs=0.1)
    assert abs(cont["rejection_unadjusted"][0] - 0.05) < 3 * mc
    assert abs(cont["rejection_adjusted"][0] - 0.05) < 3 * mc
    tte = prognostic_adjustment(null_trials, endpoint="os")
    # Cox: adjustment keeps the level; under the null no effect is visible, so the efficiency
    # (a ratio of mean z-statistics) is undefined rather than a ratio of noise.
    assert abs(tte["rejection_adjusted"][0] - 0.05) < 3 * mc
    assert np.isnan(tte["sample_size_saved"])


def test_results_do_not_depend_on_chunking_or_dask_workers(design):
    from oncotwin.scale.dask import DaskExecutor

    a = run_trial(design, 1500, chunk_size=1024)
    b = run_trial(design, 1500, chunk_size=2048)
    pd.testing.assert_frame_equal(a.patients, b.patients, check_exact=True)
    outs = []
    for workers in (1, 2):
        with DaskExecutor(n_workers=workers, processes=False) as ex:
            outs.append(run_trial(design, 1500, chunk_size=1024, executor=ex))
            assert ex.workers == workers
    for r in outs:
        pd.testing.assert_frame_equal(a.patients, r.patients, check_exact=True)
        assert np.array_equal(a.visits, r.visits, equal_nan=True)
    assert outs[0].backend.startswith("dask")


def test_failed_patients_are_data_not_errors(design):
    # Growth of exp(kg t) with kg = 10/day overflows after ~70 days: every patient fails,
    # and the trial still returns (status "failed", no events, no responders).
    src = CohortSource.from_design(design)
    mu, omega = src.mu.copy(), src.omega.copy()
    mu[0, src.names.index("kg")], omega[0, src.names.index("kg")] = np.log(10.0), 0.0
    res = run_trial(design, 40, source=replace(src, mu=mu, omega=omega))
    assert res.counts()["failed"] == 40
    assert not res.patients["os_event"].any() and not res.patients["responder"].any()


def test_eligibility_screens_patients(design):
    raw = yaml.safe_load(NULL.read_text())
    raw["eligibility"] = ["baseline >= 100", "ecog == 0"]
    cohort = draw_cohort(design_from_dict(raw), 300)
    ok = cohort.eligible
    assert ok.mean() > 0.9  # 16 candidates each: P(none eligible) ~ (1 - 0.33 x 0.5)^16
    assert np.all(cohort.baseline[ok] >= 100) and np.all(cohort.covariates["ecog"][ok] == 0)
    # Baselines of 1 mm never meet "baseline >= 10": every patient is ineligible, none fails.
    src = CohortSource.from_design(design)
    res = run_trial(design, 30, source=replace(src, baseline_log_mu=np.zeros(1)))
    assert res.counts() == {"ok": 0, "ineligible": 30, "failed": 0}
