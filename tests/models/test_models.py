"""Reference tests of the model library.

Provenance of every reference number:
- closed form vs ODE: the closed form must agree with an independent Tsit5 integration of the
  model's vector field (tight tolerances) at the prior-median parameters;
- closed form vs a hand-derived formula evaluated with :mod:`math` (the derivation is written
  next to each test), so a wrong closed form cannot agree with itself;
- ParamSpec transforms: exact inverses and fixed points of exp / scaled logistic.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from oncotwin.errors import ModelError
from oncotwin.inference.priors import Prior
from oncotwin.models import MODELS, ParamSpec, TumourModel, get_model
from oncotwin.observe import ERROR_MODELS
from oncotwin.schedule import Dose, Schedule, Switch
from oncotwin.simulate import SolverSettings, simulate

REF = 100.0  # reference size: prior-median size parameters are multiples of it
T0 = 2.0  # absolute time of the reference state, days
TIMES = T0 + np.array([0.0, 1.0, 3.0, 5.5, 8.0, 12.0, 18.0, 25.0, 33.0, 45.0, 60.0])
TIGHT = SolverSettings(rtol=1e-10, atol=1e-12, max_steps=100_000)

# Every kind of treatment event, in absolute days (t0 = 2): a bolus before t0 whose exposure is
# still decaying at t0, two boluses, a 12-hour infusion, and an on/off period (a continuous agent).
TREATMENT = Schedule(
    doses=(
        Dose(-3.0, 50.0),
        Dose(7.0, 100.0),
        Dose(14.0, 80.0, duration=0.5),
        Dose(21.0, 100.0),
    ),
    switches=(Switch(25.0, "drug", True), Switch(35.0, "drug", False)),
    half_life={"drug": 2.0},
)


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(a) / np.asarray(b) - 1.0)))


def closed(model: str, params: dict, t: float, schedule: Schedule | None = None, **kw) -> float:
    """The model's closed form at one absolute time (through simulate's public entry point)."""
    return float(simulate(model, params, [t], schedule, method="closed", **kw).values[0])


# ---- closed form vs ODE -----------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(n for n, m in MODELS.items() if m.closed_form is not None))
def test_closed_form_matches_ode_at_prior_median(name):
    model = MODELS[name]
    params = model.prior_medians(REF)
    cf = simulate(model, params, TIMES, t0=T0, method="closed")
    ode = simulate(model, params, TIMES, t0=T0, method="ode", solver=TIGHT)
    assert cf.method == "closed form" and ode.method == "ode"
    assert bool(ode.ok)
    np.testing.assert_allclose(cf.values[0], params["v0"], rtol=1e-14)  # state at t0 is v0
    assert rel_err(ode.values, cf.values) <= 1e-6, (name, ode.values, cf.values)


@pytest.mark.parametrize(
    "name",
    # lq_regrowth reads only doses in Gy, as kicks its ODE does not see: see its own tests
    sorted(
        n
        for n, m in MODELS.items()
        if m.uses_exposure and m.closed_form is not None and n != "lq_regrowth"
    ),
)
def test_closed_form_matches_ode_under_treatment(name):
    model = MODELS[name]
    # A batch of two: the prior medians, and 10x the prior-median kill rate (a drug effect
    # large enough that a wrong exposure integral could not hide in the tolerance).
    kill = "kd" if name == "claret" else "k"
    params = {k: np.array([v, v]) for k, v in model.prior_medians(REF).items()}
    params[kill] = params[kill] * np.array([1.0, 10.0])
    cf = simulate(model, params, TIMES, TREATMENT, t0=T0, method="closed").values
    ode = simulate(model, params, TIMES, TREATMENT, t0=T0, method="ode", solver=TIGHT)
    untreated = simulate(model, params, TIMES, t0=T0, method="closed").values
    assert ode.ok.tolist() == [True, True]
    assert np.all(cf[:, 1] < untreated[:, 1])  # the dose given before t0 still acts after t0
    assert untreated[1, -1] / cf[1, -1] > 1.5  # treatment visibly shrinks the tumour
    assert rel_err(ode.values, cf) <= 1e-6, (name, ode.values, cf)


# ---- closed forms vs hand-derived formulas ----------------------------------------------------


def test_exponential_by_hand():
    # dV/dt = a V  =>  V = V0 exp(a t)
    p = {"v0": 80.0, "a": 0.07}
    assert closed("exponential", p, 12.0) == pytest.approx(80.0 * math.exp(0.07 * 12.0), rel=1e-13)


def test_logistic_by_hand():
    # dV/dt = a V (1 - V/K): separating variables, V/(K - V) = V0/(K - V0) exp(a t), so
    # V = K V0 / (V0 + (K - V0) exp(-a t)).
    v0, a, k, t = 50.0, 0.25, 800.0, 9.0
    want = k * v0 / (v0 + (k - v0) * math.exp(-a * t))
    assert closed("logistic", {"v0": v0, "a": a, "k": k}, t) == pytest.approx(want, rel=1e-13)
    # and the plateau is K
    assert closed("logistic", {"v0": v0, "a": a, "k": k}, 500.0) == pytest.approx(k, rel=1e-12)


def test_gompertz_by_hand():
    # w = ln(V/V0): dw/dt = alpha - beta w, w(0) = 0  =>  w = alpha/beta (1 - exp(-beta t)).
    v0, alpha, beta, t = 100.0, 0.3, 0.05, 14.0
    want = v0 * math.exp(alpha / beta * (1.0 - math.exp(-beta * t)))
    p = {"v0": v0, "alpha": alpha, "beta": beta}
    assert closed("gompertz", p, t) == pytest.approx(want, rel=1e-13)
    # plateau V0 exp(alpha/beta)
    assert closed("gompertz", p, 2000.0) == pytest.approx(v0 * math.exp(6.0), rel=1e-12)


def test_reduced_gompertz_by_hand():
    # w = ln(V/K): dw/dt = -beta w  =>  V = K exp(ln(V0/K) exp(-beta t)).
    v0, beta, k, t = 30.0, 0.08, 2000.0, 11.0
    want = k * math.exp(math.log(v0 / k) * math.exp(-beta * t))
    assert closed("reduced_gompertz", {"v0": v0, "beta": beta, "k": k}, t) == pytest.approx(
        want, rel=1e-13
    )


def test_bertalanffy_by_hand():
    # u = V^(1-g): du/dt = (1-g) (a V0^(1-g) - b u), so u relaxes to a V0^(1-g)/b at rate (1-g) b:
    # V = V0 (a/b + (1 - a/b) exp(-(1-g) b t))^(1/(1-g)).
    v0, a, b, g, t = 100.0, 0.3, 0.05, 2.0 / 3.0, 10.0
    want = v0 * (a / b + (1 - a / b) * math.exp(-(1 - g) * b * t)) ** (1 / (1 - g))
    assert closed("bertalanffy", {"v0": v0, "a": a, "b": b, "gamma": g}, t) == pytest.approx(
        want, rel=1e-13
    )
    # gamma = 1/2, a = b: a V0^(1/2) V^(1/2) - a V stays at V0 (a fixed point).
    assert closed("bertalanffy", {"v0": 7.0, "a": 0.2, "b": 0.2, "gamma": 0.5}, 30.0) == (
        pytest.approx(7.0, rel=1e-13)
    )


def test_power_law_by_hand():
    # u = V^(1-g): du/dt = (1-g) a V0^(1-g)  =>  V = V0 (1 + (1-g) a t)^(1/(1-g)).
    # gamma = 1/2: V = V0 (1 + a t / 2)^2, here 100 (1 + 0.2*10/2)^2 = 400.
    assert closed("power_law", {"v0": 100.0, "a": 0.2, "gamma": 0.5}, 10.0) == pytest.approx(
        400.0, rel=1e-13
    )


def test_exponential_linear_by_hand():
    # dV/dt = min(a0 V, a1): exponential until a0 V reaches a1, i.e. V* = a1/a0 = 30/0.2 = 150,
    # reached at t* = ln(V*/V0)/a0 = ln(1.5)/0.2 = 2.0273 days; then V = V* + a1 (t - t*).
    p = {"v0": 100.0, "a0": 0.2, "a1": 30.0}
    t_switch = math.log(1.5) / 0.2
    assert 2.02 < t_switch < 2.03
    assert closed("exponential_linear", p, 1.0) == pytest.approx(100 * math.exp(0.2), rel=1e-13)
    want = 150.0 + 30.0 * (5.0 - t_switch)
    assert closed("exponential_linear", p, 5.0) == pytest.approx(want, rel=1e-13)
    # continuity at the switch
    assert closed("exponential_linear", p, t_switch) == pytest.approx(150.0, rel=1e-12)
    # V0 > a1/a0: the tumour is linear from the start, V = V0 + a1 t
    p_lin = {"v0": 200.0, "a0": 0.2, "a1": 30.0}
    assert closed("exponential_linear", p_lin, 4.0) == pytest.approx(320.0, rel=1e-13)


def test_stein_by_hand():
    # V = V0 (phi exp(-d t) + (1 - phi) exp(g t)); it is smallest where
    # d phi exp(-d t) = g (1 - phi) exp(g t), i.e. t_min = ln(d phi / (g (1 - phi))) / (d + g).
    v0, g, d, phi = 100.0, 0.01, 0.05, 0.8
    p = {"v0": v0, "g": g, "d": d, "phi": phi}
    t = 20.0
    want = v0 * (phi * math.exp(-d * t) + (1 - phi) * math.exp(g * t))
    assert closed("stein", p, t) == pytest.approx(want, rel=1e-13)
    t_min = math.log(d * phi / (g * (1 - phi))) / (d + g)
    values = simulate("stein", p, t_min + np.array([-0.5, 0.0, 0.5]), method="closed").values
    assert values[1] < values[0] and values[1] < values[2]


def test_claret_single_bolus_by_hand():
    # One bolus of amount A at t = 0 with reference amount R: E(s) = a exp(-k s), a = A/R,
    # k = ln 2 / h. d ln V/dt = kg - kd exp(-lam s) E(s), so
    #   ln V(t) = ln V0 + kg t - kd a int_0^t exp(-(lam + k) s) ds
    #           = ln V0 + kg t - kd a/(lam + k) (1 - exp(-(lam + k) t)).
    v0, kg, kd, lam, h = 100.0, 0.01, 0.05, 0.02, 3.0
    amount, reference, t = 100.0, 50.0, 10.0
    a, k = amount / reference, math.log(2) / h
    want = v0 * math.exp(kg * t - kd * a / (lam + k) * (1 - math.exp(-(lam + k) * t)))
    schedule = Schedule((Dose(0.0, amount),), half_life={"drug": h})
    p = {"v0": v0, "kg": kg, "kd": kd, "lam": lam}
    got = closed("claret", p, t, schedule, reference={"drug": reference})
    assert got == pytest.approx(want, rel=1e-12)
    assert got < v0 * math.exp(kg * t)  # the drug did something


def test_two_population_single_bolus_by_hand():
    # S' = (g - k E) S, R' = g R with E(s) = a exp(-kel s):
    #   S = (1 - fr) V0 exp(g t - k a (1 - exp(-kel t))/kel),  R = fr V0 exp(g t).
    v0, g, kill, fr, h, t = 100.0, 0.02, 0.5, 0.1, 1.0, 6.0
    kel = math.log(2) / h
    cum = (1 - math.exp(-kel * t)) / kel  # a = 1: one dose is its own reference
    want = (1 - fr) * v0 * math.exp(g * t - kill * cum) + fr * v0 * math.exp(g * t)
    schedule = Schedule((Dose(0.0, 40.0),), half_life={"drug": h})
    got = closed("two_population", {"v0": v0, "g": g, "k": kill, "fr": fr}, t, schedule)
    assert got == pytest.approx(want, rel=1e-12)


def test_untreated_exposure_models_grow_exponentially():
    # Without treatment both exposure models reduce to V0 exp(g t).
    assert closed("claret", {"v0": 10.0, "kg": 0.03, "kd": 0.5, "lam": 0.1}, 20.0) == (
        pytest.approx(10.0 * math.exp(0.6), rel=1e-13)
    )
    assert closed("two_population", {"v0": 10.0, "g": 0.03, "k": 0.5, "fr": 0.2}, 20.0) == (
        pytest.approx(10.0 * math.exp(0.6), rel=1e-13)
    )


# ---- declarations -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(MODELS))
def test_declaration_is_consistent(name):
    model = MODELS[name]
    assert model.name == name and model.title and model.citation and model.equation
    assert model.param_names[0] == "v0"
    assert len(set(model.param_names)) == len(model.param_names)
    p = model.prior_medians(REF)
    model.validate(p)  # prior medians are inside the bounds
    # The initial state observes v0 (both for one- and two-compartment models).
    y0 = model.initial_state(p)
    assert float(model.observable(y0, p)) == pytest.approx(REF, rel=1e-14)
    # The default prior's location is the unconstrained prior median (size relative to ref).
    prior = Prior.default(model, ERROR_MODELS["proportional"])
    assert prior.names == (*model.param_names, "sigma")
    np.testing.assert_allclose(
        np.asarray(model.constrain(prior.loc[: len(model.params)], REF)["v0"]), REF, rtol=1e-14
    )


# ---- ParamSpec transforms and validation -----------------------------------------------------


POSITIVE = ParamSpec("a", "1/day", 0.0, math.inf, 0.1, 1.0, "rate")
BOUNDED = ParamSpec("phi", "1", 0.0, 1.0, 0.5, 1.5, "fraction")
SHIFTED = ParamSpec("h", "1", 2.0, 6.0, 3.0, 1.0, "bounded away from zero")
SIZE = ParamSpec("k", "size", 0.0, math.inf, 10.0, 1.5, "capacity", scale="size")


@pytest.mark.parametrize("spec", [POSITIVE, BOUNDED, SHIFTED, SIZE], ids=lambda s: s.name)
def test_paramspec_round_trip(spec):
    z = np.linspace(-6.0, 6.0, 25)
    for ref in (1.0, 250.0):
        value = np.asarray(spec.constrain(z, ref))
        scaled = value / ref if spec.scale == "size" else value
        assert np.all((scaled > spec.lower) & (scaled < spec.upper))
        assert np.all(np.diff(value) > 0)  # monotone increasing
        np.testing.assert_allclose(np.asarray(spec.unconstrain(value, ref)), z, atol=1e-12)


def test_paramspec_fixed_points():
    assert float(POSITIVE.constrain(math.log(0.3))) == pytest.approx(0.3, rel=1e-15)
    assert float(BOUNDED.constrain(0.0)) == 0.5  # logistic(0) = 1/2
    assert float(SHIFTED.constrain(0.0)) == 4.0  # midpoint of (2, 6)
    # logit(0.75) = ln 3 maps (2, 6) to 2 + 4 * 0.75 = 5
    assert float(SHIFTED.constrain(math.log(3.0))) == pytest.approx(5.0, rel=1e-15)
    assert float(SIZE.constrain(0.0, 100.0)) == 100.0  # size parameters scale with ref
    assert float(SIZE.unconstrain(100.0 * math.e, 100.0)) == pytest.approx(1.0, rel=1e-15)


def test_model_constrain_unconstrain_round_trip():
    model = get_model("bertalanffy")
    p = {"v0": 321.0, "a": 0.4, "b": 0.03, "gamma": 0.71}
    z = model.unconstrain(p, 321.0)
    assert z.shape == (4,)
    assert float(z[0]) == pytest.approx(0.0, abs=1e-15)  # v0 = ref
    back = model.constrain(z, 321.0)
    for k, v in p.items():
        assert float(back[k]) == pytest.approx(v, rel=1e-13)


def test_paramspec_declaration_errors():
    with pytest.raises(ModelError, match="prior median"):
        ParamSpec("a", "1/day", 0.0, math.inf, -1.0, 1.0, "negative median")
    with pytest.raises(ModelError, match="prior median"):
        ParamSpec("phi", "1", 0.0, 1.0, 1.0, 1.0, "median on the bound")
    with pytest.raises(ModelError, match="lower bound 0"):
        ParamSpec("a", "1/day", 1.0, math.inf, 2.0, 1.0, "exp transform needs lower = 0")


@pytest.mark.parametrize(
    "params, match",
    [
        ({"v0": 100.0, "alpha": 0.3}, "missing"),
        ({"v0": 100.0, "alpha": 0.3, "beta": 0.05, "gamma": 1.0}, "unknown"),
        ({"v0": 100.0, "alpha": -0.3, "beta": 0.05}, "outside"),
        ({"v0": 0.0, "alpha": 0.3, "beta": 0.05}, "outside"),
        ({"v0": 100.0, "alpha": float("nan"), "beta": 0.05}, "outside"),
        ({"v0": np.array([100.0, -1.0]), "alpha": 0.3, "beta": 0.05}, "outside"),
    ],
)
def test_bad_parameters_raise_model_error(params, match):
    with pytest.raises(ModelError, match=match):
        get_model("gompertz").validate(params)
    with pytest.raises(ModelError, match=match):
        simulate("gompertz", params, [1.0])


def test_bounded_parameter_on_its_bound_is_rejected():
    with pytest.raises(ModelError, match="gamma"):
        simulate("power_law", {"v0": 1.0, "a": 0.1, "gamma": 1.0}, [1.0])


def test_get_model():
    assert get_model("gompertz") is MODELS["gompertz"]
    model = MODELS["claret"]
    assert isinstance(model, TumourModel) and get_model(model) is model
    with pytest.raises(ModelError, match="unknown model 'gompretz'.*gompertz"):
        get_model("gompretz")
    with pytest.raises(ModelError, match="no parameter 'kappa'"):
        model.spec("kappa")
    assert model.spec("kd").unit == "1/day"
