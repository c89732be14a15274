"""Toxicity endpoints: neutropenia from the Friberg model (docetaxel PK) and NTCP from the
Lyman-Kutcher-Burman model, checked against direct calls of those models."""

import numpy as np
import pytest

from oncotwin.models.myelosuppression import (
    DOCETAXEL_FRIBERG,
    DOCETAXEL_PK,
    neutropenia_grade,
    simulate_anc,
)
from oncotwin.trials import design_from_dict, run_trial


def test_neutropenia_and_ntcp_rates():
    spec = {
        "model": "claret", "seed": 4,
        "arms": [
            {"name": "docetaxel", "regimen": {"patient": {"bsa": 1.8},
                                              "items": ["docetaxel 75 mg/m2 q3w x 2 over 1 h"]}},
            {"name": "radiotherapy",
             "ntcp": {"geud": 24.5, "td50": 24.5, "m": 0.18}},
        ],
        "visits": {"every": "6 weeks"}, "follow_up": "12 weeks",
        "endpoints": {"neutropenia": {"agent": "docetaxel", "omega": 0.0}},
    }  # fmt: skip
    res = run_trial(design_from_dict(spec), 64)
    p = res.patients
    a, b = p[p["arm"] == "docetaxel"], p[p["arm"] == "radiotherapy"]
    # Without variability every treated patient has the typical patient's nadir grade.
    grid = np.linspace(0.0, 42.0 + 21.0, 127)
    anc = simulate_anc(grid, [0.0, 21.0], [135.0, 135.0], DOCETAXEL_PK, DOCETAXEL_FRIBERG,
                       dose_durations=[1 / 24, 1 / 24])  # fmt: skip
    typical = int(neutropenia_grade(np.min(np.asarray(anc)))) >= 3
    assert a["neutropenia_g3"].tolist() == [typical] * len(a)
    assert not b["neutropenia_g3"].any()
    # gEUD = TD50: NTCP 1/2 in the irradiated arm, none elsewhere.
    assert b["ntcp_event"].mean() == pytest.approx(0.5, abs=3 * np.sqrt(0.25 / len(b)))
    assert not a["ntcp_event"].any()
