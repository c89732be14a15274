"""The model library: pure vector fields with parameter specifications and closed forms."""

from __future__ import annotations

from ..errors import ModelError
from .base import ParamSpec, TumourModel
from .growth import GROWTH_MODELS
from .hormone import zhang_psa
from .immune import kuznetsov_immune
from .myelosuppression import friberg_anc
from .radiation import lq_regrowth
from .treatment import TREATMENT_MODELS

# Response models: radiotherapy, immunotherapy, hormone therapy (PSA) and neutropenia (ANC).
RESPONSE_MODELS = (lq_regrowth, kuznetsov_immune, zhang_psa, friberg_anc)
MODELS: dict[str, TumourModel] = {
    m.name: m for m in GROWTH_MODELS + TREATMENT_MODELS + RESPONSE_MODELS
}


def get_model(model: str | TumourModel) -> TumourModel:
    """The model called `model` (a :class:`TumourModel` is returned as is).

    Raises:
        ModelError: no model has that name.
    """
    if isinstance(model, TumourModel):
        return model
    try:
        return MODELS[model]
    except KeyError:
        raise ModelError(f"unknown model {model!r}; available: {', '.join(MODELS)}") from None


__all__ = ["MODELS", "ParamSpec", "TumourModel", "get_model"]
