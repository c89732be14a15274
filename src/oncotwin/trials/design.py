"""Trial designs written as YAML: arms, randomisation, visits, follow-up, dropout, endpoints.

A design file says what a protocol says, in canonical units (days, mm)::

    name: Docetaxel dose comparison
    model: claret                       # any registry model (closed form or ODE)
    population:                         # typical value and between-patient SD (log scale)
      kg: {median: 0.004, omega: 0.5}
      kd: {median: 0.02, omega: 0.5}
      lam: {median: 0.01, omega: 0.5}
    baseline: {median: 80, omega: 0.5}  # sum of longest diameters at entry, mm
    covariates:
      ecog: {values: [0, 1, 2], probs: [0.45, 0.45, 0.10]}
    eligibility: ["baseline >= 10", "ecog <= 1"]
    arms:
      - {name: control, ratio: 1, regimen: {items: ["docetaxel 75 mg/m2 q3w x 6"]}}
      - {name: high dose, ratio: 1, regimen: {items: ["docetaxel 100 mg/m2 q3w x 6"]}}
    visits: {every: 6 weeks, noise: {proportional: 0.08, additive: 1.0}}
    follow_up: 2 years
    dropout: {per_year: 0.1}
    endpoints:
      recist: {confirm: false, sd_min_days: 42, detection_limit: 5}
      landmark: 8 weeks
      survival: {distribution: lognormal, intercept: 6.4, log_ratio: -1.0,
                 log_baseline: -0.3, sigma: 0.8, covariates: {ecog: -0.3}}
      primary: pfs
    prognostic: {twin_error: 0.2}

Arm schedules are regimens in the language of :mod:`oncotwin.regimen` (a mapping, a text
block, or a file relative to the design). Every field is checked once, here, and errors name
the file and the field (``arms[2].ratio``); nothing downstream re-checks.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, ModelError, ScheduleError
from ..models import get_model
from ..regimen import load_regimen, parse_regimen
from ..schedule import Schedule
from ..units import TIME_TO_DAYS

__all__ = [
    "Arm",
    "CovariateSpec",
    "Endpoints",
    "SurvivalLink",
    "TrialDesign",
    "Visits",
    "design_from_dict",
    "load_design",
    "parse_duration",
]

_TOP = ("name", "description", "model", "population", "baseline", "covariates", "eligibility",
        "arms", "visits", "follow_up", "dropout", "endpoints", "prognostic", "seed")  # fmt: skip
PRIMARY = ("pfs", "os", "orr", "pct_change")
COMPARISONS = ("<=", ">=", "==", "!=", "<", ">")


class _Bad(Exception):
    """A problem with one field; the loader adds the file name."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"field '{where}': {message}")


def parse_duration(value: Any, where: str = "duration") -> float:
    """A duration in days from a number (days) or text such as "6 weeks", "2 years", "q3w".

    Raises:
        DataError: not a non-negative finite duration (the message names `where`).
    """
    try:
        return _days(value, where)
    except _Bad as exc:
        raise DataError(str(exc)) from None


def _days(value: Any, where: str) -> float:
    if isinstance(value, bool):
        raise _Bad(where, f"expected a duration such as '6 weeks', got {value!r}")
    if isinstance(value, int | float):
        days = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        m = re.fullmatch(r"q(\d+(?:\.\d+)?)([dwmy])", text)
        if m:
            days = (
                float(m.group(1)) * {"d": 1.0, "w": 7.0, "m": 365.25 / 12, "y": 365.25}[m.group(2)]
            )
        else:
            m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([a-z]*)", text)
            if not m:
                raise _Bad(where, f"cannot read {value!r} as a duration (e.g. '6 weeks', 56)")
            unit = m.group(2) or "days"
            if unit not in TIME_TO_DAYS:
                raise _Bad(where, f"unknown time unit {unit!r} in {value!r}")
            days = float(m.group(1)) * TIME_TO_DAYS[unit]
    else:
        raise _Bad(where, f"expected a duration such as '6 weeks', got {value!r}")
    if not (math.isfinite(days) and days >= 0):
        raise _Bad(where, f"must be a finite duration >= 0, got {value!r}")
    return days


def _num(raw: Mapping[str, Any], key: str, where: str, default: float | None = None, *,
         lo: float = -math.inf, hi: float = math.inf, strict_lo: bool = False) -> float:  # fmt: skip
    if key not in raw or raw[key] is None:
        if default is None:
            raise _Bad(f"{where}.{key}", "is required")
        return default
    v = raw[key]
    if isinstance(v, str):  # "80 mm" -> 80: the unit is checked where it matters
        m = re.fullmatch(r"\s*(-?\d+(?:\.\d+)?(?:e-?\d+)?)\s*(mm)?\s*", v.lower())
        v = float(m.group(1)) if m else v
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise _Bad(f"{where}.{key}", f"must be a finite number, got {raw[key]!r}")
    if v < lo or (strict_lo and v <= lo) or v > hi:
        bound = f"> {lo}" if strict_lo else f">= {lo}"
        raise _Bad(f"{where}.{key}", f"must be {bound} and <= {hi}, got {v}")
    return float(v)


def _mapping(raw: Any, where: str) -> Mapping[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise _Bad(where, f"must be a mapping, got {type(raw).__name__}")
    return raw


def _only(raw: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
    for k in raw:
        if k not in allowed:
            raise _Bad(f"{where}.{k}" if where else str(k),
                       f"unknown field; accepted: {', '.join(allowed)}")  # fmt: skip


@dataclass(frozen=True)
class CovariateSpec:
    """A baseline covariate: categorical (`values`, `probs`) or Normal (`mean`, `sd`)."""

    name: str
    values: tuple[float, ...] = ()
    probs: tuple[float, ...] = ()
    mean: float = 0.0
    sd: float = 0.0

    @property
    def categorical(self) -> bool:
        return bool(self.values)


@dataclass(frozen=True)
class Arm:
    """One arm: its schedule, randomisation weight and parameter modifiers.

    Attributes:
        name: label.
        ratio: randomisation weight (1:1 is two arms of ratio 1).
        schedule: the arm's treatment (from the regimen language).
        regimen: the regimen as given (structured form) for provenance.
        modifiers: multiplicative effect on model parameters in this arm, e.g. {"kd": 1.3}.
        ntcp: optional Lyman-Kutcher-Burman NTCP of an organ at risk {geud, td50, m} (Gy, Gy, 1).
    """

    name: str
    ratio: float
    schedule: Schedule
    regimen: Mapping[str, Any]
    modifiers: Mapping[str, float] = field(default_factory=dict)
    ntcp: Mapping[str, float] | None = None


@dataclass(frozen=True)
class Visits:
    """Tumour assessments: every `every` days from day 0 (baseline) to the end of follow-up.

    Measured SLD = true SLD x (1 + proportional e1) + additive e2 (e ~ N(0, 1)), floored at 0,
    and reported as 0 (all target lesions gone) below `detection_limit` mm.
    """

    every: float
    proportional: float = 0.08
    additive: float = 1.0


@dataclass(frozen=True)
class SurvivalLink:
    """Tumour-size -> overall-survival link: a parametric accelerated-failure-time model.

    log T = intercept + log_ratio * log(SLD(landmark)/SLD(0)) + log_baseline * log(SLD(0)/100 mm)
            + sum_c covariates[c] * x_c + sigma * W

    with W standard Normal (``lognormal``) or standard minimum-extreme-value (``weibull``,
    shape 1/sigma). This is the structure of Claret L et al. J Clin Oncol 2009;27:4103-4108
    (early tumour-size change, baseline size and ECOG in a parametric OS model); the default
    coefficients are illustrative, not the published estimates.
    """

    distribution: str = "lognormal"
    intercept: float = 6.4  # log days: median OS exp(6.4) = 600 days at no change, 100 mm
    log_ratio: float = -1.0
    log_baseline: float = -0.3
    sigma: float = 0.8
    covariates: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Endpoints:
    """Endpoint settings (RECIST 1.1 options, landmark, OS link, primary endpoint, test level)."""

    confirm: bool = False
    sd_min_days: float = 42.0
    detection_limit: float = 5.0
    landmark: float = 56.0
    survival: SurvivalLink = field(default_factory=SurvivalLink)
    primary: str = "pfs"
    alpha: float = 0.05
    neutropenia: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class TrialDesign:
    """A virtual trial: model, population, arms, visits and endpoints (all times in days).

    Attributes:
        population: {parameter: (median, omega)} for the model's non-size parameters, with
            `correlation` (d x d over those parameters, or None); replaced by a fitted
            population or matched cohort at run time when one is given.
        baseline: (median mm, omega) of the log-normal baseline SLD.
    """

    name: str
    model: str
    population: Mapping[str, tuple[float, float]]
    correlation: np.ndarray | None
    baseline: tuple[float, float]
    covariates: tuple[CovariateSpec, ...]
    eligibility: tuple[str, ...]
    arms: tuple[Arm, ...]
    visits: Visits
    follow_up: float
    dropout_per_year: float
    endpoints: Endpoints
    twin_error: float = 0.2
    seed: int = 0
    description: str = ""
    source: str = "<dict>"

    @property
    def visit_times(self) -> np.ndarray:
        """Assessment days, baseline (day 0) included."""
        n = int(math.floor(self.follow_up / self.visits.every + 1e-9))
        return self.visits.every * np.arange(n + 1, dtype=float)

    def reference_amounts(self) -> dict[str, float]:
        """Exposure unit per agent shared by all arms (largest single dose in any arm), so a
        higher dose in one arm is a higher exposure, not the same normalised one."""
        ref: dict[str, float] = {}
        for arm in self.arms:
            for agent, amount in arm.schedule.reference_amounts().items():
                ref[agent] = max(ref.get(agent, 0.0), amount)
        return ref

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (for results and reports)."""
        return {
            "name": self.name, "model": self.model, "source": self.source,
            "population": {k: {"median": m, "omega": o} for k, (m, o) in self.population.items()},
            "baseline": {"median": self.baseline[0], "omega": self.baseline[1]},
            "covariates": [c.__dict__ for c in self.covariates],
            "eligibility": list(self.eligibility),
            "arms": [{"name": a.name, "ratio": a.ratio, "regimen": _plain(a.regimen),
                      "modifiers": dict(a.modifiers), "ntcp": a.ntcp} for a in self.arms],
            "visits": self.visits.__dict__, "visit_times": self.visit_times.tolist(),
            "follow_up_days": self.follow_up, "dropout_per_year": self.dropout_per_year,
            "endpoints": {**{k: v for k, v in self.endpoints.__dict__.items() if k != "survival"},
                          "survival": dict(self.endpoints.survival.__dict__)},
            "twin_error": self.twin_error, "seed": self.seed,
        }  # fmt: skip


def _plain(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_plain(v) for v in x]
    return x


def load_design(path: str | Path) -> TrialDesign:
    """Read and check a YAML (or JSON) trial design.

    Raises:
        DataError: unreadable file or a bad field; the message names the file and field.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise DataError(f"cannot read the design: {exc}", file=str(p)) from None
    try:
        import yaml

        raw = yaml.safe_load(text)
    except Exception as exc:  # any YAML error: report it with the file
        raise DataError(f"cannot parse the design: {exc}", file=str(p)) from None
    return design_from_dict(raw, base=p.parent, source=str(p))


def design_from_dict(
    raw: Any, *, base: str | Path | None = None, source: str = "<dict>"
) -> TrialDesign:
    """Check a design given as a mapping (the parsed YAML); see the module docstring.

    Args:
        raw: the design.
        base: folder against which regimen file names are resolved.
        source: label used in error messages (the file name).

    Raises:
        DataError: a bad field, named as ``arms[1].regimen`` (items counted from 1).
    """
    try:
        return _design(raw, Path(base) if base is not None else Path.cwd(), source)
    except _Bad as exc:
        raise DataError(str(exc), file=source) from None


def _design(raw: Any, base: Path, source: str) -> TrialDesign:
    if not isinstance(raw, Mapping):
        raise _Bad("(top)", "a design must be a mapping")
    _only(raw, _TOP, "")
    try:
        model = get_model(str(raw.get("model", "claret")))
    except ModelError as exc:
        raise _Bad("model", str(exc)) from None
    pop_raw = _mapping(raw.get("population"), "population")
    free = [p for p in model.params if p.scale != "size"]
    names = [p.name for p in free]
    _only(pop_raw, [*names, "correlation"], "population")
    population: dict[str, tuple[float, float]] = {}
    for p in free:
        entry = _mapping(pop_raw.get(p.name, {}), f"population.{p.name}")
        _only(entry, ("median", "omega"), f"population.{p.name}")
        median = _num(entry, "median", f"population.{p.name}", p.prior_median,
                      lo=p.lower, strict_lo=True)  # fmt: skip
        if not median < p.upper:
            raise _Bad(f"population.{p.name}.median", f"must be < {p.upper}, got {median}")
        population[p.name] = (median, _num(entry, "omega", f"population.{p.name}", 0.5, lo=0.0))
    correlation = None
    if pop_raw.get("correlation") is not None:
        correlation = np.asarray(pop_raw["correlation"], dtype=float)
        d = len(names)
        if correlation.shape != (d, d) or not np.allclose(correlation, correlation.T):
            raise _Bad(
                "population.correlation", f"must be a symmetric {d} x {d} matrix over {names}"
            )
        try:
            np.linalg.cholesky(correlation)
        except np.linalg.LinAlgError:
            raise _Bad("population.correlation", "is not positive definite") from None
    b = _mapping(raw.get("baseline", {}), "baseline")
    _only(b, ("median", "omega"), "baseline")
    baseline = (_num(b, "median", "baseline", 80.0, lo=0.0, strict_lo=True),
                _num(b, "omega", "baseline", 0.5, lo=0.0))  # fmt: skip
    covariates = tuple(
        _covariate(k, v) for k, v in _mapping(raw.get("covariates"), "covariates").items()
    )
    eligibility = _eligibility(raw.get("eligibility") or [], {c.name for c in covariates},
                               set(model.param_names))  # fmt: skip
    arms = _arms(raw.get("arms"), base, model)
    v = _mapping(raw.get("visits", {}), "visits")
    _only(v, ("every", "noise"), "visits")
    noise = _mapping(v.get("noise", {}), "visits.noise")
    _only(noise, ("proportional", "additive"), "visits.noise")
    every = _days(v.get("every", 42.0), "visits.every")
    if every <= 0:
        raise _Bad("visits.every", "must be > 0")
    visits = Visits(every, _num(noise, "proportional", "visits.noise", 0.08, lo=0.0, hi=1.0),
                    _num(noise, "additive", "visits.noise", 1.0, lo=0.0))  # fmt: skip
    follow_up = _days(raw.get("follow_up", 730.5), "follow_up")
    if follow_up < every:
        raise _Bad("follow_up", f"must be at least one visit interval ({every} days)")
    drop = _mapping(raw.get("dropout", {}), "dropout")
    _only(drop, ("per_year",), "dropout")
    endpoints = _endpoints(_mapping(raw.get("endpoints", {}), "endpoints"), covariates)
    prog = _mapping(raw.get("prognostic", {}), "prognostic")
    _only(prog, ("twin_error",), "prognostic")
    seed = raw.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise _Bad("seed", f"must be an integer >= 0, got {seed!r}")
    return TrialDesign(
        name=str(raw.get("name", "virtual trial")), model=model.name, population=population,
        correlation=correlation, baseline=baseline, covariates=covariates,
        eligibility=eligibility, arms=arms, visits=visits, follow_up=follow_up,
        dropout_per_year=_num(drop, "per_year", "dropout", 0.0, lo=0.0),
        endpoints=endpoints, twin_error=_num(prog, "twin_error", "prognostic", 0.2, lo=0.0),
        seed=seed, description=str(raw.get("description", "")), source=source,
    )  # fmt: skip


def _covariate(name: Any, raw: Any) -> CovariateSpec:
    where = f"covariates.{name}"
    raw = _mapping(raw, where)
    if "values" in raw:
        _only(raw, ("values", "probs"), where)
        values = raw["values"]
        if not isinstance(values, list) or not values:
            raise _Bad(f"{where}.values", "must be a non-empty list of numbers")
        probs = raw.get("probs") or [1.0 / len(values)] * len(values)
        if not isinstance(probs, list) or len(probs) != len(values):
            raise _Bad(f"{where}.probs", f"must be a list of {len(values)} probabilities")
        try:
            vals = tuple(float(x) for x in values)
            ps = np.asarray(probs, dtype=float)
        except (TypeError, ValueError):
            raise _Bad(where, "values and probs must be numbers") from None
        if np.any(ps < 0) or not np.isclose(ps.sum(), 1.0):
            raise _Bad(f"{where}.probs", f"must be >= 0 and sum to 1, got {probs}")
        return CovariateSpec(str(name), vals, tuple(float(x) for x in ps))
    _only(raw, ("mean", "sd"), where)
    return CovariateSpec(
        str(name), mean=_num(raw, "mean", where), sd=_num(raw, "sd", where, lo=0.0)
    )


def _eligibility(raw: Any, covariates: set[str], params: set[str]) -> tuple[str, ...]:
    if not isinstance(raw, list):
        raise _Bad("eligibility", "must be a list of conditions such as 'baseline >= 10'")
    known = {"baseline"} | covariates | params
    out = []
    for i, cond in enumerate(raw, start=1):
        try:
            parse_condition(str(cond), known)
        except ValueError as exc:
            raise _Bad(f"eligibility[{i}]", str(exc)) from None
        out.append(str(cond))
    return tuple(out)


def parse_condition(text: str, known: set[str] | None = None) -> tuple[str, str, float]:
    """Split "baseline >= 10" into (field, operator, value).

    Raises:
        ValueError: not of the form `field op number`, or an unknown field.
    """
    m = re.fullmatch(r"\s*([A-Za-z_]\w*)\s*(<=|>=|==|!=|<|>)\s*(-?\d+(?:\.\d+)?(?:e-?\d+)?)\s*",
                     text)  # fmt: skip
    if not m:
        raise ValueError(f"cannot read {text!r}; write 'field op number', op one of {COMPARISONS}")
    name, op, value = m.group(1), m.group(2), float(m.group(3))
    if known is not None and name not in known:
        raise ValueError(f"unknown field {name!r} in {text!r}; known: {sorted(known)}")
    return name, op, value


def _arms(raw: Any, base: Path, model: Any) -> tuple[Arm, ...]:
    if not isinstance(raw, list) or not raw:
        raise _Bad("arms", "a design needs a non-empty list of arms")
    arms, names = [], set()
    for i, entry in enumerate(raw, start=1):
        where = f"arms[{i}]"
        entry = _mapping(entry, where)
        _only(entry, ("name", "ratio", "regimen", "modifiers", "ntcp"), where)
        name = str(entry.get("name", f"arm {i}"))
        if name in names:
            raise _Bad(f"{where}.name", f"duplicate arm name {name!r}")
        names.add(name)
        ratio = _num(entry, "ratio", where, 1.0, lo=0.0, strict_lo=True)
        reg = entry.get("regimen")
        try:
            if (
                isinstance(reg, str)
                and "\n" not in reg
                and reg.endswith((".yaml", ".yml", ".json"))
            ):
                regimen = load_regimen(base / reg)
            elif reg is None:
                regimen = None
            else:
                regimen = parse_regimen(reg)
        except ScheduleError as exc:
            raise _Bad(f"{where}.regimen", str(exc)) from None
        schedule = regimen.schedule() if regimen is not None else Schedule()
        if regimen is not None and regimen.rules:
            raise _Bad(f"{where}.regimen", "threshold rules cannot be simulated in a trial arm yet")
        mods = _mapping(entry.get("modifiers"), f"{where}.modifiers")
        for k in mods:
            if k not in model.param_names:
                raise _Bad(
                    f"{where}.modifiers.{k}", f"unknown parameter; model has {model.param_names}"
                )
        modifiers = {
            str(k): _num(mods, k, f"{where}.modifiers", lo=0.0, strict_lo=True) for k in mods
        }
        ntcp = None
        if entry.get("ntcp") is not None:
            n = _mapping(entry["ntcp"], f"{where}.ntcp")
            _only(n, ("geud", "td50", "m"), f"{where}.ntcp")
            ntcp = {"geud": _num(n, "geud", f"{where}.ntcp", lo=0.0),
                    "td50": _num(n, "td50", f"{where}.ntcp", lo=0.0, strict_lo=True),
                    "m": _num(n, "m", f"{where}.ntcp", lo=0.0, strict_lo=True)}  # fmt: skip
        regimen_spec = regimen.to_dict() if regimen is not None else {}
        arms.append(Arm(name, ratio, schedule, regimen_spec, modifiers, ntcp))
    return tuple(arms)


def _endpoints(raw: Mapping[str, Any], covariates: tuple[CovariateSpec, ...]) -> Endpoints:
    _only(raw, ("recist", "landmark", "survival", "primary", "alpha", "neutropenia"), "endpoints")
    r = _mapping(raw.get("recist", {}), "endpoints.recist")
    _only(r, ("confirm", "sd_min_days", "detection_limit"), "endpoints.recist")
    confirm = r.get("confirm", False)
    if not isinstance(confirm, bool):
        raise _Bad("endpoints.recist.confirm", f"must be true or false, got {confirm!r}")
    s = _mapping(raw.get("survival", {}), "endpoints.survival")
    _only(s, ("distribution", "intercept", "log_ratio", "log_baseline", "sigma", "covariates"),
          "endpoints.survival")  # fmt: skip
    dist = str(s.get("distribution", "lognormal"))
    if dist not in ("lognormal", "weibull"):
        raise _Bad("endpoints.survival.distribution", f"'lognormal' or 'weibull', got {dist!r}")
    cov = _mapping(s.get("covariates"), "endpoints.survival.covariates")
    names = {c.name for c in covariates}
    for k in cov:
        if k not in names:
            raise _Bad(
                f"endpoints.survival.covariates.{k}",
                f"not a covariate of the design {sorted(names)}",
            )
    w = "endpoints.survival"
    link = SurvivalLink(dist, _num(s, "intercept", w, 6.4), _num(s, "log_ratio", w, -1.0),
                        _num(s, "log_baseline", w, -0.3),
                        _num(s, "sigma", w, 0.8, lo=0.0, strict_lo=True),
                        {str(k): _num(cov, k, f"{w}.covariates") for k in cov})  # fmt: skip
    primary = str(raw.get("primary", "pfs"))
    if primary not in PRIMARY:
        raise _Bad("endpoints.primary", f"one of {PRIMARY}, got {primary!r}")
    neut = raw.get("neutropenia")
    if neut is not None:
        neut = _mapping(neut, "endpoints.neutropenia")
        _only(neut, ("agent", "omega"), "endpoints.neutropenia")
        if str(neut.get("agent", "docetaxel")) != "docetaxel":
            raise _Bad("endpoints.neutropenia.agent", "only 'docetaxel' has PK/PD parameters")
        neut = {"agent": "docetaxel",
                "omega": _num(neut, "omega", "endpoints.neutropenia", 0.3, lo=0.0)}  # fmt: skip
    return Endpoints(
        confirm=confirm,
        sd_min_days=_days(r.get("sd_min_days", 42.0), "endpoints.recist.sd_min_days"),
        detection_limit=_num(r, "detection_limit", "endpoints.recist", 5.0, lo=0.0),
        landmark=_days(raw.get("landmark", 56.0), "endpoints.landmark"),
        survival=link, primary=primary,
        alpha=_num(raw, "alpha", "endpoints", 0.05, lo=0.0, hi=0.5, strict_lo=True),
        neutropenia=neut,
    )  # fmt: skip
