"""`create_app(settings)`: the one FastAPI application serving pages, `/api` and `/v1`."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from kb import __version__
from kb.api import health, openai_models
from kb.api.errors import install_error_handlers
from kb.config import Settings
from kb.db import Database
from kb.pages import learn
from kb.pages.templating import WEB_DIR

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, *, db: Database | None = None) -> FastAPI:
    """Build the app; `db` may be passed in (tests), else it is resolved from settings at start-up."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if getattr(app.state, "db", None) is None:
            app.state.db = Database.from_settings(settings)
        yield
        app.state.db.dispose()

    app = FastAPI(title="kb", version=__version__, lifespan=lifespan)
    app.state.settings = settings
    app.state.db = db
    install_error_handlers(app)
    app.mount("/static", StaticFiles(directory=str(WEB_DIR / "static")), name="static")
    app.include_router(health.router)
    app.include_router(openai_models.router)
    app.include_router(learn.router)
    return app
