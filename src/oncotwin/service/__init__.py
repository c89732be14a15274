"""The clinical service: REST API (FastAPI), authentication, consent, audit, dashboard.

``create_app(Settings(db_url=...))`` builds the ASGI app; ``oncotwin serve`` runs it.
"""

from oncotwin.service.app import create_app
from oncotwin.service.settings import Settings

__all__ = ["Settings", "create_app"]
