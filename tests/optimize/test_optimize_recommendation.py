"""The recommendation: always a comparison with the standard of care, paired over draws, and
an explicit "data do not support a confident recommendation" when they cannot be told apart.

A problem with known per-draw outcomes (no simulator) makes the probabilities exact: with
outcomes ``x_soc`` and ``x_best`` per draw, P(better) is the fraction of draws where
``x_best > x_soc`` (ties count half).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from oncotwin.optimize import (
    Candidate,
    Constraint,
    MaxCumulative,
    Objective,
    RiskMeasure,
    Trajectories,
    pareto_front,
    parse_objective,
    parse_risk,
    run,
)
from oncotwin.schedule import Dose, Schedule


@dataclass
class Known:
    """Candidates with fixed per-draw outcomes ("regrowth" days) and doses."""

    outcomes: dict[str, np.ndarray]
    doses: dict[str, float]
    modality: str = "test"
    patient: str = "p"
    start: float = 0.0
    seed: int = 0
    unit: str = "mm3"
    toxicity_label: str = "dose"
    notes: tuple[str, ...] = ()
    warning: str | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def n_draws(self) -> int:
        return len(next(iter(self.outcomes.values())))

    def _cand(self, name: str) -> Candidate:
        s = Schedule((Dose(1.0, self.doses[name], "x"),))
        return Candidate(name, "fixed", {}, s, name == "soc")

    def standard_of_care(self) -> Candidate:
        return self._cand("soc")

    def family(self) -> list[Candidate]:
        return [self._cand(n) for n in self.outcomes if n != "soc"]

    def refine(self, o: Objective, r: RiskMeasure, c: Sequence[Constraint]) -> list[Candidate]:
        return []

    def default_constraints(self) -> list[Constraint]:
        return []

    def default_horizon(self, objective: Objective) -> float:
        return 10.0

    def simulate(self, candidates: Sequence[Candidate], horizon: float) -> list[Any]:
        t = np.linspace(0, horizon, 3)
        return [
            (Trajectories(t, np.ones((self.n_draws, 3)), 0.0,
                          {"regrowth_time": self.outcomes[c.name]}), {}, self.doses[c.name])
            for c in candidates
        ]  # fmt: skip


def test_a_clear_winner_is_recommended_with_its_probability() -> None:
    soc = np.arange(100.0, 200.0)
    prob = Known({"soc": soc, "better": soc + 10, "worse": soc - 5}, {"soc": 2, "better": 3,
                                                                        "worse": 1})  # fmt: skip
    rec = run(prob, parse_objective("regrowth"), parse_risk("cvar:0.9"))
    assert rec.best[0].candidate.name == "better"
    assert rec.comparison is not None and rec.comparison.probability_better == 1.0
    assert rec.comparison.median == pytest.approx(10.0)
    assert rec.confident and rec.headline().startswith("Recommended: better")
    d = rec.to_dict()
    assert d["standard_of_care"]["name"] == "soc" and d["confident"] is True


def test_indistinguishable_schedules_give_no_confident_recommendation() -> None:
    rng = np.random.default_rng(0)
    soc = rng.normal(100, 30, 1000)
    # better on average (and in CVaR), but only in 60 % of draws
    noisy = soc + np.where(rng.random(1000) < 0.6, 20.0, -15.0)
    rec = run(Known({"soc": soc, "alt": noisy}, {"soc": 1, "alt": 1}),
              parse_objective("regrowth"), parse_risk("mean"))  # fmt: skip
    assert rec.best[0].candidate.name == "alt"
    assert rec.comparison is not None
    assert rec.comparison.probability_better == pytest.approx(np.mean(noisy > soc))
    assert not rec.confident
    assert "do not support a confident recommendation" in rec.headline()


def test_standard_of_care_best_or_infeasible_is_said() -> None:
    soc = np.linspace(50, 60, 20)
    rec = run(Known({"soc": soc, "alt": soc - 1}, {"soc": 1, "alt": 1}),
              parse_objective("regrowth"), parse_risk("mean"))  # fmt: skip
    assert rec.standard_is_best and "Keep the standard of care" in rec.headline()
    # nothing within a cumulative cap: no recommendation, the standard still reported
    rec = run(Known({"soc": soc, "alt": soc + 1}, {"soc": 5, "alt": 6}),
              parse_objective("regrowth"), parse_risk("mean"), [MaxCumulative(1.0)])  # fmt: skip
    assert not rec.best and rec.standard.candidate.name == "soc"
    assert "No schedule considered meets every constraint" in rec.headline()


def test_pareto_front() -> None:
    eff = np.array([1.0, 2.0, 3.0, 2.5, 0.5])
    tox = np.array([1.0, 2.0, 3.0, 3.5, 0.5])
    assert pareto_front(eff, tox).tolist() == [4, 0, 1, 2]  # 3 is dominated by 2


def test_report_section_and_patient_page(tmp_path: Any) -> None:
    from oncotwin.report.recommendation import recommendation_section, write_recommendation_report

    soc = np.arange(100.0, 200.0)
    rec = run(Known({"soc": soc, "better": soc + 10}, {"soc": 2, "better": 3}),
              parse_objective("regrowth"), parse_risk("cvar:0.9"))  # fmt: skip
    html = recommendation_section(rec)
    assert '<section id="recommendation">' in html and "Recommended: better" in html
    assert "data:image/png;base64" in html and "standard of care" in html
    page = write_recommendation_report(tmp_path / "r.html", rec).read_text()
    assert "Treatment recommendation" in page


@pytest.mark.filterwarnings("ignore::oncotwin.errors.ConvergenceWarning")  # 4 points, Laplace
def test_chemotherapy_twin_keeps_the_standard_and_bounds_neutropenia() -> None:
    """A claret twin treated weekly: the recorded regimen continued is the standard of care;
    every recommended schedule meets P(grade >= 4 neutropenia) <= 0.5 over the draws."""
    import pandas as pd

    from oncotwin.data import PatientData
    from oncotwin.optimize import optimize_twin
    from oncotwin.twin import DigitalTwin

    rows = [{"id": "p1", "time": t, "evid": 0, "dv": v}
            for t, v in [(0, 50.0), (7, 40.0), (14, 33.0), (21, 28.0)]]  # fmt: skip
    rows += [{"id": "p1", "time": t, "evid": 1, "amt": 100.0, "agent": "docetaxel"}
             for t in (0, 7, 14, 21)]  # fmt: skip
    twin = DigitalTwin.calibrate(PatientData.from_frame(pd.DataFrame(rows)), "p1", "claret",
                                 method="laplace")  # fmt: skip
    rec = optimize_twin(twin, "chemotherapy", objective="burden:60", risk="mean",
                        constraints=["neutropenia:4<=0.5"], n_draws=8, dose_factors=(0.8, 1.0),
                        cycle_lengths=(7.0,), n_cycles=(4,))  # fmt: skip
    assert rec.standard.candidate.name == "docetaxel 100 every 7 days x 6"
    assert any(r.candidate.standard for r in rec.results)
    for r in rec.best:
        grades = next(c for c in r.checks if c.name.startswith("P(grade >= 4"))
        assert grades.probability is not None and grades.probability >= 0.5
    assert rec.to_dict()["standard_of_care"]["standard_of_care"] is True
