"""Collections: add sources to a dataset (files, pasted text, a link), follow their processing, delete, retry."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from pydantic import TypeAdapter, ValidationError
from starlette.datastructures import UploadFile

from kb.errors import BadRequest, UnsupportedMedia
from kb.http.api.errors import error_body
from kb.http.api.uploads import check_declared_length, read_json, read_multipart
from kb.http.deps import RuntimeDep
from kb.http.pages.forms import parse_separators
from kb.http.security.auth import require_full_access
from kb.runtime import Runtime
from kb.schemas import (
    CollectionCreate,
    CollectionPage,
    CollectionPublic,
    ErrorDetail,
    JobPublic,
    LinkSource,
    TextSource,
    UploadOutcome,
    UploadResult,
)
from kb.services import collections as service
from kb.services.chunk_preview import preview_chunks
from kb.services.collections import AddOutcome, Upload
from kb.services.originals import OriginalFile, original_file

router = APIRouter(prefix="/api", tags=["collections"], dependencies=[Depends(require_full_access)])

_SOURCE = TypeAdapter(CollectionCreate)
_MODES = ("chunk", "qa")
_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "file": {"type": "array", "items": {"type": "string", "format": "binary"}},
                        "mode": {"type": "string", "enum": list(_MODES)},
                    },
                    "required": ["file"],
                }
            },
            "application/json": {"schema": {"oneOf": [TextSource.model_json_schema(), LinkSource.model_json_schema()]}},
        },
    }
}


def _public(record, job=None) -> CollectionPublic:
    public = CollectionPublic.model_validate(asdict(record))
    if job is not None:
        public.job = JobPublic.model_validate(job, from_attributes=True)
    return public


def _outcome(outcome: AddOutcome) -> UploadOutcome:
    if outcome.error is not None:
        error = outcome.error
        detail = ErrorDetail(message=error.message, type=error.error_type, code=error.code, status=error.status_code)
        return UploadOutcome(name=outcome.name, error=detail)
    collection = outcome.collection
    return UploadOutcome(name=outcome.name, id=collection.id, status=collection.status, duplicate=outcome.duplicate)


def _respond(outcomes: list[AddOutcome]) -> JSONResponse:
    """202 when work was queued, 200 when every source was already there; an error status when none was accepted."""
    items = [_outcome(o) for o in outcomes]
    accepted = [o for o in outcomes if o.collection is not None]
    if not accepted:
        statuses = {o.error.status_code for o in outcomes if o.error is not None}
        status = statuses.pop() if len(statuses) == 1 else 422
        message = f"None of the {len(outcomes)} files could be added; each item says why."
        body = {
            **error_body(message, "invalid_request_error", "no_files_accepted"),
            "items": [i.model_dump() for i in items],
        }
        return JSONResponse(body, status_code=status)
    result = UploadResult(id=accepted[0].collection.id, items=items)
    status = 202 if any(not o.duplicate for o in accepted) else 200
    return JSONResponse(result.model_dump(mode="json"), status_code=status)


async def _add_files(rt: Runtime, dataset_id: int, request: Request) -> list[AddOutcome]:
    form = await read_multipart(request, rt.settings.max_upload_bytes)
    try:
        files = [value for key, value in form.multi_items() if key == "file" and isinstance(value, UploadFile)]
        mode = form.get("mode") or None
        if mode is not None and mode not in _MODES:
            raise BadRequest(f"mode must be 'chunk' or 'qa', not '{mode}'.", code="invalid_mode")
        if not files:
            raise BadRequest("Send the file in a multipart field named 'file'.", code="missing_file")
        uploads = [Upload(f.filename, f.file) for f in files]
        if len(uploads) == 1:  # a single file's refusal is the response itself
            return [await run_in_threadpool(service.add_file, rt, dataset_id, uploads[0], mode=mode)]
        return await run_in_threadpool(service.add_files, rt, dataset_id, uploads, mode=mode)
    finally:
        await form.close()


async def _add_json(rt: Runtime, dataset_id: int, request: Request) -> AddOutcome:
    payload = await read_json(request, rt.settings.max_upload_bytes)
    if not isinstance(payload, dict) or payload.get("type") not in ("text", "link"):
        raise BadRequest(
            'Send {"type": "text", "name": ..., "text": ...} or {"type": "link", "url": ...}, '
            "or upload files as multipart/form-data in a field named 'file'.",
            code="invalid_source",
        )
    try:
        source = _SOURCE.validate_python(payload)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from exc
    if isinstance(source, TextSource):
        return await run_in_threadpool(
            lambda: service.add_text(rt, dataset_id, name=source.name, text=source.text, mode=source.mode)
        )
    return await run_in_threadpool(
        lambda: service.add_link(rt, dataset_id, url=source.url, name=source.name, mode=source.mode)
    )


@router.post(
    "/datasets/{dataset_id}/collections",
    status_code=202,
    response_model=UploadResult,
    openapi_extra=_UPLOAD_BODY,
    summary="Add files (multipart 'file', several allowed), pasted text or a link; processed in the background",
)
async def add_collections(dataset_id: int, request: Request, rt: RuntimeDep) -> JSONResponse:
    check_declared_length(request, rt.settings.max_upload_bytes)
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        outcomes = await _add_files(rt, dataset_id, request)
    elif content_type.startswith("application/json"):
        outcomes = [await _add_json(rt, dataset_id, request)]
    else:
        raise UnsupportedMedia(
            "Upload files as multipart/form-data in a field named 'file', or send JSON "
            '{"type": "text", "name", "text"} or {"type": "link", "url"}.',
            code="unsupported_request_type",
        )
    return _respond(outcomes)


@router.post("/datasets/{dataset_id}/preview")
async def preview(dataset_id: int, request: Request, rt: RuntimeDep) -> JSONResponse:
    """The first chunks (with sizes) one file would make under the dataset's chunk settings, or the ones sent
    with it (`max_tokens`, `overlap`, `separators`, one per line); nothing is stored."""
    check_declared_length(request, rt.settings.max_upload_bytes)
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise UnsupportedMedia("Send the file as multipart/form-data in a field named 'file'.")
    form = await read_multipart(request, rt.settings.max_upload_bytes)
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise BadRequest("Send the file in a multipart field named 'file'.", code="missing_file")
        data = await upload.read()
        overrides = _chunk_overrides(form)
        result = await run_in_threadpool(preview_chunks, rt, dataset_id, data, upload.filename or "", overrides)
    finally:
        await form.close()
    return JSONResponse(asdict(result))


def _chunk_overrides(form) -> dict:
    """The chunk settings a form sends (blank fields keep the dataset's)."""
    overrides: dict = {}
    for name in ("max_tokens", "overlap"):
        value = str(form.get(name) or "").strip()
        if value:
            try:
                overrides[name] = float(value) if name == "overlap" else int(value)
            except ValueError as exc:
                raise BadRequest(f"{name} must be a number, not '{value}'.") from exc
    separators = parse_separators(str(form.get("separators") or ""))
    if separators:
        overrides["separators"] = separators
    return overrides


@router.get("/datasets/{dataset_id}/collections", response_model=CollectionPage)
def list_collections(
    dataset_id: int,
    rt: RuntimeDep,
    offset: int = Query(0, ge=0),
    limit: int = Query(50, ge=1, le=500),
    status: str | None = Query(None, description="Only collections in this status."),
) -> CollectionPage:
    records, total = service.list_collections(rt, dataset_id, offset=offset, limit=limit, status=status)
    return CollectionPage(items=[_public(r) for r in records], total=total, offset=offset, limit=limit)


@router.get("/collections/{collection_id}", response_model=CollectionPublic)
def get_collection(collection_id: int, rt: RuntimeDep) -> CollectionPublic:
    detail = service.get_collection(rt, collection_id)
    return _public(detail.collection, detail.job)


@router.get("/collections/{collection_id}/file", response_class=FileResponse)
def download_original(collection_id: int, rt: RuntimeDep) -> FileResponse:
    """The document's original file: a PDF opens in the browser (add `#page=N`), other types download."""
    return file_response(original_file(rt, collection_id))


def file_response(original: OriginalFile) -> FileResponse:
    """The stored file under its own name; only a PDF is shown inline (never HTML: it could run script here)."""
    disposition = "inline" if original.inline else "attachment"
    return FileResponse(
        original.path,
        media_type=original.content_type,
        filename=original.name,
        content_disposition_type=disposition,
        headers={"Cache-Control": "private, no-store"},
    )


@router.delete("/collections/{collection_id}", status_code=204)
def delete_collection(collection_id: int, rt: RuntimeDep) -> Response:
    service.delete_collection(rt, collection_id)
    return Response(status_code=204)


@router.post("/collections/{collection_id}/retry", status_code=202, response_model=CollectionPublic)
def retry_collection(collection_id: int, rt: RuntimeDep) -> CollectionPublic:
    return _public(service.retry_collection(rt, collection_id))
