"""`create_app(settings)`: the one FastAPI application serving pages, `/api` and `/v1`."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import Protocol

import anyio
from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles

from kb import __version__
from kb.config import Settings
from kb.db.engine import Database
from kb.http.api import (
    apps,
    chats,
    chunks,
    collections,
    datasets,
    evals,
    health,
    keys,
    openai_chat,
    openai_embeddings,
    openai_models,
    search,
    share,
)
from kb.http.api.errors import install_error_handlers
from kb.http.api.usage_log import UsageLogMiddleware
from kb.http.deps import app_registry, app_runtime
from kb.http.pages import admin as admin_pages
from kb.http.pages import app_logs as app_log_pages
from kb.http.pages import app_sharing as app_sharing_pages
from kb.http.pages import apps as app_pages
from kb.http.pages import auth as auth_pages
from kb.http.pages import chat as chat_pages
from kb.http.pages import chunks as chunk_pages
from kb.http.pages import collections as collection_pages
from kb.http.pages import datasets as dataset_pages
from kb.http.pages import evals as eval_pages
from kb.http.pages import keys as key_pages
from kb.http.pages import learn
from kb.http.pages import model_status as model_pages
from kb.http.pages import search as search_pages
from kb.http.pages import share as share_pages
from kb.http.pages.templating import WEB_DIR
from kb.http.security.auth import LoginRequired, redirect_to_login
from kb.http.security.body_limit import BodyLimitMiddleware
from kb.http.security.csrf import csrf_protect
from kb.http.security.headers import install_security_headers
from kb.http.security.ratelimit import RateLimits
from kb.http.security.session import SessionMiddleware
from kb.ml.registry import ModelRegistry, get_registry
from kb.runtime import Runtime
from kb.services import admin as admin_service
from kb.services.app_chat import app_chat

log = logging.getLogger(__name__)


# In the order their routes are matched.
ROUTERS = (
    health,
    openai_models,
    learn,
    auth_pages,
    admin_pages,
    app_sharing_pages,
    app_log_pages,
    app_pages,
    key_pages,
    model_pages,
    chat_pages,
    share_pages,
    share,
    openai_chat,
    openai_embeddings,
    keys,
    datasets,
    collections,
    chunks,
    search,
    evals,
    dataset_pages,  # before collection_pages: /admin/datasets/new is not a dataset id
    collection_pages,
    chunk_pages,
    search_pages,
    eval_pages,
    apps,
    chats,
)


class Background(Protocol):
    """Work that runs beside the server for its whole life (the ingestion worker)."""

    def start(self) -> None: ...

    def shutdown(self) -> None: ...


def create_app(
    settings: Settings | None = None,
    *,
    db: Database | None = None,
    registry: ModelRegistry | None = None,
    worker: Callable[[Runtime], Background] | None = None,
) -> FastAPI:
    """Build the app; `db` and `registry` may be passed in (tests), else they come from settings at start-up.

    `worker` builds a background job runner (the ingestion worker, `kb serve` without `--no-worker`) that
    runs in threads of this process from start-up to shutdown.
    """
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if getattr(app.state, "db", None) is None:
            app.state.db = Database.from_settings(settings)
        registry = app_registry(app.state)  # reads the model list (a bad models file stops start-up)
        # Models load on first use; the default chat model's file is assembled and verified once per machine,
        # beside the running server.
        threading.Thread(target=registry.prepare_chat_file, name="kb-model-file", daemon=True).start()
        await anyio.to_thread.run_sync(admin_service.prepare, app_runtime(app))
        background = worker(app_runtime(app)) if worker is not None else None
        if background is not None:
            background.start()
        app.state.worker = background
        yield
        if background is not None:
            await anyio.to_thread.run_sync(background.shutdown)
        app.state.db.dispose()

    # csrf_protect runs before every route: see kb/pages/csrf.py for who must send the token.
    app = FastAPI(title="kb", version=__version__, lifespan=lifespan, dependencies=[Depends(csrf_protect)])
    app.state.settings = settings
    app.state.db = db
    app.state.registry = registry or get_registry(settings)  # models load on first use
    app.state.rate_limits = RateLimits.from_settings(settings)
    app.state.app_chat = app_chat  # kb.services.gateway.AppChat: answering from an app's knowledge bases
    install_error_handlers(app)
    app.add_exception_handler(LoginRequired, redirect_to_login)
    app.add_middleware(UsageLogMiddleware)
    app.add_middleware(SessionMiddleware)
    install_security_headers(app, settings.cors_origins)
    # Outermost: no part of the app reads a byte of a body over its route's limit.
    app.add_middleware(
        BodyLimitMiddleware, request_limit=settings.max_request_bytes, upload_limit=settings.max_upload_bytes
    )
    app.mount("/static", StaticFiles(directory=str(WEB_DIR / "static")), name="static")
    for module in ROUTERS:
        app.include_router(module.router)
    return app
