"""Reference tests of the immune models (oncotwin.models.immune).

Provenance of every reference number:
- Kuznetsov 1994 parameters (sigma 0.1181, rho 1.131, eta 20.19, mu 0.00311, delta 0.3743,
  alpha 1.636, beta 0.002): Kuznetsov VA et al. Bull Math Biol 1994;56:295-321, as used in
  github.com/samubernard/popdyn ``immunogeneic_tumor_growth/stoch_tumor_growth.m``; they equal
  the paper's dimensional estimates scaled by E0 = T0 = 1e6 cells and n = 1.101e-7/(cell day)
  (checked below to 4 significant digits);
- equilibria (0.31552, 0), (1.60920, 8.18971), (0.75977, 267.798), (0.17298, 447.134): the
  roots of the nullcline equations (cubic written out in ``kuznetsov_equilibria``); they are
  checked to be zeros of the vector field, and agree with the values listed by an independent
  public Python implementation of the model (a script computing the Jacobian eigenvalues at
  them). Their types (tumour-free saddle, dormant stable focus, saddle, escaped stable node)
  come from the eigenvalues; the dormant/escape bistability is the behaviour described in
  Kuznetsov 1994 (immune-controlled "dormant" tumour vs escape, depending on initial burden);
- closed form vs ODE: the response-model closed form must agree with a Tsit5 integration of
  its ODE, including the degenerate case kc = kd - kg;
- RECIST 1.1 thresholds (30 % decrease from baseline; 20 % and 5 mm increase over the nadir):
  Eisenhauer EA et al. Eur J Cancer 2009;45:228-247, applied to hand-made trajectories whose
  expected labels follow from the rules by inspection.
"""

from __future__ import annotations

import numpy as np
import pytest

from oncotwin._jax import jax, jnp
from oncotwin.errors import ModelError
from oncotwin.models import immune as im

KTS = np.linspace(0.0, 300.0, 301)  # dimensionless time (x 9.08 days), shared grid
DAYS = np.linspace(0.0, 364.0, 53)  # weekly assessments for a year


def test_kuznetsov_parameters_are_the_scaled_dimensional_estimates() -> None:
    n, unit = 1.101e-7, 1e6  # 1/(cell day), cells
    p = im.kuznetsov_params()
    scaled = {
        "sigma": 1.3e4 / (n * unit * unit),
        "rho": 0.1245 / (n * unit),
        "eta": 2.019e7 / unit,
        "mu": 3.422e-10 / n,
        "delta": 0.0412 / (n * unit),
        "alpha": 0.18 / (n * unit),
        "beta": 2.0e-9 * unit,
    }
    for name, value in scaled.items():
        assert float(getattr(p, name)) == pytest.approx(value, rel=1e-3), name
    assert pytest.approx(9.0827, rel=1e-4) == im.KUZNETSOV_DAYS_PER_UNIT


def test_kuznetsov_equilibria_are_fixed_points_of_published_parameters() -> None:
    p = im.kuznetsov_params()
    eq = np.asarray(im.kuznetsov_equilibria(p))
    assert eq.shape == (4, 2) and np.all(np.isfinite(eq))  # all four exist
    expected = [
        [0.315522, 0.0],
        [1.609203, 8.189707],
        [0.759765, 267.797961],
        [0.172977, 447.134229],
    ]
    np.testing.assert_allclose(eq, expected, rtol=1e-5, atol=1e-12)
    field = np.asarray(im.kuznetsov_field(0.0, jnp.asarray(eq), p))
    np.testing.assert_allclose(field, 0.0, atol=1e-10)
    kinds = [im.classify_equilibrium(im.kuznetsov_jacobian(e, p)) for e in eq]
    assert kinds == ["saddle", "stable focus", "saddle", "stable node"]


def test_kuznetsov_equilibria_follow_parameters_under_jit_and_vmap() -> None:
    base = im.kuznetsov_params()
    sigmas = jnp.array([0.05, 0.1181, 0.3])
    batch = base._replace(
        sigma=sigmas, **{k: jnp.full(3, getattr(base, k)) for k in base._fields if k != "sigma"}
    )
    eqs = jax.jit(jax.vmap(im.kuznetsov_equilibria))(batch)
    for i in range(3):
        p = jax.tree.map(lambda a, i=i: a[i], batch)
        np.testing.assert_allclose(eqs[i], im.kuznetsov_equilibria(p), rtol=1e-12)
        e = np.asarray(eqs[i])
        e = e[np.isfinite(e[:, 1])]
        np.testing.assert_allclose(
            np.asarray(im.kuznetsov_field(0.0, jnp.asarray(e), p)), 0.0, atol=1e-9
        )


def _batch(params: im.KuznetsovParams, size: int) -> im.KuznetsovParams:
    return jax.tree.map(lambda a: jnp.broadcast_to(a, (size,)), params)


# One compiled, batched solver serves both tests below: vmap over parameters and initial states.
_solve_batch = jax.jit(jax.vmap(lambda p, y0: im.simulate_kuznetsov(p, y0, KTS)))


def test_dormant_and_escaped_states_attract() -> None:
    p = im.kuznetsov_params()
    eq = np.asarray(im.kuznetsov_equilibria(p))
    # Either side of the saddle (0.76, 267.8): a small tumour is held dormant, a large escapes.
    starts = jnp.array([[1.0, 10.0], [0.76, 260.0], [0.76, 275.0], [0.5, 300.0]])
    ys, ok = _solve_batch(_batch(p, 4), starts)
    assert np.all(np.asarray(ok))
    final = np.asarray(ys[:, -1])
    np.testing.assert_allclose(final[:2], np.broadcast_to(eq[1], (2, 2)), rtol=1e-4)
    np.testing.assert_allclose(final[2:], np.broadcast_to(eq[3], (2, 2)), rtol=1e-6)
    # The dormant state is a focus: the tumour overshoots it on the way (damped oscillation).
    assert np.any(np.asarray(ys[0, :, 1]) < eq[1, 1] * 0.9)


def test_kuznetsov_ode_vmap_over_parameters_equals_loop() -> None:
    batch = _batch(im.kuznetsov_params(), 4)._replace(mu=jnp.array([0.002, 0.00311, 0.004, 0.005]))
    y0 = jnp.array([1.0, 10.0])
    ys, ok = _solve_batch(batch, jnp.broadcast_to(y0, (4, 2)))
    for i in range(4):
        one, ok1 = im.simulate_kuznetsov(jax.tree.map(lambda a, i=i: a[i], batch), y0, KTS)
        assert bool(ok1) and bool(ok[i])
        np.testing.assert_allclose(ys[i], one, rtol=1e-9)


@pytest.mark.parametrize(
    "params",
    [
        im.ResponseParams(v0=50.0, kg=0.01, kd=0.05, tau=42.0, kc=0.02, fr=0.0),
        im.ResponseParams(v0=30.0, kg=0.005, kd=0.03, tau=21.0, kc=0.025, fr=0.2),  # kc = kd - kg
        im.ResponseParams(v0=80.0, kg=0.02, kd=0.0, tau=10.0, kc=0.1, fr=0.0),  # no kill
        im.ResponseParams(v0=20.0, kg=0.001, kd=0.2, tau=0.0, kc=1.0, fr=0.5),
    ],
)
def test_sld_closed_form_matches_ode(params: im.ResponseParams) -> None:
    closed = np.asarray(im.sld(DAYS, params))
    ode, ok = im.sld_ode(DAYS, params)
    assert bool(ok)
    np.testing.assert_allclose(closed, np.asarray(ode), rtol=1e-7)
    assert closed[0] == pytest.approx(params.v0)


def test_sld_is_vectorised_in_time_and_vmaps_over_parameters() -> None:
    p = im.ResponseParams(v0=50.0, kg=0.01, kd=0.05, tau=42.0, kc=0.02, fr=0.1)
    grid = np.stack([DAYS, DAYS + 1.0])
    assert im.sld(grid, p).shape == grid.shape
    np.testing.assert_allclose(im.sld(grid, p)[1], [float(im.sld(t + 1.0, p)) for t in DAYS])
    batch = im.ResponseParams(*(jnp.full(4, v) for v in p))._replace(kd=jnp.linspace(0.02, 0.08, 4))
    out = jax.jit(jax.vmap(lambda q: im.sld(DAYS, q)))(batch)
    for i in range(4):
        np.testing.assert_allclose(out[i], im.sld(DAYS, p._replace(kd=float(batch.kd[i]))))


def test_pseudoprogression_parameter_set() -> None:
    """Growth during a 6-week activation delay, then immune kill: up >= 20 %, down >= 30 %."""
    p = im.ResponseParams(v0=50.0, kg=0.01, kd=0.05, tau=42.0, kc=0.02, fr=0.0)
    v = np.asarray(im.sld(DAYS, p))
    peak = int(np.argmax(v))
    assert v[peak] >= 1.2 * v[0] and v[peak] - v[0] >= 5.0
    assert np.min(v[peak:]) <= 0.7 * v[0]
    course = im.classify_recist(DAYS, v)
    assert course.label == "pseudoprogression"
    assert course.progression_time is not None and course.response_time is not None
    assert course.progression_time < course.response_time
    # The same tumour without the delay responds from the start.
    assert im.classify_recist(DAYS, im.sld(DAYS, p._replace(tau=0.0))).label == "responder"
    # ... and without a kill it progresses.
    assert im.classify_recist(DAYS, im.sld(DAYS, p._replace(kd=0.0))).label == "progression"


@pytest.mark.parametrize(
    ("sld_mm", "label", "t_prog", "t_resp"),
    [
        ([50.0, 40.0, 34.0, 30.0], "responder", None, 2.0),  # 34 <= 0.7 x 50 = 35
        ([50.0, 35.0], "responder", None, 1.0),  # exactly -30 %
        ([50.0, 35.1, 36.0], "stable", None, None),  # -29.8 %: not a response
        ([50.0, 45.0, 54.0, 60.0], "progression", 2.0, None),  # 54 = 1.2 x nadir 45, +9 mm
        ([50.0, 40.0, 48.0], "progression", 2.0, None),  # exactly +20 % and +8 mm
        ([10.0, 8.0, 9.5, 9.8], "stable", None, None),  # +22.5 % over nadir but only 1.8 mm
        ([50.0, 61.0, 40.0, 34.0], "pseudoprogression", 1.0, 3.0),  # +22 % / 11 mm, then -32 %
        ([50.0, 30.0, 20.0, 30.0], "progression", 3.0, None),  # response, then +50 % over nadir
    ],
)
def test_recist_rules_on_hand_made_trajectories(
    sld_mm: list[float], label: str, t_prog: float | None, t_resp: float | None
) -> None:
    course = im.classify_recist(np.arange(len(sld_mm), dtype=float), sld_mm)
    assert course.label == label
    assert course.progression_time == t_prog
    if label != "progression":
        assert course.response_time == t_resp
    assert course.baseline == sld_mm[0]


def test_invalid_arguments_name_the_argument() -> None:
    with pytest.raises(ModelError, match="sld_mm"):
        im.classify_recist([0.0, 1.0], [50.0])
    with pytest.raises(ModelError, match="sorted"):
        im.classify_recist([1.0, 0.0], [50.0, 40.0])
    with pytest.raises(ModelError, match="fr"):
        im.validate_response(im.ResponseParams(v0=1.0, kg=0.1, kd=0.1, tau=1.0, kc=0.1, fr=1.5))
    with pytest.raises(ModelError, match="beta"):
        im.kuznetsov_params(beta=-1.0)
    with pytest.raises(ModelError, match="unknown"):
        im.kuznetsov_params(gamma=1.0)
