"""FastAPI dependencies as `Annotated` aliases: a route names what it needs, once, by type."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from kb.http.security.auth import require_admin, require_full_access, require_principal
from kb.ml.registry import ModelRegistry, get_registry
from kb.principal import Principal
from kb.runtime import Runtime


def app_registry(state) -> ModelRegistry:
    """The app's registry, created from its settings on first use unless one was given to `create_app`."""
    if getattr(state, "registry", None) is None:
        state.registry = get_registry(state.settings)
    return state.registry


def app_runtime(app) -> Runtime:
    """The app's runtime (its settings, database and model registry), built on first use."""
    state = app.state
    if getattr(state, "runtime", None) is None:
        state.runtime = Runtime(state.settings, state.db, app_registry(state))
    return state.runtime


def runtime(request: Request) -> Runtime:
    """Dependency: the runtime of the app serving the request."""
    return app_runtime(request.app)


RuntimeDep = Annotated[Runtime, Depends(runtime)]
PrincipalDep = Annotated[Principal, Depends(require_principal)]
FullAccessDep = Annotated[Principal, Depends(require_full_access)]
AdminDep = Annotated[Principal, Depends(require_admin)]
