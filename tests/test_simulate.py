"""Reference tests of simulate(): batching, failures as data, ODE convergence, time order.

Provenance: closed-form solutions (see tests/models) are the exact reference for the ODE path;
the empirical convergence order of the fixed-step Tsit5 scheme is compared with its theoretical
order 5 (Tsitouras C, Comput Math Appl 2011;62:770-775).
"""

from __future__ import annotations

import math

import diffrax
import numpy as np
import pytest

from oncotwin._jax import jax, jnp
from oncotwin.errors import ModelError, SimulationError
from oncotwin.models import get_model
from oncotwin.schedule import Dose, Schedule
from oncotwin.simulate import SolverSettings, simulate

TIMES = np.array([1.0, 4.0, 9.0, 15.0, 30.0, 100.0])
BATCH = {
    "v0": np.array([100.0, 100.0, 50.0]),
    "alpha": np.array([0.3, 0.1, 0.5]),
    "beta": np.array([0.05, 0.02, 0.2]),
}


def single(i: int) -> dict[str, float]:
    return {k: float(v[i]) for k, v in BATCH.items()}


@pytest.mark.parametrize("method", ["closed", "ode"])
def test_batch_equals_single_runs(method):
    batch = simulate("gompertz", BATCH, TIMES, method=method)
    assert batch.values.shape == (3, len(TIMES)) and batch.ok.tolist() == [True] * 3
    for i in (0, 2) if method == "closed" else (2,):  # each single ODE run compiles: one
        one = simulate("gompertz", single(i), TIMES, method=method)
        assert one.values.shape == (len(TIMES),) and bool(one.ok)
        # vmapped and single runs take the same steps: identical up to rounding
        np.testing.assert_allclose(batch.values[i], one.values, rtol=1e-12)


def test_batch_under_a_schedule_equals_single_runs():
    schedule = Schedule((Dose(2.0, 100.0), Dose(9.0, 100.0)), half_life={"drug": 2.0})
    params = {
        "v0": np.array([80.0, 120.0]),
        "kg": np.array([0.02, 0.01]),
        "kd": np.array([0.3, 0.1]),
        "lam": np.array([0.01, 0.05]),
    }
    batch = simulate("claret", params, TIMES, schedule, t0=0.5)
    for i in range(2):
        one = simulate("claret", {k: v[i] for k, v in params.items()}, TIMES, schedule, t0=0.5)
        np.testing.assert_allclose(batch.values[i], one.values, rtol=1e-13)


def test_scalar_parameters_are_shared_by_a_batch():
    # v0 and beta fixed, alpha varied: every run is the single run with its own alpha. (Until
    # this was fixed, a scalar first parameter made simulate treat the batch as one run and
    # pair the i-th alpha with the i-th time.)
    params = {"v0": 100.0, "alpha": np.array([0.1, 0.3, 0.5]), "beta": 0.05}
    batch = simulate("gompertz", params, TIMES)
    assert batch.values.shape == (3, len(TIMES)) and batch.ok.shape == (3,)
    for i, alpha in enumerate(params["alpha"]):
        one = simulate("gompertz", {**params, "alpha": float(alpha)}, TIMES)
        np.testing.assert_allclose(batch.values[i], one.values, rtol=1e-13)


@pytest.mark.parametrize(
    "alpha, beta",
    [(np.array([0.1, 0.3]), np.array([0.05, 0.05, 0.05])), (np.full((2, 2), 0.3), 0.05)],
)
def test_inconsistent_batch_shapes_raise(alpha, beta):
    with pytest.raises(ModelError, match="batched parameters"):
        simulate("gompertz", {"v0": 100.0, "alpha": alpha, "beta": beta}, TIMES)


# The second run grows at 10/day: V0 exp(10 t) overflows float64 (exp(709)) before t = 71, so
# the error estimate becomes non-finite, every step is rejected and the solver stops at
# max_steps. The failure is a property of the parameters, not of timing: deterministic.
BLOW_UP = {"v0": np.array([100.0, 100.0, 50.0]), "a": np.array([0.1, 10.0, 0.2])}
LONG = np.array([1.0, 5.0, 10.0, 100.0])


def test_failed_run_in_a_batch_is_data():
    traj = simulate("exponential", BLOW_UP, LONG, method="ode")
    assert traj.ok.tolist() == [True, False, True]
    assert np.all(np.isnan(traj.values[1]))
    # the others are unaffected: they equal their exact solutions
    for i in (0, 2):
        exact = BLOW_UP["v0"][i] * np.exp(BLOW_UP["a"][i] * LONG)
        np.testing.assert_allclose(traj.values[i], exact, rtol=1e-5)


def test_failed_single_run_raises():
    with pytest.raises(SimulationError, match="exponential"):
        simulate("exponential", {"v0": 100.0, "a": 10.0}, LONG, method="ode")


def test_ode_error_decreases_as_rtol_tightens():
    model = get_model("logistic")
    params = model.prior_medians(100.0)  # a = 0.2, K = 1000: passes the inflection point
    times = np.linspace(1.0, 60.0, 12)
    exact = simulate(model, params, times, method="closed").values
    errors = []
    for rtol in (1e-4, 1e-6, 1e-8):
        ode = simulate(
            model, params, times, method="ode", solver=SolverSettings(rtol=rtol, atol=rtol * 1e-3)
        ).values
        err = float(np.max(np.abs(ode / exact - 1)))
        errors.append(err)
        # tolerance proportionality: the global error stays within a small multiple of rtol
        assert err < 10 * rtol, (rtol, err)
    assert errors[0] > errors[1] > errors[2], errors
    # two decades of rtol buy at least one decade of accuracy, each time
    assert errors[0] / errors[1] > 10 and errors[1] / errors[2] > 10, errors


def test_tsit5_converges_at_order_five_on_a_model_vector_field():
    # Fixed-step Tsit5 on the logistic vector field, against the closed form: halving the step
    # divides the error by about 2^5 (observed order within 0.5 of 5).
    model = get_model("logistic")
    params = {"v0": 100.0, "a": 0.3, "k": 1000.0}
    t1 = 20.0
    exact = float(model.closed_form(t1, params, None))

    @jax.jit
    def solve(dt):
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(lambda t, y, args: model.vector_field(t, y, params, 0.0)),
            diffrax.Tsit5(),
            t0=0.0,
            t1=t1,
            dt0=dt,
            y0=model.initial_state(params),
            max_steps=256,
        )
        return sol.ys[-1, 0]

    steps = [20, 40, 80]  # in the asymptotic range, above round-off (errors 3e-9 .. 2e-12)
    errors = [abs(float(solve(jnp.asarray(t1 / n))) - exact) / exact for n in steps]
    orders = [math.log2(errors[i] / errors[i + 1]) for i in range(2)]
    assert all(4.5 < p < 5.5 for p in orders), (errors, orders)


def test_times_come_back_in_the_given_order():
    params = {"v0": 100.0, "alpha": 0.3, "beta": 0.05}
    shuffled = np.array([30.0, 1.0, 15.0, 4.0, 9.0])
    order = np.argsort(shuffled)
    ref = simulate("gompertz", params, np.sort(shuffled), method="closed").values
    assert np.all(np.diff(ref) > 0)  # sorted times: a growing tumour
    for method in ("closed", "ode"):
        got = simulate("gompertz", params, shuffled, method=method)
        np.testing.assert_array_equal(got.times, shuffled)
        # the ODE path integrates over sorted times and puts the values back in the given order
        np.testing.assert_allclose(
            got.values[order], ref, rtol=1e-12 if method == "closed" else 1e-6
        )
    batch = simulate("gompertz", BATCH, shuffled)
    np.testing.assert_allclose(
        batch.values[:, order], simulate("gompertz", BATCH, np.sort(shuffled)).values, rtol=1e-14
    )


def test_auto_uses_the_closed_form_and_t0_shifts_time():
    params = {"v0": 10.0, "a": 0.1}
    traj = simulate("exponential", params, [5.0, 10.0], t0=5.0)
    assert traj.method == "closed form" and traj.model == "exponential"
    np.testing.assert_allclose(traj.values, [10.0, 10.0 * math.exp(0.5)], rtol=1e-14)


def test_unknown_method_is_an_error():
    with pytest.raises(ModelError, match="unknown simulation method 'euler'"):
        simulate("exponential", {"v0": 1.0, "a": 0.1}, [1.0], method="euler")
