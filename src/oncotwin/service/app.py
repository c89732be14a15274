"""The clinical service: ``create_app(settings)`` builds the FastAPI app (API + dashboard).

Run it with ``oncotwin serve --db URL`` (uvicorn) or any ASGI server. The OpenAPI schema is at
``/openapi.json`` and interactive docs at ``/docs``. See docs/service.md.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from .. import __version__
from ..store import Store
from ..store.audit import AuditLog
from ..store.security import Security
from . import errors
from .auth import ServiceState
from .jobs import JobRunner
from .routers import admin, auth, fhir, jobs, patients, research
from .settings import Settings

log = logging.getLogger("oncotwin.service")
WEB = Path(str(resources.files("oncotwin") / "web"))
#: Routes anyone may call (everything else needs a token; tests check both lists).
PUBLIC_ROUTES = frozenset({
    ("GET", "/"), ("GET", "/api/health"), ("POST", "/api/auth/token"),
    ("GET", "/web/vendor/plotly.min.js"),
})  # fmt: skip


def plotly_js() -> Path:
    """plotly.min.js from the installed plotly package (served locally: no CDN)."""
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def create_app(settings: Settings | None = None) -> FastAPI:
    """The service app on the store named by `settings` (default: from the environment).

    Args:
        settings: database, secrets and limits (see :class:`Settings`).

    Raises:
        StoreError: the store cannot be opened or migrated.
    """
    settings = settings or Settings.from_env()
    store = Store(settings.db_url)
    security, audit = Security(store), AuditLog(store)

    def job_finished(job_id: int, status: str) -> None:
        job = security.job(job_id)
        role = security.user(job.created_by).role
        audit.append(actor=job.created_by, role=role, action="compute",
                     resource=f"job {job.kind}", patient_id=job.patient_id,
                     purpose="care" if job.patient_id else role, outcome=status,
                     detail={"job": job_id})  # fmt: skip

    runner = JobRunner(security, settings.job_workers, on_finish=job_finished)
    svc = ServiceState(settings, store, security, audit, runner)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        runner.shutdown()
        store.close()

    app = FastAPI(
        title="oncotwin clinical service", version=__version__, lifespan=lifespan,
        description="Digital twins of cancer patients for care teams and researchers: "
        "patients, events, twins, forecasts, consent, audit, research exports.",
    )  # fmt: skip
    app.state.svc = svc
    errors.install(app)
    for r in (auth, patients, jobs, research, admin, fhir):
        app.include_router(r.router)

    @app.middleware("http")
    async def access_log(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        # Route templates only: URLs hold patient ids, bodies hold health data.
        t0 = time.perf_counter()
        response = await call_next(request)
        route = getattr(request.scope.get("route"), "path", "-")
        log.info("%s %s %d %.1f ms", request.method, route, response.status_code,
                 1000 * (time.perf_counter() - t0))  # fmt: skip
        return response

    @app.get("/api/health", tags=["meta"], summary="Liveness")
    def health() -> dict[str, Any]:
        """Service status and schema revision (no data)."""
        return {"status": "ok", "version": __version__, "schema": store.schema_revision()}

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/web/index.html")

    @app.get("/web/vendor/plotly.min.js", include_in_schema=False)
    def plotly_bundle() -> FileResponse:
        return FileResponse(plotly_js(), media_type="text/javascript")

    app.mount("/web", StaticFiles(directory=WEB, html=True), name="web")
    app.add_middleware(errors.SizeLimit, max_bytes=settings.max_request_bytes)
    return app
