"""Admin page of one collection's chunks: page through, filter, edit (re-embedded on save), delete,
and add a hand-written Q/A pair to the dataset (also offered on the collections page).

Chunk text is document text: templates print it with Jinja's autoescaping only, never `|safe`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ValidationError

from kb.errors import KBError
from kb.http.deps import RuntimeDep
from kb.http.pages.admin import render_admin
from kb.http.pages.collections import collections_page
from kb.http.pages.forms import Refused, notice_text, path_for, see_other
from kb.http.security.auth import require_admin
from kb.runtime import Runtime
from kb.schemas import ChunkCreate, ChunkUpdate
from kb.services import chunks as service
from kb.services import collections as collection_service
from kb.services import datasets as dataset_service

router = APIRouter(tags=["pages"], include_in_schema=False, dependencies=[Depends(require_admin)])

SECTION = "admin_datasets"
PAGE_SIZE = 20
PAIR_LABELS = {"q": "Question", "a": "Answer"}


class PairForm(BaseModel):
    """A chunk's text and answer as typed, and the chunks page the form was on (none: the collections page)."""

    q: str = ""
    a: str = ""
    collection_id: int | None = None
    offset: int = 0
    filter: str = ""


class ChunkForm(PairForm):
    """The edit and delete forms, always on a chunks page."""

    collection_id: int


def chunks_page(
    request: Request,
    rt: Runtime,
    collection_id: int,
    *,
    offset: int = 0,
    contains: str = "",
    refused: Refused | None = None,
) -> HTMLResponse:
    """One page of the collection's chunks; a refused form is shown open with the user's text and the reason."""
    collection = collection_service.get_collection(rt, collection_id).collection
    dataset = dataset_service.get_dataset(rt, collection.dataset_id)
    chunks, total = service.list_chunks(rt, collection_id, offset=offset, limit=PAGE_SIZE, contains=contains)
    context = {
        "dataset": dataset,
        "collection": collection,
        "chunks": chunks,
        "total": total,
        "offset": offset,
        "page_size": PAGE_SIZE,
        "contains": contains,
        "refused": refused,
        "notice": notice_text(request.query_params.get("notice")),
        "tab": "collections",
    }
    status = refused.status_code if refused else 200
    return render_admin(request, "admin/chunks.html", context, section=SECTION, status_code=status)


@router.get("/admin/collections/{collection_id}/chunks", name="admin_chunks")
def collection_chunks(
    request: Request,
    collection_id: int,
    rt: RuntimeDep,
    offset: int = Query(0, ge=0),
    q: str = Query("", max_length=500),
) -> HTMLResponse:
    return chunks_page(request, rt, collection_id, offset=offset, contains=q.strip())


def _back(request: Request, collection_id: int, form: PairForm, notice: str) -> Response:
    path = path_for(request, "admin_chunks", collection_id=collection_id)
    return see_other(path, offset=form.offset or None, q=form.filter or None, notice=notice)


@router.post("/admin/chunks/{chunk_id}/edit", name="admin_chunk_edit")
def edit_chunk(
    request: Request,
    chunk_id: int,
    form: Annotated[ChunkForm, Form()],
    rt: RuntimeDep,
) -> Response:
    try:
        chunk = service.update_chunk(rt, chunk_id, ChunkUpdate(q=form.q, a=form.a))
    except (ValidationError, KBError) as exc:
        refused = Refused.of(f"edit-{chunk_id}", form, exc, PAIR_LABELS)
        return chunks_page(request, rt, form.collection_id, offset=form.offset, contains=form.filter, refused=refused)
    return _back(request, chunk.collection_id, form, "chunk_saved")


@router.post("/admin/chunks/{chunk_id}/delete", name="admin_chunk_delete")
def delete_chunk(
    request: Request,
    chunk_id: int,
    form: Annotated[ChunkForm, Form()],
    rt: RuntimeDep,
) -> Response:
    service.delete_chunk(rt, chunk_id)
    return _back(request, form.collection_id, form, "chunk_deleted")


@router.post("/admin/datasets/{dataset_id}/pairs", name="admin_add_pair")
def add_pair(
    request: Request,
    dataset_id: int,
    form: Annotated[PairForm, Form()],
    rt: RuntimeDep,
) -> Response:
    try:
        chunk = service.add_manual_chunk(rt, dataset_id, ChunkCreate(q=form.q, a=form.a))
    except (ValidationError, KBError) as exc:
        refused = Refused.of("pair", form, exc, PAIR_LABELS)
        if form.collection_id is None:
            return collections_page(request, rt, dataset_id, refused=refused)
        return chunks_page(request, rt, form.collection_id, offset=form.offset, contains=form.filter, refused=refused)
    return see_other(path_for(request, "admin_chunks", collection_id=chunk.collection_id), notice="pair_added")
