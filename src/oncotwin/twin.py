"""The digital twin: a subject's data, model(s) and posterior, and forecasts with uncertainty."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from . import __version__
from ._jax import jax, jnp
from .errors import ModelError
from .inference.calibrate import calibrate_subjects
from .inference.posterior import Posterior
from .inference.problem import Spec, SubjectArrays, SubjectData, make_spec, measure, predict
from .models import get_model
from .observe import get_error_model
from .regimen import ThresholdRule
from .rules import DEFAULT_CHECK_EVERY, decision_times, forecast_draws, rule_plan, single_rule
from .schedule import Schedule

DEFAULT_LEVELS = (0.5, 0.9)


@dataclass(frozen=True)
class Forecast:
    """Posterior-predictive forecast of one subject's observed quantity.

    Attributes:
        subject: subject id.
        times: forecast times, days (sorted).
        draws: predictive draws of a new measurement, (n_draws, n_times), data units.
        latent: draws of the model value itself (no measurement noise), same shape.
        median: predictive median at each time.
        kind, unit: the observed quantity and its unit.
        schedule: the treatment schedule the forecast assumes (history + plan).
        warning: set when a posterior behind the forecast failed its diagnostics.
        provenance: model(s) and weights, method, prior, seed, data version, package version
            (and the threshold rule followed, if any).
        decision_times: visits (days) at which a threshold rule was applied, else None.
        on_treatment: the rule's decision at each visit for each draw, (n_draws, n_visits)
            booleans, else None.
    """

    subject: str
    times: np.ndarray
    draws: np.ndarray
    latent: np.ndarray
    kind: str
    unit: str
    schedule: Schedule
    warning: str | None
    provenance: dict[str, Any] = field(default_factory=dict)
    decision_times: np.ndarray | None = None
    on_treatment: np.ndarray | None = None

    @property
    def median(self) -> np.ndarray:
        return np.nanmedian(self.draws, axis=0)

    def interval(
        self, level: float = 0.9, *, latent: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Central prediction interval at `level` (0-1) for a new measurement (or the model value)."""
        if not 0 < level < 1:
            raise ModelError(f"interval level must be in (0, 1), got {level}")
        d = self.latent if latent else self.draws
        return (
            np.nanquantile(d, (1 - level) / 2, axis=0),
            np.nanquantile(d, 1 - (1 - level) / 2, axis=0),
        )

    def to_frame(self, levels: Sequence[float] = DEFAULT_LEVELS) -> pd.DataFrame:
        """One row per time: median and the bounds of each interval (lo_90, hi_90, ...)."""
        out = pd.DataFrame({"id": self.subject, "time": self.times, "median": self.median})
        for level in levels:
            lo, hi = self.interval(level)
            out[f"lo_{round(level * 100)}"] = lo
            out[f"hi_{round(level * 100)}"] = hi
        return out


@functools.lru_cache(maxsize=64)
def _predict_fn(spec: Spec) -> Any:
    """Jitted: model values and noisy measurements for many draws at many times."""

    def run(z: Any, data: SubjectArrays, tau: Any, key: Any) -> tuple[Any, Any]:
        latent = jax.vmap(lambda zz: predict(spec, zz, data, tau))(z)
        return latent, measure(spec, z, data.ref, latent, key)

    return jax.jit(run)


class DigitalTwin:
    """A subject's twin: data, model(s) and posterior(s); forecasts under any schedule.

    Args:
        subject: the subject's prepared data (observations and recorded schedule).
        posteriors: one posterior per model; several with `weights` form a stacked twin.
        weights: model weights (sum to 1); default equal.
        data_version: version of the data the twin was calibrated on (provenance).
    """

    def __init__(
        self,
        subject: SubjectData,
        posteriors: Sequence[Posterior],
        weights: Sequence[float] | None = None,
        data_version: str | None = None,
    ) -> None:
        if not posteriors:
            raise ModelError("a twin needs at least one posterior")
        self.subject = subject
        self.posteriors = list(posteriors)
        w = np.ones(len(posteriors)) if weights is None else np.asarray(weights, float)
        self.weights = w / w.sum()
        self.data_version = data_version

    @classmethod
    def calibrate(
        cls,
        data: Any,
        subject: str | None = None,
        model: str = "gompertz",
        *,
        kind: str | None = None,
        **kwargs: Any,
    ) -> DigitalTwin:
        """Build a twin of one subject of `data` (a PatientData) by calibrating `model`.

        `kwargs` go to :func:`~oncotwin.inference.calibrate.calibrate_subjects`.
        """
        ids = list(data.ids)
        subject = subject if subject is not None else ids[0]
        if subject not in ids:
            raise ModelError(f"subject {subject!r} not in data")
        sd = SubjectData.from_events(subject, data.subject(subject).events, kind)
        post = calibrate_subjects(model, [sd], **kwargs)[0]
        return cls(sd, [post], data_version=getattr(data, "version", None))

    @property
    def posterior(self) -> Posterior:
        """The posterior of the heaviest model."""
        return self.posteriors[int(np.argmax(self.weights))]

    @property
    def warning(self) -> str | None:
        """Convergence problems of any posterior behind the twin, or None."""
        msgs = [p.warning for p in self.posteriors if p.warning]
        return " | ".join(msgs) if msgs else None

    def forecast(
        self,
        times: Any,
        schedule: Schedule | None = None,
        *,
        rules: Sequence[ThresholdRule] = (),
        check_every: float = DEFAULT_CHECK_EVERY,
        seed: int = 0,
        n_draws: int | None = None,
    ) -> Forecast:
        """Posterior-predictive forecast at `times` (days).

        Args:
            times: forecast times, days (absolute, as in the data).
            schedule: a new treatment plan from the last observation on (the recorded
                treatment is kept up to then); None follows the recorded schedule,
                including planned treatment rows after the last observation.
            rules: a threshold rule of a regimen (at most one) on the twin's own marker,
                applied to every draw at visits from the last observation on (see
                :mod:`oncotwin.rules`); e.g. ``load_regimen(path).rules``.
            check_every: days between the rule's decision visits.
            seed: random seed of the draws.
            n_draws: number of predictive draws (default: all posterior draws).

        Returns:
            A :class:`Forecast`; its `warning` repeats any calibration warning.

        Raises:
            ScheduleError: more than one rule, or a rule on another marker.
        """
        t = np.sort(np.asarray(times, dtype=float).ravel())
        plan = self.subject.schedule
        if schedule is not None:
            plan = plan.then(schedule, self.subject.last_time)
        rule = single_rule(rules, self.subject.kind) if rules else None
        if rule is not None:
            plan, start_on = rule_plan(plan, rule, self.subject.last_time)
            visits = decision_times(self.subject.last_time, float(t[-1]), check_every)
        reference = self.subject.schedule.reference_amounts()
        sub = dataclasses.replace(self.subject, schedule=plan)
        total = n_draws or self.posteriors[0].n_draws
        counts = np.random.default_rng(seed).multinomial(total, self.weights)
        key = jax.random.PRNGKey(seed)
        latents, noisy, states = [], [], []
        for i, (post, n) in enumerate(zip(self.posteriors, counts, strict=True)):
            if n == 0:
                continue
            model, err = get_model(post.model), get_error_model(post.error_model)
            spec = make_spec(model, err, plan)
            arrays = jax.tree.map(jnp.asarray, sub.arrays(post.prior, reference))
            z = post.flat_z()
            pick = np.random.default_rng([seed, i]).choice(len(z), size=n, replace=n > len(z))
            zs, tau, k = jnp.asarray(z[pick]), jnp.asarray(t - sub.t0), jax.random.fold_in(key, i)
            if rule is None:
                lat, obs = _predict_fn(spec)(zs, arrays, tau, k)
            else:
                lat, on = forecast_draws(spec, zs, arrays, tau, rule, visits - sub.t0, start_on)
                obs = measure(spec, zs, arrays.ref, lat, k)
                states.append(on)
            latents.append(np.asarray(lat))
            noisy.append(np.asarray(obs))
        provenance = {
            "models": {
                p.model: float(w) for p, w in zip(self.posteriors, self.weights, strict=True)
            },
            "method": self.posterior.method,
            "error_model": self.posterior.error_model,
            "prior": self.posterior.prior.source,
            "calibration_seed": self.posterior.seed,
            "forecast_seed": seed,
            "converged": all(p.converged for p in self.posteriors),
            "data_version": self.data_version,
            "oncotwin_version": __version__,
        }
        if rule is not None:
            provenance["rule"] = f"{rule.agent} {rule.text()}, checked every {check_every:g} days"
        return Forecast(
            self.subject.id, t, np.concatenate(noisy), np.concatenate(latents), self.subject.kind,
            self.subject.unit, plan, self.warning, provenance,
            visits if rule is not None else None,
            np.concatenate(states) if rule is not None else None,
        )  # fmt: skip

    def update(
        self, new: SubjectData, *, seed: int = 0, data_version: str | None = None, **kwargs: Any
    ) -> tuple[DigitalTwin, Any]:
        """The twin given new observations of its subject (sequential data assimilation).

        Each posterior is updated by one sequential Monte Carlo step (reweight, resample,
        Metropolis-Hastings rejuvenation), or recalibrated when the new data move it too far;
        see :func:`~oncotwin.inference.assimilate.assimilate`. A stacked twin updates each
        model's posterior separately and keeps its weights (they were learnt on a cohort, not
        on this subject's observations); its :class:`~oncotwin.inference.assimilate.Update` is
        that of the heaviest model, with surprises judged against the stacked forecast.

        Args:
            new: the subject's data with observations appended (the old ones unchanged).
            seed: random seed.
            data_version: version of `new` (provenance of the new twin; default None).
            **kwargs: min_ess_fraction, rejuvenation_steps, fallback_method (see assimilate).

        Returns:
            (the new twin, the :class:`~oncotwin.inference.assimilate.Update`).

        Raises:
            DataError: `new` does not extend the twin's data.
        """
        from .inference.assimilate import update_twin

        return update_twin(self, new, seed=seed, data_version=data_version, **kwargs)


def stacked_twins(
    subjects: Sequence[SubjectData],
    posteriors: Mapping[str, Sequence[Posterior]],
    weights: Mapping[str, float],
    data_version: str | None = None,
) -> list[DigitalTwin]:
    """One twin per subject mixing the models' posteriors with the given (cohort) weights."""
    names = [m for m in posteriors if weights.get(m, 0.0) > 1e-3]
    return [
        DigitalTwin(s, [posteriors[m][i] for m in names], [weights[m] for m in names], data_version)
        for i, s in enumerate(subjects)
    ]
