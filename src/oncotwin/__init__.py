"""oncotwin: digital twins of cancer patients.

The public API, imported lazily (JAX loads only when a numerical object is first used)::

    from oncotwin import datasets, DigitalTwin
    twin = DigitalTwin.calibrate(datasets.load("vaghi2020-lung"), "lung-3", model="gompertz")
    twin.forecast([20, 25, 30]).to_frame()
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "DigitalTwin": "oncotwin.twin",
    "Dose": "oncotwin.schedule",
    "Forecast": "oncotwin.twin",
    "MODELS": "oncotwin.models",
    "PatientData": "oncotwin.data",
    "Population": "oncotwin.inference.population",
    "Posterior": "oncotwin.inference.posterior",
    "Prior": "oncotwin.inference.priors",
    "Recommendation": "oncotwin.optimize",
    "Regimen": "oncotwin.regimen",
    "Schedule": "oncotwin.schedule",
    "Store": "oncotwin.store",
    "Switch": "oncotwin.schedule",
    "TrialDesign": "oncotwin.trials",
    "TrialResult": "oncotwin.trials",
    "analyse_trial": "oncotwin.trials",
    "create_app": "oncotwin.service",
    "import_bundle": "oncotwin.data.fhir",
    "load_design": "oncotwin.trials",
    "run_trial": "oncotwin.trials",
    "calibrate": "oncotwin.inference.calibrate",
    "calibrate_subjects": "oncotwin.inference.calibrate",
    "assimilate": "oncotwin.inference.assimilate",
    "compare": "oncotwin.inference.compare",
    "fit_population": "oncotwin.inference.population",
    "get_model": "oncotwin.models",
    "load_regimen": "oncotwin.regimen",
    "optimize_twin": "oncotwin.optimize",
    "parse_regimen": "oncotwin.regimen",
    "predict": "oncotwin.predict",
    "read_events": "oncotwin.data",
    "simulate": "oncotwin.simulate",
    "write_events": "oncotwin.data",
}
_MODULES = {"datasets": "oncotwin.datasets", "errors": "oncotwin.errors", "units": "oncotwin.units"}

__all__ = sorted([*_EXPORTS, *_MODULES, "__version__"])


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return importlib.import_module(_MODULES[name])
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'oncotwin' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
