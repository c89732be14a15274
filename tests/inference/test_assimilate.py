"""Sequential data assimilation (SMC update of a twin's posterior) and surprise detection.

Provenance: one synthetic subject growing exponentially (v0 100 mm3, a 0.04/day), observed
every 5 days for 45 days with 10% log-normal measurement noise (fixed NumPy seed), so the truth
is known exactly. The reference for the sequential updates is a full NUTS calibration on all
ten observations: by Bayes' rule updating one observation at a time must reach the same
posterior (Chopin 2002), up to Monte Carlo error, which is judged by the Monte Carlo standard
error of each mean (from the effective sample sizes) and by quantiles in posterior-SD units.
"""

from __future__ import annotations

import dataclasses
import warnings

import arviz as az
import numpy as np
import pytest

from oncotwin.errors import ConvergenceWarning, DataError, ModelError
from oncotwin.inference.assimilate import Surprise, Update, assimilate
from oncotwin.inference.calibrate import calibrate_subjects
from oncotwin.inference.posterior import Diagnostics
from oncotwin.inference.problem import SubjectData
from oncotwin.schedule import Schedule
from oncotwin.simulate import simulate
from oncotwin.twin import DigitalTwin

TRUTH = {"v0": 100.0, "a": 0.04}
SIGMA = 0.1
TIMES = np.arange(0.0, 50.0, 5.0)  # 10 observations, days 0-45
FIRST = 5  # the twin starts from the first five observations
# 5000 draws per chain (the NUTS run is cheap; compiling it is not): the 5% and 95% quantiles
# of two such samples then agree to ~0.03-0.05 posterior SD. NUTS explores the tails more slowly
# than its ESS says: against ten NUTS reference seeds the largest difference was 0.085 SD.
NUTS = {"method": "nuts", "chains": 4, "draws": 5000, "warmup": 1000}
MODEL_VALUES = simulate("exponential", TRUTH, TIMES).values
Y = MODEL_VALUES * np.exp(SIGMA * np.random.default_rng(1).standard_normal(len(TIMES)))


def subject(n: int, y: np.ndarray = Y, schedule: Schedule | None = None) -> SubjectData:
    """The first `n` observations of the synthetic subject (optionally other values)."""
    return SubjectData(
        "e1", TIMES[:n], np.asarray(y[:n], float), np.zeros(n, bool), schedule or Schedule(),
        "volume", "mm3",
    )  # fmt: skip


def with_new(value: float, censored: bool = False) -> SubjectData:
    """The first FIRST observations plus one new observation `value` at the next time."""
    s = subject(FIRST + 1)
    y, c = s.y.copy(), s.censored.copy()
    y[-1], c[-1] = value, censored
    return dataclasses.replace(s, y=y, censored=c)


@pytest.fixture(scope="module")
def start():
    """NUTS posterior on the first five observations."""
    return calibrate_subjects("exponential", [subject(FIRST)], seed=0, **NUTS)[0]


@pytest.fixture(scope="module")
def full():
    """Reference: NUTS posterior on all ten observations."""
    return calibrate_subjects("exponential", [subject(len(TIMES))], seed=1, **NUTS)[0]


@pytest.fixture(scope="module")
def sequential(start) -> list[Update]:
    """Updates one observation at a time, each from the previous result."""
    out, post = [], start
    for n in range(FIRST + 1, len(TIMES) + 1):
        out.append(assimilate(post, subject(n - 1), subject(n), seed=n))
        post = out[-1].posterior
    return out


# ---- sequential updates reach the full posterior ------------------------------------------------


def test_every_step_reweights(start, sequential):
    for u in sequential:
        assert u.how == "reweighted", u.reason
        assert u.posterior.method == "smc"
        assert u.posterior.converged, u.posterior.diagnostics.problems()
        assert u.pareto_k <= 0.7 and u.ess_fraction >= 0.5
        assert 0.1 <= u.posterior.diagnostics.acceptance <= 0.6
        assert u.posterior.z.shape == start.z.shape
        assert u.posterior.settings["calibration_method"] == "nuts"
    last = sequential[-1].posterior
    assert last.log_lik.shape == (*start.z.shape[:2], len(TIMES))
    assert last.params["v0"].shape == start.z.shape[:2]


def test_sequential_matches_full_calibration(sequential, full):
    """Means within 3 MCSE (+0.05 SD) and 5/50/95% quantiles within 0.15 SD, per parameter on
    the unconstrained scale. MCSE: NUTS from the bulk ESS; SMC conservatively from the smallest
    ESS of the incremental weights (N x ESS fraction), ignoring what rejuvenation adds."""
    smc = sequential[-1].posterior
    n_smc = smc.n_draws * min(u.ess_fraction for u in sequential)
    a, b = smc.flat_z(), full.flat_z()
    for i, name in enumerate(full.names):
        sd = b[:, i].std()
        mcse = np.hypot(
            sd / np.sqrt(az.ess(full.z[..., i], method="bulk")), a[:, i].std() / np.sqrt(n_smc)
        )
        diff = a[:, i].mean() - b[:, i].mean()
        assert abs(diff) <= 3 * mcse + 0.05 * sd, (name, diff / mcse)
        qa, qb = np.quantile(a[:, i], [0.05, 0.5, 0.95]), np.quantile(b[:, i], [0.05, 0.5, 0.95])
        assert np.all(np.abs(qa - qb) <= 0.15 * sd), (name, (qa - qb) / sd)


# ---- surprises ----------------------------------------------------------------------------------


def test_outlier_is_a_surprise(start):
    """A new measurement three times the model value lies far outside the 95% interval."""
    t, f = TIMES[FIRST], MODEL_VALUES[FIRST]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        u = assimilate(start, subject(FIRST), with_new(3 * f))
    assert len(u.surprises) == 1
    s = u.surprises[0]
    assert isinstance(s, Surprise)
    assert s.time == t and s.observed == 3 * f and s.level == 0.95
    assert s.lo < f < s.hi < 3 * f
    assert s.tail_probability < 0.025 and not s.censored


def test_in_distribution_value_is_no_surprise(start):
    """The true (noise-free) next value lies inside the interval."""
    u = assimilate(start, subject(FIRST), with_new(MODEL_VALUES[FIRST]))
    assert u.surprises == []
    assert u.how == "reweighted"


def test_censored_surprise_only_below_the_interval(start):
    """Below a detection limit that is under the interval: certainly smaller than predicted. Below
    a limit over the interval: what the twin expected."""
    f = MODEL_VALUES[FIRST]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        low = assimilate(start, subject(FIRST), with_new(f / 3, censored=True))
    assert len(low.surprises) == 1 and low.surprises[0].censored
    assert low.surprises[0].observed < low.surprises[0].lo
    high = assimilate(start, subject(FIRST), with_new(3 * f, censored=True))
    assert high.surprises == []


# ---- errors and the fallback --------------------------------------------------------------------


def test_prefix_mismatch_raises(start):
    y = Y.copy()
    y[2] *= 1.5
    with pytest.raises(DataError, match=r"'e1'.*row 2"):
        assimilate(start, subject(FIRST), subject(FIRST + 1, y))
    with pytest.raises(DataError, match="fewer"):
        assimilate(start, subject(FIRST), subject(FIRST - 1))
    other = dataclasses.replace(subject(FIRST + 1), id="e2")
    with pytest.raises(DataError, match="e2"):
        assimilate(start, subject(FIRST), other)


def test_bad_arguments(start):
    with pytest.raises(ModelError, match="min_ess_fraction"):
        assimilate(start, subject(FIRST), subject(FIRST + 1), min_ess_fraction=0.0)
    with pytest.raises(ModelError, match="rejuvenation_steps"):
        assimilate(start, subject(FIRST), subject(FIRST + 1), rejuvenation_steps=0)
    other = dataclasses.replace(subject(FIRST), id="e2")
    with pytest.raises(DataError, match="posterior is of subject 'e1'"):
        assimilate(start, other, dataclasses.replace(subject(FIRST + 1), id="e2"))
    late = dataclasses.replace(subject(FIRST + 1), times=np.r_[TIMES[:FIRST], 1.0])
    with pytest.raises(DataError, match="follow the old ones"):
        assimilate(start, subject(FIRST), late)


def test_weight_collapse_recalibrates(start):
    """A measurement 100 times the model value: no old draw explains it, so reweighting fails
    (and the subject is recalibrated with the method asked for)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        u = assimilate(
            start, subject(FIRST), with_new(100 * MODEL_VALUES[FIRST]), fallback_method="laplace"
        )
    assert u.how == "recalibrated"
    assert "collapsed" in u.reason or "zero likelihood" in u.reason
    assert u.posterior.method == "laplace"
    assert u.posterior.log_lik.shape[-1] == FIRST + 1
    assert len(u.surprises) == 1


def test_past_schedule_change_recalibrates(start):
    """A dose recorded before the last old observation voids the old posterior."""
    dosed = Schedule.from_dict({"doses": [{"amount": 50, "time": 10.0}]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        u = assimilate(start, subject(FIRST), subject(FIRST + 1, schedule=dosed))
    assert u.how == "recalibrated" and "schedule" in u.reason
    # with the old posterior's calibration method and settings
    assert u.posterior.method == "nuts" and u.posterior.z.shape == start.z.shape


def test_no_new_observation_leaves_the_posterior(start):
    u = assimilate(start, subject(FIRST), subject(FIRST))
    assert u.how == "unchanged" and u.posterior is start and u.surprises == []


def test_smc_diagnostics():
    ok = Diagnostics("smc", pareto_k=0.2, ess_fraction=0.8, acceptance=0.3)
    assert ok.ok
    bad = Diagnostics("smc", pareto_k=0.9, ess_fraction=0.1, acceptance=0.05)
    problems = bad.problems()
    assert len(problems) == 2
    assert "Pareto k" in problems[0] and "acceptance" in problems[1]
    assert bad.to_dict()["acceptance"] == 0.05


# ---- the twin -----------------------------------------------------------------------------------


def test_twin_update(start):
    twin = DigitalTwin(subject(FIRST), [start], data_version="v1")
    new = subject(FIRST + 1)
    new_twin, u = twin.update(new, seed=3)
    assert new_twin.subject is new and len(new_twin.subject.times) == FIRST + 1
    assert new_twin.data_version is None
    assert u.how == "reweighted" and new_twin.posterior is u.posterior
    fc = new_twin.forecast([50.0, 60.0], seed=0)
    assert fc.draws.shape == (start.n_draws, 2) and np.all(np.isfinite(fc.draws))
    lo, hi = fc.interval(0.9)
    assert np.all(lo < fc.median) and np.all(fc.median < hi)


def test_stacked_twin_update_keeps_weights(start):
    twin = DigitalTwin(subject(FIRST), [start, start], weights=[0.7, 0.3])
    new_twin, u = twin.update(subject(FIRST + 1), data_version="v2")
    assert np.allclose(new_twin.weights, [0.7, 0.3])
    assert len(new_twin.posteriors) == 2 and new_twin.data_version == "v2"
    assert u.posterior is new_twin.posteriors[0]
    assert all(p.method == "smc" for p in new_twin.posteriors)
