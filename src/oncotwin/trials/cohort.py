"""Virtual populations: virtual patients drawn from a fitted population or parameter
distributions, with covariates, baseline tumour burden and eligibility, and matched to a real
cohort's observables by the method of Allen, Rieger & Musante (2016).

Every virtual patient is drawn from its own random key, ``fold_in(fold_in(key(seed), replicate),
index)``, so patient 12345 of replicate 7 is the same whether it is simulated alone, in a chunk
of 10^5 or on another Dask worker.

A :class:`CohortSource` holds the distribution of the unconstrained parameters z of the
model's non-size parameters as a mixture: row s is chosen with probability ``weights[s]``, then

    z = mu[s] + beta[s]^T x + diag(omega[s]) L[s] eta,   eta ~ N(0, I)

(the population model of :mod:`oncotwin.inference.population`). A fitted population gives one
row per posterior draw (posterior uncertainty carried into the cohort); a parameter
distribution gives one row; a matched cohort gives one row per selected plausible patient with
omega = 0 (resampling). The baseline sum of longest diameters (SLD, mm) is log-normal, and sets
the model's size parameter ``v0``: the population's own ``v0`` effect only describes the first
measurement relative to itself, so it is not used.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .._jax import jax, jnp
from ..errors import DataError, ModelError
from ..models import get_model
from .design import CovariateSpec, TrialDesign, parse_condition

if TYPE_CHECKING:
    from ..inference.population import Population

__all__ = [
    "ALLEN_2016",
    "CohortSource",
    "MatchResult",
    "VirtualCohort",
    "draw_cohort",
    "match_observables",
]

ALLEN_2016 = (
    "Allen RJ, Rieger TR, Musante CJ. Efficient generation and selection of virtual populations "
    "in quantitative systems pharmacology models. CPT Pharmacometrics Syst Pharmacol "
    "2016;5:140-146"
)
CANDIDATES = 16  # candidates screened per virtual patient before it is declared ineligible


@dataclass(frozen=True)
class CohortSource:
    """Where virtual patients come from (see the module docstring for the mixture).

    Attributes:
        model: registry name of the tumour model.
        names: the model's non-size parameter names (columns of mu, omega).
        mu, omega: (S, d) location and between-patient SD of z.
        chol: (S, d, d) Cholesky factor of the random-effect correlation.
        weights: (S,) row probabilities (sum to 1).
        beta: (S, p, d) covariate effects on z per standardised covariate.
        covariates: names of the p covariates; `center`, `scale` standardise them.
        baseline_log_mu: (S,) mean of log baseline SLD (log mm); `baseline_log_sd` its SD.
        label: where it came from, for provenance.
    """

    model: str
    names: tuple[str, ...]
    mu: np.ndarray
    omega: np.ndarray
    chol: np.ndarray
    weights: np.ndarray
    baseline_log_mu: np.ndarray
    baseline_log_sd: float
    beta: np.ndarray | None = None
    covariates: tuple[str, ...] = ()
    center: np.ndarray = field(default_factory=lambda: np.zeros(0))
    scale: np.ndarray = field(default_factory=lambda: np.ones(0))
    label: str = "parameter distribution"

    @classmethod
    def from_design(cls, design: TrialDesign) -> CohortSource:
        """The design's parameter distribution (log-normal or logit-normal per parameter)."""
        m = get_model(design.model)
        free = [p for p in m.params if p.scale != "size"]
        mu = np.array([float(p.unconstrain(design.population[p.name][0])) for p in free])
        omega = np.array([design.population[p.name][1] for p in free])
        corr = design.correlation if design.correlation is not None else np.eye(len(free))
        return cls(
            m.name, tuple(p.name for p in free), mu[None], omega[None],
            np.linalg.cholesky(corr)[None], np.ones(1), np.array([np.log(design.baseline[0])]),
            design.baseline[1], label=f"parameter distribution of {design.source}",
        )  # fmt: skip

    @classmethod
    def from_population(
        cls, pop: Population, baseline: tuple[float, float], *, max_draws: int = 1000
    ) -> CohortSource:
        """A fitted population: one mixture row per posterior draw (thinned to `max_draws`).

        Args:
            pop: the fitted population.
            baseline: (median mm, omega) of the log-normal baseline SLD.
            max_draws: keep at most this many equally spaced draws.
        """
        m = get_model(pop.model)
        idx = [i for i, p in enumerate(m.params) if p.scale != "size"]
        keep = np.unique(
            np.linspace(0, pop.mu.shape[0] - 1, min(max_draws, pop.mu.shape[0])).astype(int)
        )
        chol = pop.corr_chol[keep]
        # Marginalise the size effect out: the correlation of the remaining parameters.
        corr = chol @ np.swapaxes(chol, -1, -2)
        sub = corr[:, idx][:, :, idx]
        s = len(keep)
        return cls(
            m.name, tuple(m.params[i].name for i in idx), pop.mu[keep][:, idx],
            pop.omega[keep][:, idx], np.linalg.cholesky(sub), np.full(s, 1.0 / s),
            np.full(s, np.log(baseline[0])), baseline[1],
            beta=pop.beta[keep][:, :, idx] if pop.beta.shape[1] else None,
            covariates=tuple(pop.covariates), center=np.asarray(pop.covariate_center),
            scale=np.asarray(pop.covariate_scale), label=f"population {pop.source}",
        )  # fmt: skip

    @classmethod
    def from_table(
        cls, model: str, params: Mapping[str, np.ndarray], baseline: np.ndarray,
        weights: np.ndarray | None = None, label: str = "matched cohort",
    ) -> CohortSource:  # fmt: skip
        """Resample a table of virtual patients (e.g. those selected by
        :func:`match_observables`), each with probability `weights` (default equal).

        Args:
            model: registry model name.
            params: constrained values of every non-size parameter, arrays (n,).
            baseline: (n,) baseline SLD, mm.
            weights: (n,) non-negative weights.
        """
        m = get_model(model)
        free = [p for p in m.params if p.scale != "size"]
        missing = [p.name for p in free if p.name not in params]
        if missing:
            raise ModelError(f"the table lacks parameters {missing} of {m.name}")
        z = np.stack(
            [np.asarray(p.unconstrain(np.asarray(params[p.name], float))) for p in free], 1
        )
        n, d = z.shape
        w = np.ones(n) if weights is None else np.asarray(weights, float)
        if w.shape != (n,) or np.any(w < 0) or not w.sum() > 0:
            raise ModelError("weights must be (n,) non-negative with a positive sum")
        b = np.asarray(baseline, float)
        if b.shape != (n,) or np.any(~(b > 0)):
            raise ModelError("baseline must be (n,) positive sizes in mm")
        return cls(m.name, tuple(p.name for p in free), z, np.zeros((n, d)),
                   np.broadcast_to(np.eye(d), (n, d, d)).copy(), w / w.sum(), np.log(b), 0.0,
                   label=label)  # fmt: skip

    def arrays(self, covariates: Sequence[CovariateSpec]) -> dict[str, Any]:
        """JAX arrays for :func:`sample_patient`, with covariate distributions of the design.

        Raises:
            ModelError: the source needs a covariate the design does not describe.
        """
        names = [c.name for c in covariates]
        missing = [c for c in self.covariates if c not in names]
        if missing:
            raise ModelError(f"{self.label} needs covariates {missing}; add them to the design")
        q = len(covariates)
        kmax = max([len(c.values) for c in covariates] + [1])
        values = np.zeros((q, kmax))
        cum = np.ones((q, kmax))
        for j, c in enumerate(covariates):
            if c.categorical:
                values[j, : len(c.values)] = c.values
                cum[j, : len(c.probs)] = np.cumsum(c.probs)
        d, s = self.mu.shape[1], self.mu.shape[0]
        p = len(self.covariates)
        beta = self.beta if self.beta is not None else np.zeros((s, p, d))
        pick = np.array([names.index(c) for c in self.covariates], dtype=int)
        out = {
            "cumw": np.cumsum(self.weights), "mu": self.mu, "omega": self.omega,
            "chol": self.chol, "beta": beta, "cov_pick": pick,
            "center": np.asarray(self.center, float).reshape(p),
            "scale": np.asarray(self.scale, float).reshape(p),
            "blog_mu": self.baseline_log_mu, "blog_sd": np.asarray(self.baseline_log_sd),
            "cov_values": values, "cov_cum": cum,
            "cov_cat": np.array([c.categorical for c in covariates], dtype=bool),
            "cov_mean": np.array([c.mean for c in covariates]),
            "cov_sd": np.array([c.sd for c in covariates]),
        }  # fmt: skip
        out["cumw"][-1] = 1.0 + 1e-12  # so rounding never selects a row past the end
        return {k: jnp.asarray(v) for k, v in out.items()}


def _candidates(key: Any, a: Mapping[str, Any], k: int) -> tuple[Any, Any, Any]:
    """`k` candidate patients from one key: z (k, d), baseline SLD (k,) mm, covariates (k, q).

    All k are drawn with one call per kind of draw (cheaper than k keys)."""
    k_row, k_eta, k_base, k_cu, k_cn = jax.random.split(key, 5)
    s = jnp.searchsorted(a["cumw"], jax.random.uniform(k_row, (k,)), side="right")
    s = jnp.minimum(s, a["cumw"].shape[0] - 1)
    q = a["cov_mean"].shape[0]
    u = jax.random.uniform(k_cu, (k, q))
    idx = jnp.sum(u[:, :, None] > a["cov_cum"][None], axis=2)
    idx = jnp.minimum(idx, a["cov_values"].shape[1] - 1)
    cat = jnp.take_along_axis(a["cov_values"][None].repeat(k, 0), idx[:, :, None], axis=2)[..., 0]
    cont = a["cov_mean"] + a["cov_sd"] * jax.random.normal(k_cn, (k, q))
    cov = jnp.where(a["cov_cat"], cat, cont)
    x = (cov[:, a["cov_pick"]] - a["center"]) / a["scale"]
    d = a["mu"].shape[1]
    eta = jax.random.normal(k_eta, (k, d))
    shift = jnp.einsum("kp,kpd->kd", x, a["beta"][s])
    z = a["mu"][s] + shift + a["omega"][s] * jnp.einsum("kde,ke->kd", a["chol"][s], eta)
    base = jnp.exp(a["blog_mu"][s] + a["blog_sd"] * jax.random.normal(k_base, (k,)))
    return z, base, cov


def make_sampler(
    model: str, names: Sequence[str], covariates: Sequence[CovariateSpec],
    eligibility: Sequence[str], candidates: int = CANDIDATES,
) -> Callable[[Any, Mapping[str, Any]], dict[str, Any]]:  # fmt: skip
    """A jittable ``sample(key, arrays) -> {z, params, baseline, cov, eligible}`` for one patient.

    Up to `candidates` candidates are screened (each from its own key); the first eligible one
    is enrolled, and ``eligible`` is False when none was (the patient is then excluded).
    """
    m = get_model(model)
    free = [m.spec(n) for n in names]
    cov_names = [c.name for c in covariates]
    conds = [parse_condition(c) for c in eligibility]

    def check(z: Any, base: Any, cov: Any) -> Any:
        ok = jnp.array(True)
        for name, op, value in conds:
            if name == "baseline":
                v = base
            elif name in cov_names:
                v = cov[cov_names.index(name)]
            else:
                v = free[names.index(name)].constrain(z[names.index(name)])
            ok = ok & {"<": v < value, "<=": v <= value, ">": v > value, ">=": v >= value,
                       "==": v == value, "!=": v != value}[op]  # fmt: skip
        return ok

    def sample(key: Any, a: Mapping[str, Any]) -> dict[str, Any]:
        z, base, cov = _candidates(key, a, candidates if conds else 1)
        ok = jax.vmap(check)(z, base, cov)
        first = jnp.argmax(ok)
        params = {p.name: p.constrain(z[first, i]) for i, p in enumerate(free)}
        return {"z": z[first], "params": params, "baseline": base[first], "cov": cov[first],
                "eligible": ok[first]}  # fmt: skip

    return sample


def patient_keys(seed: int, replicate: Any, index: Any) -> Any:
    """Per-patient keys ``fold_in(fold_in(key(seed), replicate), index)`` (vectorised)."""
    base = jax.random.PRNGKey(jnp.uint32(seed))
    return jax.vmap(lambda r, i: jax.random.fold_in(jax.random.fold_in(base, r), i))(
        jnp.asarray(replicate, dtype=jnp.uint32), jnp.asarray(index, dtype=jnp.uint32)
    )


@dataclass(frozen=True)
class VirtualCohort:
    """Drawn virtual patients (NumPy arrays, one row per patient).

    Attributes:
        model: tumour model; params: constrained parameter values (n,) per name (``v0`` is
            the baseline); baseline: SLD at entry, mm; covariates: values per name;
        eligible: whether each patient met the eligibility criteria; seed: the seed used.
    """

    model: str
    params: dict[str, np.ndarray]
    baseline: np.ndarray
    covariates: dict[str, np.ndarray]
    eligible: np.ndarray
    seed: int
    source: str

    def __len__(self) -> int:
        return int(self.baseline.shape[0])

    def select(self, mask: np.ndarray) -> VirtualCohort:
        """The patients where `mask` is True."""
        return VirtualCohort(
            self.model, {k: v[mask] for k, v in self.params.items()}, self.baseline[mask],
            {k: v[mask] for k, v in self.covariates.items()}, self.eligible[mask], self.seed,
            self.source,
        )  # fmt: skip


def draw_cohort(
    design: TrialDesign, n: int, *, seed: int | None = None, source: CohortSource | None = None,
    replicate: int = 0,
) -> VirtualCohort:  # fmt: skip
    """Draw `n` virtual patients of a design (the same patients a trial run enrols).

    Args:
        design: the trial design (covariates, eligibility, default parameter distribution).
        n: number of patients.
        seed: random seed (default: the design's).
        source: population to draw from (default: the design's parameter distribution).
        replicate: replicate number (trial replicates draw different patients).
    """
    if n < 1:
        raise DataError(f"n must be >= 1, got {n}")
    seed = design.seed if seed is None else seed
    src = source or CohortSource.from_design(design)
    sampler = make_sampler(src.model, src.names, design.covariates, design.eligibility)
    arrays = src.arrays(design.covariates)
    keys = patient_keys(seed, np.full(n, replicate), np.arange(n))
    # The trial run gives a patient's first subkey to the sampler: the same here.
    out = jax.jit(jax.vmap(lambda k: sampler(jax.random.split(k, 8)[0], arrays)))(keys)
    params = {k: np.asarray(v) for k, v in out["params"].items()}
    base = np.asarray(out["baseline"])
    m = get_model(src.model)
    for p in m.params:
        if p.scale == "size":
            params[p.name] = base.copy()
    cov = np.asarray(out["cov"])
    return VirtualCohort(
        src.model, params, base, {c.name: cov[:, j] for j, c in enumerate(design.covariates)},
        np.asarray(out["eligible"]), seed, src.label,
    )  # fmt: skip


# ---------------------------------------------------------------- Allen-Rieger-Musante matching


@dataclass(frozen=True)
class MatchResult:
    """Virtual patients selected (and weighted) to match a target distribution of observables.

    Attributes:
        selected: (n,) True for virtual patients accepted into the virtual population.
        weights: (n,) importance weights target/plausible density (normalised to sum 1), the
            weighting alternative to selection.
        ratio: (n,) density ratio target/plausible at each virtual patient.
        scale_factor: the acceptance scaling chosen.
        ks_pvalues: per observable, the two-sample Kolmogorov-Smirnov p-value of the selected
            virtual patients against the target.
        effective_size: Kish effective sample size of `weights`.
        seed: the seed of the acceptance draws.
    """

    selected: np.ndarray
    weights: np.ndarray
    ratio: np.ndarray
    scale_factor: float
    ks_pvalues: np.ndarray
    effective_size: float
    seed: int

    @property
    def acceptance_rate(self) -> float:
        return float(np.mean(self.selected))


def match_observables(
    plausible: np.ndarray, target: np.ndarray, *, seed: int = 0, bandwidth: str | float = "scott",
    n_scales: int = 60,
) -> MatchResult:  # fmt: skip
    """Select virtual patients whose observables follow a target distribution (Allen 2016).

    Each plausible patient i is accepted with probability ``min(1, r_i / c)`` where ``r_i`` is
    the ratio of the target density to the plausible-population density at its observables
    (both Gaussian kernel density estimates), and the scaling ``c`` is chosen, as in Allen et
    al., to maximise the agreement of the selected population with the target: here the mean
    of the marginal two-sample Kolmogorov-Smirnov p-values. The acceptance uniforms are drawn
    once from `seed`, so the selection is reproducible.

    Args:
        plausible: (n, k) observables of the plausible virtual patients (e.g. log baseline SLD,
            log ratio at week 8).
        target: (m, k) the same observables in the real cohort.
        seed: random seed of the acceptance draws.
        bandwidth: KDE bandwidth rule or factor (scipy.stats.gaussian_kde).
        n_scales: number of scalings tried (log-spaced over the range of the ratios).

    Raises:
        DataError: shapes differ, non-finite values, or too few rows for a density estimate.
    """
    from scipy.stats import gaussian_kde, ks_2samp

    x = np.atleast_2d(np.asarray(plausible, float))
    y = np.atleast_2d(np.asarray(target, float))
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise DataError(f"plausible {x.shape} and target {y.shape} need the same columns")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise DataError("observables must be finite (drop patients with missing values first)")
    if y.shape[0] <= y.shape[1] + 1 or x.shape[0] <= x.shape[1] + 1:
        raise DataError("too few rows for a density estimate")
    f_target = gaussian_kde(y.T, bw_method=bandwidth)
    f_plaus = gaussian_kde(x.T, bw_method=bandwidth)
    ratio = f_target(x.T) / np.maximum(f_plaus(x.T), 1e-300)
    u = np.random.default_rng(seed).uniform(size=x.shape[0])
    pos = ratio[ratio > 0]
    scales = np.geomspace(np.quantile(pos, 0.5), pos.max(), n_scales)
    best: tuple[float, float, np.ndarray, np.ndarray] | None = None
    for c in scales:
        sel = u < np.minimum(1.0, ratio / c)
        if sel.sum() < 10:
            continue
        p = np.array([ks_2samp(x[sel, j], y[:, j]).pvalue for j in range(x.shape[1])])
        score = float(np.mean(p))
        if best is None or score > best[0]:
            best = (score, float(c), sel, p)
    if best is None:
        raise DataError(
            "no scaling selected at least 10 virtual patients; draw more plausible ones"
        )
    _, c, sel, p = best
    w = ratio / ratio.sum()
    return MatchResult(sel, w, ratio, c, p, float(1.0 / np.sum(w**2)), seed)
