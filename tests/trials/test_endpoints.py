"""RECIST 1.1, best overall response, PFS and the survival link against hand-worked cases.

The RECIST thresholds are those of Eisenhauer EA et al. Eur J Cancer 2009;45:228-247 (PR:
>= 30 % decrease from baseline; PD: >= 20 % and >= 5 mm above the nadir; CR: disappearance);
each expected category below is worked out by hand from them.
"""

import numpy as np
import pytest

from oncotwin.models.immune import classify_recist
from oncotwin.trials.design import SurvivalLink
from oncotwin.trials.endpoints import (
    CR,
    NE,
    PD,
    PR,
    SD,
    best_overall_response,
    progression_free_survival,
    recist_timepoints,
    survival_times,
)

TIMES = np.array([0.0, 42.0, 84.0, 126.0, 168.0])
ALL = np.ones((1, 5), bool)


def codes(sld, observed=None):
    obs = ALL if observed is None else np.asarray([observed], bool)
    return np.asarray(recist_timepoints(np.asarray([sld], float), obs))[0]


@pytest.mark.parametrize(
    ("sld", "expected"),
    [
        # 100 -> 70 is exactly -30 %: PR; 69 PR; 72 is -28 % from baseline (and +4 % on the
        # nadir): SD; 0 CR.
        ([100, 70, 69, 72, 0], [NE, PR, PR, SD, CR]),
        # Nadir 50 at visit 1: 60 is +20 % and +10 mm: PD; 59 is below 1.2 x 50 and <= 70 (PR
        # against baseline): PR; 80 is +60 % on the nadir: PD.
        ([100, 50, 60, 59, 80], [NE, PR, PD, PR, PD]),
        # Small lesions: 20 -> 24 is +20 % but only +4 mm: not PD (the 5 mm rule).
        ([20, 24, 25, 26, 18], [NE, SD, PD, PD, SD]),
        # +19 % at 119: SD; +20 % at 120: PD.
        ([100, 119, 120, 100, 100], [NE, SD, PD, SD, SD]),
    ],
)
def test_timepoint_categories_hand_worked(sld, expected):
    assert codes(sld).tolist() == expected


def test_nadir_ignores_missed_assessments():
    # The 40 mm at visit 1 was not assessed (patient missed it): the nadir stays 100, so 110 is
    # +10 % (SD), not +175 % over 40.
    c = codes([100, 40, 110, 130, 100], [True, False, True, True, True])
    assert c.tolist() == [NE, NE, SD, PD, SD]


def bor(sld, observed=None, **kw):
    c = recist_timepoints(
        np.asarray([sld], float), ALL if observed is None else np.asarray([observed])
    )
    return int(np.asarray(best_overall_response(TIMES, c, **kw))[0])


def test_best_overall_response_hand_worked():
    assert bor([100, 70, 50, 40, 30]) == PR
    assert bor([100, 60, 0, 0, 0]) == CR
    assert bor([100, 90, 95, 140, 50]) == SD  # SD at day 42 (>= 42), PD at 126; later PR ignored
    assert bor([100, 130, 60, 60, 60]) == PD  # PD at the first assessment; later response ignored
    # SD only before the minimum duration, then PD: PD (RECIST 1.1 section 4.4).
    assert bor([100, 100, 130, 60, 60], sd_min_days=60) == PD
    # SD before the minimum duration and no later assessment: not evaluable.
    assert bor([100, 100, 0, 0, 0], [True, True, False, False, False], sd_min_days=60) == NE


def test_confirmation_needs_a_later_response_28_days_on():
    # PR at day 42 confirmed at day 84 -> PR.
    assert bor([100, 60, 65, 65, 65], confirm=True) == PR
    # PR at day 42, SD at day 84: unconfirmed -> SD.
    assert bor([100, 60, 80, 80, 80], confirm=True) == SD
    # CR at day 42 but only PR later (4 mm: +4 mm over the nadir 0 is not PD): PR.
    assert bor([100, 0, 4, 4, 4], confirm=True) == PR
    # ... and 50 mm after a CR is progression (+50 mm over the nadir 0).
    assert bor([100, 0, 50, 50, 50]) == CR and codes([100, 0, 50, 50, 50])[2] == PD
    # PR at the last assessment cannot be confirmed: SD.
    assert bor([100, 90, 90, 90, 60], confirm=True) == SD


def test_pfs_hand_worked():
    sld = np.array([[100, 70, 90, 90, 90],  # PD at day 84 (90 >= 1.2 x 70 and +20 mm)
                    [100, 90, 80, 80, 80],  # no PD; death at day 150 before censoring
                    [100, 90, 80, 80, 80],  # no PD; drops out at day 100: censored at day 84
                    [100, 90, 80, 80, 80]], float)  # fmt: skip
    death = np.array([1000.0, 150.0, 1000.0, 1000.0])
    censor = np.array([365.0, 365.0, 100.0, 365.0])
    end = np.minimum(death, censor)
    observed = TIMES[None, :] <= end[:, None]
    c = recist_timepoints(sld, observed)
    t, e = progression_free_survival(TIMES, c, observed, death, censor)
    assert np.asarray(t).tolist() == [84.0, 150.0, 84.0, 168.0]
    assert np.asarray(e).tolist() == [True, True, False, False]


def test_agrees_with_classify_recist_on_random_courses():
    rng = np.random.default_rng(3)
    sld = 80 * np.exp(np.cumsum(rng.normal(0, 0.25, (300, 5)), axis=1))
    sld[:, 0] = 80
    c = np.asarray(recist_timepoints(sld, np.ones_like(sld, bool)))
    for i in range(sld.shape[0]):
        ref = classify_recist(TIMES, sld[i])
        pd_idx = np.nonzero(c[i] == PD)[0]
        assert (ref.progression_time is None) == (pd_idx.size == 0)
        if pd_idx.size:
            assert ref.progression_time == TIMES[pd_idx[0]]
        pr_before = np.any(c[i, : (pd_idx[0] if pd_idx.size else 5)] >= PR)
        if ref.label == "responder":
            assert pr_before
        if ref.label == "stable":
            assert not pr_before and not pd_idx.size


def test_survival_link_medians():
    # With e = 0 the log-normal time is exp(lp): its median. The Weibull draw at the Normal's
    # median is the minimum-extreme-value median log(log 2), so T = exp(lp) (log 2)^sigma.
    lp = 6.0 - 1.0 * np.log(0.5) - 0.3 * np.log(2.0) + 0.4 * 1.0
    cov = np.array([[1.0]])
    for dist, expected in (("lognormal", np.exp(lp)), ("weibull", np.exp(lp) * np.log(2) ** 0.7)):
        link = SurvivalLink(dist, 6.0, -1.0, -0.3, 0.7, {"ecog": 0.4})
        t = survival_times(link, np.log([0.5]), np.array([200.0]), cov, np.zeros(1))
        assert float(t[0]) == pytest.approx(expected, rel=1e-12)
