"""Admin page of one dataset's collections: upload (via the JSON API, from collections.js), paste text,
import a link, the live status table, retry and delete.

Uploads go straight to `POST /api/datasets/{id}/collections` from the browser so each file gets an
upload progress bar; the table is refreshed from `GET /api/datasets/{id}/collections`. Everything
else here is a plain form that works without JavaScript.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ValidationError

from kb.errors import KBError
from kb.http.deps import RuntimeDep
from kb.http.pages.admin import render_admin
from kb.http.pages.forms import Refused, notice_text, path_for, see_other
from kb.http.security.auth import require_admin
from kb.runtime import Runtime
from kb.schemas import LinkSource, TextSource
from kb.services import collections as service
from kb.services import datasets as dataset_service
from kb.services.eval_runs import latest_run

router = APIRouter(tags=["pages"], include_in_schema=False, dependencies=[Depends(require_admin)])

SECTION = "admin_datasets"
PAGE_SIZE = 50
FINAL_STATUSES = ("ready", "error")
SOURCE_LABELS = {"text": "Text", "url": "Link", "name": "Name", "mode": "Processing"}


class SourceForm(BaseModel):
    """The paste-text and import-link forms (one of `text` or `url` is used)."""

    name: str = ""
    text: str = ""
    url: str = ""
    mode: str = ""


def collections_page(
    request: Request, rt: Runtime, dataset_id: int, *, offset: int = 0, refused: Refused | None = None
) -> HTMLResponse:
    """The dataset's collections page; a refused form (text, link, pair) comes back open, filled in, with its reason."""
    dataset = dataset_service.get_dataset(rt, dataset_id)
    collections, total = service.list_collections(rt, dataset_id, offset=offset, limit=PAGE_SIZE)
    context = {
        "dataset": dataset,
        "embedder_problem": dataset_service.embedder_problem(rt, dataset),
        "collections": collections,
        "total": total,
        "offset": offset,
        "page_size": PAGE_SIZE,
        "busy": any(c.status not in FINAL_STATUSES for c in collections),
        "default_mode": dataset.chunk_settings.get("mode", "chunk"),
        "notice": notice_text(request.query_params.get("notice")),
        "refused": refused,
        "tab": "collections",
        "last_run": latest_run(rt, dataset_id),
    }
    status = refused.status_code if refused else 200
    return render_admin(request, "admin/collections.html", context, section=SECTION, status_code=status)


@router.get("/admin/datasets/{dataset_id}", name="admin_dataset")
def dataset_page(
    request: Request,
    dataset_id: int,
    rt: RuntimeDep,
    offset: int = Query(0, ge=0),
) -> HTMLResponse:
    return collections_page(request, rt, dataset_id, offset=offset)


def _added(request: Request, dataset_id: int, outcome: service.AddOutcome) -> Response:
    notice = "source_duplicate" if outcome.duplicate else "source_queued"
    return see_other(path_for(request, "admin_dataset", dataset_id=dataset_id), notice=notice)


@router.post("/admin/datasets/{dataset_id}/text", name="admin_add_text")
def add_text(
    request: Request,
    dataset_id: int,
    form: Annotated[SourceForm, Form()],
    rt: RuntimeDep,
) -> Response:
    try:
        source = TextSource(type="text", name=form.name or "pasted text", text=form.text, mode=form.mode or None)
        outcome = service.add_text(rt, dataset_id, name=source.name, text=source.text, mode=source.mode)
    except (ValidationError, KBError) as exc:
        return collections_page(request, rt, dataset_id, refused=Refused.of("text", form, exc, SOURCE_LABELS))
    return _added(request, dataset_id, outcome)


@router.post("/admin/datasets/{dataset_id}/link", name="admin_add_link")
def add_link(
    request: Request,
    dataset_id: int,
    form: Annotated[SourceForm, Form()],
    rt: RuntimeDep,
) -> Response:
    try:
        source = LinkSource(type="link", url=form.url.strip(), name=form.name or None, mode=form.mode or None)
        outcome = service.add_link(rt, dataset_id, url=source.url, name=source.name, mode=source.mode)
    except (ValidationError, KBError) as exc:
        return collections_page(request, rt, dataset_id, refused=Refused.of("link", form, exc, SOURCE_LABELS))
    return _added(request, dataset_id, outcome)


@router.post("/admin/collections/{collection_id}/retry", name="admin_collection_retry")
def retry_collection(request: Request, collection_id: int, rt: RuntimeDep) -> Response:
    record = service.retry_collection(rt, collection_id)
    return see_other(path_for(request, "admin_dataset", dataset_id=record.dataset_id), notice="collection_retried")


@router.post("/admin/collections/{collection_id}/delete", name="admin_collection_delete")
def delete_collection(request: Request, collection_id: int, rt: RuntimeDep) -> Response:
    dataset_id = service.get_collection(rt, collection_id).collection.dataset_id
    service.delete_collection(rt, collection_id)
    return see_other(path_for(request, "admin_dataset", dataset_id=dataset_id), notice="collection_deleted")
