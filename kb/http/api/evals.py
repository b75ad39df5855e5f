"""Evaluation sets and runs: `POST /api/datasets/{id}/evals`, `POST /api/evals/{id}/runs`, `GET /api/eval-runs/{id}`,
with listing, item upload, cancel and comparison."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import UploadFile

from kb.errors import BadRequest
from kb.http.api.uploads import check_declared_length, read_json, read_multipart
from kb.http.deps import RuntimeDep
from kb.http.security.auth import require_full_access
from kb.services import eval_runs as run_service
from kb.services import evals as service
from kb.services.evals import MAX_FILE_BYTES, ImportReport

router = APIRouter(prefix="/api", tags=["evaluation"], dependencies=[Depends(require_full_access)])


class EvalSetPublic(BaseModel):
    id: int
    dataset_id: int
    name: str
    description: str
    item_count: int
    candidate_count: int
    created_at: datetime


class LineProblem(BaseModel):
    line: int
    message: str


class ImportReportPublic(BaseModel):
    added: int
    errors: list[LineProblem]
    not_in_documents: list[LineProblem] = Field(description="Added items whose answers occur in no chunk.")

    @classmethod
    def of(cls, report: ImportReport) -> ImportReportPublic:
        return cls.model_validate(asdict(report))


class EvalSetCreated(EvalSetPublic):
    report: ImportReportPublic | None = None


class EvalRunCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: str = Field(default="hybrid", description="vector | fulltext | hybrid")
    limit: int = Field(default=5, description="Quotes per question (5-100); hit@1, hit@5 and MRR@5 read the first 5.")
    min_score: float = 0.0
    rerank: bool = False
    app_id: int | None = Field(default=None, description="Answer with this app (end to end) instead of searching.")


class EvalRunPublic(BaseModel):
    id: int
    set_id: int
    set_name: str
    dataset_id: int
    config: dict[str, Any]
    status: str
    stage: str
    progress: int
    totals: dict[str, Any]
    coverage: dict[str, Any]
    error: str | None
    created_at: datetime
    finished_at: datetime | None
    results: list[dict[str, Any]] | None = None


def _set(record) -> EvalSetPublic:
    return EvalSetPublic.model_validate(record, from_attributes=True)


def _run(record, results=None) -> EvalRunPublic:
    public = EvalRunPublic.model_validate(record, from_attributes=True)
    if results is not None:
        public.results = [asdict(r) for r in results]
    return public


@router.post("/datasets/{dataset_id}/evals", status_code=201, response_model=EvalSetCreated)
async def create_eval_set(dataset_id: int, request: Request, rt: RuntimeDep) -> EvalSetCreated:
    """A new set: `{"name", "description", "items": [{"question", "answers", "source"}]}`; bad items are
    reported by position (1-based) and skipped, the good ones kept."""
    check_declared_length(request, MAX_FILE_BYTES)
    body = await read_json(request, MAX_FILE_BYTES)
    if not isinstance(body, dict):
        raise BadRequest('send a JSON object: {"name": ..., "items": [...]}', code="invalid_body")
    items = body.get("items") or []
    if not isinstance(items, list):
        raise BadRequest("items must be a list of objects", code="invalid_items")
    record = await run_in_threadpool(
        service.create_set, rt, dataset_id, str(body.get("name") or ""), str(body.get("description") or "")
    )
    created = EvalSetCreated(**_set(record).model_dump())
    if items:
        lines = "\n".join(json.dumps(item, ensure_ascii=False) for item in items).encode()
        report = await run_in_threadpool(service.import_items, rt, record.id, "items.jsonl", lines)
        created = EvalSetCreated(
            **_set(service.get_set(rt, record.id)).model_dump(), report=ImportReportPublic.of(report)
        )
    return created


@router.get("/datasets/{dataset_id}/evals", response_model=list[EvalSetPublic])
def list_eval_sets(dataset_id: int, rt: RuntimeDep) -> list[EvalSetPublic]:
    return [_set(r) for r in service.list_sets(rt, dataset_id)]


@router.get("/evals/{set_id}", response_model=EvalSetPublic)
def get_eval_set(set_id: int, rt: RuntimeDep) -> EvalSetPublic:
    return _set(service.get_set(rt, set_id))


@router.delete("/evals/{set_id}", status_code=204)
def delete_eval_set(set_id: int, rt: RuntimeDep) -> Response:
    service.delete_set(rt, set_id)
    return Response(status_code=204)


@router.post("/evals/{set_id}/items", response_model=ImportReportPublic)
async def upload_eval_items(set_id: int, request: Request, rt: RuntimeDep) -> ImportReportPublic:
    """Add a JSONL or CSV file (multipart field `file`) to the set; each refused line is named with its number."""
    check_declared_length(request, MAX_FILE_BYTES)
    form = await read_multipart(request, MAX_FILE_BYTES)
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise BadRequest("attach the file as the multipart field 'file'", code="missing_file")
        content = await upload.read()
        report = await run_in_threadpool(service.import_items, rt, set_id, upload.filename or "", content)
    finally:
        await form.close()
    return ImportReportPublic.of(report)


@router.post("/evals/{set_id}/runs", status_code=202, response_model=EvalRunPublic)
def start_eval_run(set_id: int, body: EvalRunCreate, rt: RuntimeDep) -> EvalRunPublic:
    """Queue a run; follow it with `GET /api/eval-runs/{id}` (status, stage, progress, then totals)."""
    return _run(run_service.start_run(rt, set_id, run_service.RunConfig(**body.model_dump())))


@router.get("/evals/{set_id}/runs", response_model=list[EvalRunPublic])
def list_eval_runs(set_id: int, rt: RuntimeDep) -> list[EvalRunPublic]:
    service.get_set(rt, set_id)
    return [_run(r) for r in run_service.list_runs(rt, set_id=set_id)]


@router.get("/eval-runs/{run_id}", response_model=EvalRunPublic)
def get_eval_run(run_id: int, rt: RuntimeDep, results: bool = Query(False)) -> EvalRunPublic:
    """The run's state and totals; `?results=true` adds each item's ranks, quotes, reply and latency."""
    return _run(run_service.get_run(rt, run_id), run_service.run_results(rt, run_id) if results else None)


@router.post("/eval-runs/{run_id}/cancel", response_model=EvalRunPublic)
def cancel_eval_run(run_id: int, rt: RuntimeDep) -> EvalRunPublic:
    return _run(run_service.cancel_run(rt, run_id))


@router.get("/eval-runs/{run_a}/compare/{run_b}")
def compare_eval_runs(run_a: int, run_b: int, rt: RuntimeDep) -> dict[str, Any]:
    """B against A: each total's difference with a 95% paired bootstrap interval, and the questions that changed."""
    comparison = run_service.compare_runs(rt, run_a, run_b)
    return {
        "a": _run(comparison.a).model_dump(mode="json"),
        "b": _run(comparison.b).model_dump(mode="json"),
        "paired": comparison.paired,
        "differences": {name: asdict(d) for name, d in comparison.differences.items()},
        "better": [asdict(c) for c in comparison.better],
        "worse": [asdict(c) for c in comparison.worse],
    }
