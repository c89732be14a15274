"""Property-based fuzzing of every operation of the OpenAPI schema (schemathesis strategies,
requests sent in-process to the ASGI app): whatever a client sends, no answer is a 5xx.

Kept short: a few examples per operation, no shrinking. Requests go as a user of the
operation's role, with the patient id of the path pinned to P1 (so they reach the handlers
instead of the 403 of a random id), except operations that would start calibrations or
compile new shapes. Operations that start optimisation or trial jobs are fuzzed in full (their
checks run on every generated body) but the job they queue does no work: a generated body
that passes the checks must not start a real optimisation or a 2000-patient trial.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st
from svcworld import World

from oncotwin.service import Settings, create_app

EXPENSIVE = {  # random bodies here would start NUTS runs or compile new shapes
    ("POST", "/api/patients/{patient_id}/twins"),
    ("POST", "/api/patients/{patient_id}/twins/update"),
    ("POST", "/api/patients/{patient_id}/forecasts"),
    ("GET", "/api/patients/{patient_id}/report"),
    ("POST", "/api/research/synthetic"),
}
JOB_STARTING = {  # checked in full; the queued job is replaced by one that does nothing
    ("POST", "/api/patients/{patient_id}/recommendations"),
    ("POST", "/api/research/trials"),
}
USER_FOR_TAG = {"research": "res", "admin": "admin"}


@contextmanager
def no_work(runner: Any) -> Iterator[None]:
    """Jobs submitted meanwhile are recorded and run, but their work is a no-op."""
    real = runner.submit

    def submit(kind: str, work: Any, **kw: Any) -> int:
        return int(real(kind, lambda progress: {}, **kw))

    runner.submit = submit
    try:
        yield
    finally:
        del runner.submit  # the class's method again


# The schema does not depend on the data: read it from an app on an in-memory database.
_SCHEMA = schemathesis.openapi.from_asgi("/openapi.json", create_app(Settings(db_url="sqlite://")))
OPERATIONS = {f"{op.method.upper()} {op.path}": op
              for op in (r.ok() for r in _SCHEMA.get_all_operations())}  # fmt: skip


@pytest.mark.parametrize("label", sorted(OPERATIONS))
@settings(max_examples=5, deadline=None, derandomize=True, database=None,
          phases=[Phase.explicit, Phase.generate],
          suppress_health_check=list(HealthCheck))  # fmt: skip
@given(data=st.data())
def test_no_server_errors(label: str, sqlite_world: World, data: Any) -> None:
    op = OPERATIONS[label]
    case = data.draw(op.as_strategy())
    key = (op.method.upper(), op.path)
    if "patient_id" in (case.path_parameters or {}) and key not in EXPENSIVE:
        case.path_parameters["patient_id"] = "P1"
    kwargs = case.as_transport_kwargs()
    tags = op.definition.raw.get("tags", [])
    user = next((USER_FOR_TAG[t] for t in tags if t in USER_FOR_TAG), "clin_a")
    kwargs["headers"] = {k: v for k, v in kwargs["headers"].items() if k.lower() != "connection"}
    kwargs["headers"].update(sqlite_world.auth(user))
    kwargs.pop("cookies", None)
    form = kwargs.get("data")
    if isinstance(form, dict):  # nested values cannot be form-encoded by the client at all
        assume(all(isinstance(v, str | int | float) for v in form.values()))
    if key in JOB_STARTING:
        with no_work(sqlite_world.svc.jobs):
            response = sqlite_world.client.request(**kwargs)
    else:
        response = sqlite_world.client.request(**kwargs)
    assert response.status_code < 500, (label, response.status_code, response.text[:500])
