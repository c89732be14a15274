"""Virtual clinical trials: virtual populations, designs, endpoints, runs and analyses.

See ``docs/trials.md``. The pieces, left to right:

- :mod:`.design` reads a YAML trial design (arms from the regimen language, visits, endpoints);
- :mod:`.cohort` draws virtual patients (fitted population or parameter distributions) and
  matches them to a real cohort (Allen, Rieger & Musante 2016);
- :mod:`.endpoints` turns simulated tumour sizes into RECIST, PFS, OS and toxicity;
- :mod:`.run` simulates trials in compiled, memory-bounded chunks (any executor);
- :mod:`.analysis` estimates effects (KM, log-rank, Cox, ORR), power by simulation and
  prognostic-score (PROCOVA-style) adjustment.
"""

from __future__ import annotations

from .analysis import (
    TrialAnalysis,
    analyse_trial,
    cox_ph,
    kaplan_meier,
    logrank,
    orr_difference,
    power_curve,
    prognostic_adjustment,
)
from .cohort import CohortSource, MatchResult, VirtualCohort, draw_cohort, match_observables
from .design import TrialDesign, design_from_dict, load_design
from .endpoints import best_overall_response, progression_free_survival, recist_timepoints
from .run import LocalExecutor, TrialResult, run_trial

__all__ = [
    "CohortSource",
    "LocalExecutor",
    "MatchResult",
    "TrialAnalysis",
    "TrialDesign",
    "TrialResult",
    "VirtualCohort",
    "analyse_trial",
    "best_overall_response",
    "cox_ph",
    "design_from_dict",
    "draw_cohort",
    "kaplan_meier",
    "load_design",
    "logrank",
    "match_observables",
    "orr_difference",
    "power_curve",
    "prognostic_adjustment",
    "progression_free_survival",
    "recist_timepoints",
    "run_trial",
]
