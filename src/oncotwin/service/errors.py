"""One place that turns oncotwin's exceptions into HTTP answers, and the request size limit.

============================  ====  =================================================
exception                     code  meaning
============================  ====  =================================================
NotFoundError                 404   no such patient, twin version, job, user, ...
DataError, ModelError,        422   the request's data cannot be used (what, where)
ScheduleError
SimulationError,              422   the computation failed for this input
CalibrationError
StoreError                    409   the database refused (duplicate, conflict)
any other OncotwinError       400
============================  ====  =================================================

Answers are ``{"detail": message, "error": exception class}``, or the FHIR OperationOutcome of
an exception that carries one (``exc.outcome``, a rejected Bundle). Messages name ids and fields,
never health data; nothing is logged from request bodies.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from ..errors import (
    CalibrationError,
    DataError,
    ModelError,
    NotFoundError,
    OncotwinError,
    ScheduleError,
    SimulationError,
    StoreError,
)

log = logging.getLogger("oncotwin.service")

STATUS: tuple[tuple[type[OncotwinError], int], ...] = (
    (NotFoundError, 404),
    (DataError, 422),
    (ModelError, 422),
    (ScheduleError, 422),
    (SimulationError, 422),
    (CalibrationError, 422),
    (StoreError, 409),
)


def status_of(exc: OncotwinError) -> int:
    """The HTTP status code of an oncotwin exception (first match in :data:`STATUS`)."""
    return next((code for cls, code in STATUS if isinstance(exc, cls)), 400)


def install(app: FastAPI) -> None:
    """Register the one exception handler of the app."""

    async def handler(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, OncotwinError)
        code = status_of(exc)
        # The exception class and route only: messages may hold ids, bodies never get logged.
        route = getattr(request.scope.get("route"), "path", "?")
        log.info("%s %s -> %d %s", request.method, route, code, type(exc).__name__)
        outcome = getattr(exc, "outcome", None)  # a FHIR import error carries its outcome
        if isinstance(outcome, dict) and outcome.get("resourceType") == "OperationOutcome":
            return JSONResponse(outcome, status_code=code, media_type="application/fhir+json")
        return JSONResponse({"detail": str(exc), "error": type(exc).__name__}, status_code=code)

    app.add_exception_handler(OncotwinError, handler)


class SizeLimit:
    """ASGI middleware: 413 for request bodies over `max_bytes` (declared or streamed).

    Args:
        app: the wrapped ASGI app.
        max_bytes: largest body accepted, bytes.
    """

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, int(max_bytes)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > self.max_bytes
            except ValueError:
                too_big = True
            if too_big:
                await self._reject(send)
                return
        seen = 0
        started = rejected = False

        async def counting_receive() -> Any:
            nonlocal seen, rejected
            if rejected:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes and not started:
                    # Answer 413 now; the app sees the client go away and its answer is dropped.
                    rejected = True
                    await self._reject(send)
                    return {"type": "http.disconnect"}
            return message

        async def tracking_send(message: Any) -> None:
            nonlocal started
            if rejected:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except Exception:
            if not rejected:
                raise

    async def _reject(self, send: Any) -> None:
        body = (b'{"detail":"request body too large (limit %d bytes)","error":"TooLarge"}'
                % self.max_bytes)  # fmt: skip
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})  # fmt: skip
        await send({"type": "http.response.body", "body": body})
