"""`create_app(settings)`: the one FastAPI application serving pages, `/api` and `/v1`."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

import anyio
from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles

from kb import __version__
from kb.api import chunks, collections, datasets, health, keys, openai_chat, openai_embeddings, openai_models, search
from kb.api.errors import install_error_handlers
from kb.api.usage_log import UsageLogMiddleware
from kb.config import Settings
from kb.db import Database
from kb.ml.registry import ModelRegistry, get_registry
from kb.pages import learn
from kb.pages import admin as admin_pages
from kb.pages import auth as auth_pages
from kb.pages import chunks as chunk_pages
from kb.pages import collections as collection_pages
from kb.pages import datasets as dataset_pages
from kb.pages import search as search_pages
from kb.pages.csrf import csrf_protect
from kb.pages.headers import install_security_headers
from kb.pages.session import SessionMiddleware
from kb.pages.templating import WEB_DIR
from kb.runtime import Runtime
from kb.services import admin as admin_service

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
        await anyio.to_thread.run_sync(admin_service.prepare, app.state)
        worker = None
        if run_worker:
            from kb.worker import Worker

            worker = Worker(Runtime(settings, app.state.db, app.state.registry))
            worker.start()
        app.state.worker = worker
        yield
        if worker is not None:
            await anyio.to_thread.run_sync(worker.shutdown)
        app.state.db.dispose()

    # csrf_protect runs before every route: see kb/pages/csrf.py for who must send the token.
    app = FastAPI(title="kb", version=__version__, lifespan=lifespan, dependencies=[Depends(csrf_protect)])
    app.state.settings = settings
    app.state.db = db
    app.state.registry = registry or get_registry(settings)  # models load on first use
    app.state.app_chat = None  # kb.services.gateway.AppChat: answering from an app's knowledge bases
    install_error_handlers(app)
    app.add_exception_handler(admin_pages.LoginRequired, admin_pages.redirect_to_login)
    app.add_middleware(UsageLogMiddleware)
    app.add_middleware(SessionMiddleware)
    install_security_headers(app, settings.cors_origins)
    app.mount("/static", StaticFiles(directory=str(WEB_DIR / "static")), name="static")
    app.include_router(health.router)
    app.include_router(openai_models.router)
    app.include_router(datasets.router)
    app.include_router(collections.router)
    app.include_router(chunks.router)
    app.include_router(search.router)
    app.include_router(learn.router)
    app.include_router(auth_pages.router)
    app.include_router(admin_pages.router)
    app.include_router(dataset_pages.router)  # before collection_pages: /admin/datasets/new is not a dataset id
    app.include_router(collection_pages.router)
    app.include_router(chunk_pages.router)
    app.include_router(search_pages.router)
    app.include_router(openai_chat.router)
    app.include_router(openai_embeddings.router)
    app.include_router(keys.router)
    return app
