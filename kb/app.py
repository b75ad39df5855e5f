"""`create_app(settings)`: the one FastAPI application serving pages, `/api` and `/v1`."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.staticfiles import StaticFiles

from kb import __version__
from kb.api import chunks, collections, datasets, health, openai_models, search
from kb.api.errors import install_error_handlers
from kb.config import Settings
from kb.db import Database
from kb.ml.registry import ModelRegistry
from kb.pages import learn
from kb.pages.templating import WEB_DIR
from kb.runtime import Runtime, app_registry

log = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None,
    *,
    db: Database | None = None,
    registry: ModelRegistry | None = None,
    run_worker: bool = False,
) -> FastAPI:
    """Build the app; `db` and `registry` may be passed in (tests), else they come from settings at start-up.

    With `run_worker`, an ingestion worker runs in a thread of this process (`kb serve` without `--no-worker`).
    """
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if getattr(app.state, "db", None) is None:
            app.state.db = Database.from_settings(settings)
        app_registry(app.state)  # reads the model list (a bad models file stops start-up); models load on first use
        worker = None
        if run_worker:
            from kb.worker import Worker

            worker = Worker(Runtime(settings, app.state.db, app.state.registry))
            worker.start()
        app.state.worker = worker
        yield
        if worker is not None:
            await run_in_threadpool(worker.shutdown)
        app.state.db.dispose()

    app = FastAPI(title="kb", version=__version__, lifespan=lifespan)
    app.state.settings = settings
    app.state.db = db
    app.state.registry = registry
    install_error_handlers(app)
    app.mount("/static", StaticFiles(directory=str(WEB_DIR / "static")), name="static")
    app.include_router(health.router)
    app.include_router(openai_models.router)
    app.include_router(datasets.router)
    app.include_router(collections.router)
    app.include_router(chunks.router)
    app.include_router(search.router)
    app.include_router(learn.router)
    return app
