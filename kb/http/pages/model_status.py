"""Admin page for models: what is configured and loaded, and a test button for each."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse

from kb.http.deps import RuntimeDep
from kb.http.pages.admin import render_admin
from kb.http.security.auth import require_admin
from kb.runtime import Runtime
from kb.services.model_checks import ModelTrial, describe_models, try_model

router = APIRouter(tags=["pages"], include_in_schema=False, dependencies=[Depends(require_admin)])


def _models_page(request: Request, rt: Runtime, trial: ModelTrial | None = None) -> HTMLResponse:
    context = {
        "models": describe_models(rt.registry),
        "trial": trial,
        "models_file": rt.settings.models_file,
    }
    return render_admin(request, "admin/models.html", context, section="admin_models")


@router.get("/admin/models", name="admin_models")
def models_page(request: Request, rt: RuntimeDep) -> HTMLResponse:
    return _models_page(request, rt)


@router.post("/admin/models/test", name="admin_model_test")
def test_model(
    request: Request,
    kind: Annotated[str, Form()],
    name: Annotated[str, Form()],
    rt: RuntimeDep,
) -> HTMLResponse:
    """Run the model once (loading it first if needed) and show the outcome next to it."""
    return _models_page(request, rt, try_model(rt.registry, kind, name))
