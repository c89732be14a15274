"""Privacy for research use: keyed pseudonyms, per-patient date shifting, synthetic cohorts.

* **Pseudonyms** are HMAC-SHA256 of the patient id under a secret key (RFC 2104): stable for
  one key, so a researcher can link a patient's rows across exports, but not reversible or
  recomputable without the key (unlike a plain hash of an id, which can be looked up).
* **Date shifting** moves every time of a patient by the same whole number of days, drawn
  from the key and the id (HIPAA de-identification practice; see e.g. Hripcsak G et al.,
  "Preserving temporal relations in clinical data while maintaining privacy", JAMIA
  2016;23:1040-1045): intervals, and so the dynamics a model learns, are unchanged; calendar
  position is not.
* Covariates that may identify a person are dropped: every non-numeric covariate (free text
  can hold names) and every column whose name looks like an identifier.
* **Synthetic cohorts** are drawn from a fitted population model (new random effects, new
  measurement noise): no real patient's rows are released. Each synthetic parameter vector
  must lie at least ``min_distance`` between-subject SDs from every real subject's, and no
  synthetic observation may equal a real one; the check is returned with the data.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .errors import DataError, ModelError

#: Column names that identify a person (matched case-insensitively as whole words).
IDENTIFIER_PATTERN = re.compile(
    r"(^|_)(name|first_?name|last_?name|surname|mrn|nhs|ssn|address|street|zip|postcode|"
    r"phone|email|birth|dob|birth_?date|date_?of_?birth|record|insurance|ip)($|_)",
    re.IGNORECASE,
)
_CANONICAL = ("id", "time", "evid", "dv", "mdv", "kind", "unit", "amt", "agent", "cmt", "rate",
              "dur", "on", "lloq", "cens")  # fmt: skip


def pseudonym(key: bytes, patient_id: str, prefix: str = "R-") -> str:
    """Keyed pseudonym of a patient id: `prefix` + 16 hex digits of HMAC-SHA256(key, id)."""
    if not key:
        raise DataError("a pseudonym key must not be empty")
    return (
        prefix + hmac.new(key, b"id:" + str(patient_id).encode(), hashlib.sha256).hexdigest()[:16]
    )


def date_shift(key: bytes, patient_id: str, max_days: int = 365) -> int:
    """The patient's date shift, whole days in [-max_days, max_days], never 0."""
    if max_days < 1:
        raise DataError(f"max_days must be at least 1, got {max_days}")
    digest = hmac.new(key, b"shift:" + str(patient_id).encode(), hashlib.sha256).digest()
    shift = int.from_bytes(digest[:8], "big") % (2 * max_days + 1) - max_days
    return shift if shift != 0 else max_days


@dataclass(frozen=True)
class PseudonymisedExport:
    """A research export: the event table with pseudonyms, shifted times, dropped columns."""

    events: pd.DataFrame
    n_patients: int
    dropped_columns: list[str]


def pseudonymise(
    events: pd.DataFrame, key: bytes, *, max_shift_days: int = 365
) -> PseudonymisedExport:
    """Pseudonymise a canonical event table for research use.

    Args:
        events: canonical event table (``id``, ``time`` in days, ...), covariate columns allowed.
        key: secret pseudonym key (bytes; keep it out of the export).
        max_shift_days: largest date shift, days.

    Returns:
        the table with ``id`` replaced by keyed pseudonyms, ``time`` shifted per patient by
        whole days, and identifying or free-text covariates dropped (listed).
    """
    out = events.copy()
    ids = out["id"].astype(str)
    shifts = {pid: date_shift(key, pid, max_shift_days) for pid in ids.unique()}
    out["time"] = out["time"].astype(float) + ids.map(shifts).astype(float)
    out["id"] = ids.map({pid: pseudonym(key, pid) for pid in shifts})
    dropped = []
    for col in [c for c in out.columns if c not in _CANONICAL]:
        numeric = pd.api.types.is_numeric_dtype(out[col]) and not pd.api.types.is_bool_dtype(
            out[col]
        )
        if IDENTIFIER_PATTERN.search(str(col)) or not numeric:
            dropped.append(str(col))
    out = out.drop(columns=dropped)
    return PseudonymisedExport(out.reset_index(drop=True), len(shifts), dropped)


def identifier_hits(frame: pd.DataFrame, identifiers: Iterable[str]) -> list[tuple[int, str]]:
    """(row, column) of every cell (or column name) that contains one of `identifiers`."""
    needles = [str(i) for i in identifiers if str(i)]
    hits: list[tuple[int, str]] = []
    for col in frame.columns:
        if any(n in str(col) for n in needles):
            hits.append((-1, str(col)))
        text = frame[col].astype(str).tolist()
        hits += [(i, str(col)) for i, v in enumerate(text) if any(n in v for n in needles)]
    return hits


# -- synthetic cohorts ------------------------------------------------------------------------


@dataclass(frozen=True)
class SyntheticCohort:
    """Synthetic patients drawn from a population model, and the check that none is real.

    Attributes:
        events: canonical event table of the synthetic patients (observations only).
        params: the synthetic patients' model parameters, one row each.
        seed: the seed that reproduces them.
        check: ``n_redrawn`` (draws rejected as too close to a real patient),
            ``min_distance`` (smallest distance to a real patient's parameters, in
            between-subject SDs), ``exact_row_matches`` (0), ``n_real``.
    """

    events: pd.DataFrame
    params: pd.DataFrame
    seed: int
    check: dict[str, Any] = field(default_factory=dict)


def synthetic_cohort(
    population: Any,
    n: int,
    times: Sequence[float],
    *,
    real: Sequence[Any],
    seed: int = 0,
    min_distance: float = 0.1,
    prefix: str = "SYN-",
    max_redraws: int = 1000,
) -> SyntheticCohort:
    """Draw `n` synthetic untreated patients from a fitted population model.

    Each patient takes a random posterior draw of the hyperparameters, new random effects
    ``z = mu + diag(omega) L eta`` (covariates at the cohort centre) and new measurement noise
    from the population's error model, observed at `times`.

    Args:
        population: a fitted :class:`~oncotwin.inference.population.Population`.
        n: number of synthetic patients.
        times: observation times, days from the first observation.
        real: the real subjects (SubjectData) the population was fitted to; their
            reference size's geometric mean scales the synthetic sizes, and every synthetic
            patient is checked against them.
        seed: random seed (recorded).
        min_distance: smallest allowed distance to a real subject's parameters, in
            between-subject SDs (posterior means); closer draws are redrawn.
        prefix: synthetic id prefix.
        max_redraws: give up after this many rejected draws.

    Raises:
        ModelError: too many draws were too close to real patients, or a synthetic
            observation equals a real one.
    """
    from ._jax import jax, jnp
    from .models import get_model
    from .observe import get_error_model
    from .simulate import simulate

    if n < 1:
        raise DataError(f"n must be at least 1, got {n}")
    if not real:
        raise DataError("the real subjects are needed to check the synthetic ones")
    t = np.asarray(times, float)
    model, err = get_model(population.model), get_error_model(population.error_model)
    d = population.n_model
    rng = np.random.default_rng(seed)
    omega_bar = population.omega.mean(axis=0)
    real_z = population.z_subjects.mean(axis=0)  # (n_real, d)
    ref = float(np.exp(np.mean([np.log(s.ref) for s in real])))
    zs: list[np.ndarray] = []
    errs: list[np.ndarray] = []
    distances: list[float] = []
    redrawn = 0
    while len(zs) < n:
        s = int(rng.integers(population.mu.shape[0]))
        eta = rng.standard_normal(d)
        z = population.mu[s] + population.omega[s] * (population.corr_chol[s] @ eta)
        dist = float(np.min(np.linalg.norm((real_z - z) / omega_bar, axis=1)))
        if dist < min_distance:
            redrawn += 1
            if redrawn > max_redraws:
                raise ModelError(f"{redrawn} synthetic draws fell within {min_distance} SDs of "
                                 "a real patient; lower min_distance or refit the population")  # fmt: skip
            continue
        zs.append(z)
        errs.append(population.z_error[s])
        distances.append(dist)
    z_arr, e_arr = np.asarray(zs), np.asarray(errs)
    params = {p.name: np.asarray(p.constrain(jnp.asarray(z_arr[:, i]), ref))
              for i, p in enumerate(model.params)}  # fmt: skip
    traj = simulate(model, params, t)
    theta = {p.name: jnp.asarray(p.constrain(jnp.asarray(e_arr[:, j]), ref))[:, None]
             for j, p in enumerate(err.params)}  # fmt: skip
    y = np.asarray(err.sample(jax.random.PRNGKey(seed), jnp.asarray(traj.values), theta))
    kind, unit = real[0].kind, real[0].unit
    ids = [f"{prefix}{i + 1:04d}" for i in range(n)]
    events = pd.DataFrame({
        "id": np.repeat(ids, len(t)), "time": np.tile(t, n), "evid": 0, "dv": y.ravel(),
        "mdv": 0, "kind": kind, "unit": unit, "cens": 0,
    })  # fmt: skip
    real_rows = {(round(float(tt - s.t0), 9), float(f"{v:.6g}"))
                 for s in real for tt, v in zip(s.times, s.y, strict=True)}  # fmt: skip
    matches = sum(
        (round(float(tt), 9), float(f"{v:.6g}")) in real_rows
        for tt, v in zip(events["time"], events["dv"], strict=True)
    )
    if matches:
        raise ModelError(f"{matches} synthetic observation(s) equal real ones; not released")
    table = pd.DataFrame({"id": ids, **{k: np.asarray(v, float) for k, v in params.items()}})
    check = {"n_redrawn": redrawn, "min_distance": float(min(distances)),
             "min_distance_required": min_distance, "exact_row_matches": matches,
             "n_real": len(real), "n_failed_simulations": int((~np.asarray(traj.ok)).sum()),
             "reference_size": ref}  # fmt: skip
    return SyntheticCohort(events, table, seed, check)
