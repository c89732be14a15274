"""Model comparison by PSIS-LOO (ArviZ) for a subject or a cohort, with stacking weights."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import ModelError
from .posterior import Posterior

GROWTH_CANDIDATES = (
    "exponential",
    "logistic",
    "gompertz",
    "power_law",
    "exponential_linear",
    "bertalanffy",
)
TREATMENT_CANDIDATES = ("stein", "claret", "two_population", "exponential")


@dataclass(frozen=True)
class ModelComparison:
    """PSIS-LOO comparison of candidate models on the same observations.

    Attributes:
        table: one row per model, best first: elpd_loo, se, p_loo, elpd_diff, weight
            (stacking, Yao et al. Bayesian Analysis 2018) and n_bad_k (observations whose
            Pareto k > 0.7, where the LOO estimate is unreliable).
        best: the model with the highest elpd_loo.
        weights: stacking weight of each model.
    """

    table: pd.DataFrame
    best: str
    weights: dict[str, float]


def compare(posteriors: Mapping[str, Sequence[Posterior]]) -> ModelComparison:
    """Compare models calibrated to the same subjects (one list of posteriors per model).

    The pointwise log-likelihoods of all subjects are pooled, so the elpd is a cohort sum.

    Raises:
        ModelError: fewer than two models, or models fitted to different observations.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import arviz as az

        if len(posteriors) < 2:
            raise ModelError("model comparison needs at least two models")
        idata = {}
        n_obs = None
        for name, posts in posteriors.items():
            ll = np.concatenate([p.log_lik for p in posts], axis=-1)
            if n_obs is not None and ll.shape[-1] != n_obs:
                raise ModelError("models were calibrated to different observations")
            n_obs = ll.shape[-1]
            idata[name] = az.from_dict(
                log_likelihood={"y": ll}, posterior={"_": np.zeros(ll.shape[:2])}
            )
        loo = {name: az.loo(d, pointwise=True) for name, d in idata.items()}
        cmp = az.compare(idata, ic="loo", method="stacking")
    table = pd.DataFrame(
        {
            "model": cmp.index,
            "elpd_loo": cmp["elpd_loo"].to_numpy(float),
            "se": cmp["se"].to_numpy(float),
            "p_loo": cmp["p_loo"].to_numpy(float),
            "elpd_diff": cmp["elpd_diff"].to_numpy(float),
            "weight": cmp["weight"].to_numpy(float),
            "n_bad_k": [int(np.sum(np.asarray(loo[m].pareto_k) > 0.7)) for m in cmp.index],
        }
    )
    weights = dict(zip(table["model"], table["weight"], strict=True))
    return ModelComparison(table, str(table["model"].iloc[0]), weights)
