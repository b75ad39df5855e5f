"""Admin pages for evaluation: a dataset's sets and runs, one set (items, candidates, start a run), one run
(progress, totals, per-question results) and two runs compared."""

from __future__ import annotations

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, Response

from kb.errors import KBError
from kb.http.deps import RuntimeDep
from kb.http.pages.admin import render_admin
from kb.http.pages.eval_chart import runs_chart
from kb.http.pages.forms import path_for, see_other
from kb.http.security.auth import require_admin
from kb.runtime import Runtime
from kb.services import eval_runs as run_service
from kb.services import evals as service
from kb.services.apps import list_apps
from kb.services.datasets import get_dataset

router = APIRouter(tags=["pages"], include_in_schema=False, dependencies=[Depends(require_admin)])

SECTION = "admin_datasets"
PAGE_SIZE = 50


def _answers(text: str) -> list[str]:
    return [line.strip() for line in text.replace("|", "\n").splitlines() if line.strip()]


def _sets_page(request: Request, rt: Runtime, dataset_id: int, error: str | None = None) -> HTMLResponse:
    context = {
        "dataset": get_dataset(rt, dataset_id),
        "sets": service.list_sets(rt, dataset_id),
        "runs": run_service.list_runs(rt, dataset_id=dataset_id),
        "error": error,
        "tab": "evals",
    }
    return render_admin(request, "admin/eval_sets.html", context, section=SECTION, status_code=400 if error else 200)


@router.get("/admin/datasets/{dataset_id}/evals", name="admin_eval_sets")
def eval_sets_page(request: Request, dataset_id: int, rt: RuntimeDep) -> HTMLResponse:
    return _sets_page(request, rt, dataset_id)


@router.post("/admin/datasets/{dataset_id}/evals", name="admin_eval_set_create")
def create_eval_set(request: Request, dataset_id: int, rt: RuntimeDep, name: str = Form("")) -> Response:
    try:
        record = service.create_set(rt, dataset_id, name)
    except KBError as exc:
        return _sets_page(request, rt, dataset_id, exc.message)
    return see_other(path_for(request, "admin_eval_set", set_id=record.id))


def set_page(request: Request, rt: Runtime, set_id: int, *, report=None, error=None, offset: int = 0) -> HTMLResponse:
    """The set: its items, candidates to review, the run form and its runs; an upload's report when there is one."""
    target = service.get_set(rt, set_id)
    items, total = service.list_items(rt, set_id, offset=offset, limit=PAGE_SIZE)
    runs = run_service.list_runs(rt, set_id=set_id)
    latest = next((r for r in runs if r.status == "done"), None)
    missing = {r.item_id for r in run_service.run_results(rt, latest.id) if not r.in_corpus} if latest else set()
    context = {
        "dataset": get_dataset(rt, target.dataset_id),
        "set": target,
        "items": items,
        "total": total,
        "offset": offset,
        "page_size": PAGE_SIZE,
        "missing": missing,
        "candidates": service.list_candidates(rt, set_id),
        "apps": [a for a in list_apps(rt) if target.dataset_id in a.dataset_ids],
        "runs": runs,
        "report": report,
        "error": error,
        "tab": "evals",
    }
    status = 400 if error else 200
    return render_admin(request, "admin/eval_set.html", context, section=SECTION, status_code=status)


@router.get("/admin/evals/{set_id}", name="admin_eval_set")
def eval_set_page(request: Request, set_id: int, rt: RuntimeDep, offset: int = Query(0, ge=0)) -> HTMLResponse:
    return set_page(request, rt, set_id, offset=offset)


@router.post("/admin/evals/{set_id}/upload", name="admin_eval_upload")
async def upload_items(request: Request, set_id: int, rt: RuntimeDep, file: UploadFile = File(...)) -> Response:
    content = await file.read(service.MAX_FILE_BYTES + 1)
    try:
        report = service.import_items(rt, set_id, file.filename or "", content)
    except KBError as exc:
        return set_page(request, rt, set_id, error=exc.message)
    return set_page(request, rt, set_id, report=report)


@router.post("/admin/evals/{set_id}/items", name="admin_eval_item_add")
def add_item(
    request: Request,
    set_id: int,
    rt: RuntimeDep,
    question: str = Form(""),
    answers: str = Form(""),
    source: str = Form(""),
) -> Response:
    try:
        service.add_item(rt, set_id, question, _answers(answers), source or None)
    except KBError as exc:
        return set_page(request, rt, set_id, error=exc.message)
    return see_other(path_for(request, "admin_eval_set", set_id=set_id))


@router.post("/admin/evals/{set_id}/sample", name="admin_eval_sample")
def sample_pairs(request: Request, set_id: int, rt: RuntimeDep, count: int = Form(50)) -> Response:
    try:
        service.sample_qa_pairs(rt, set_id, count)
    except KBError as exc:
        return set_page(request, rt, set_id, error=exc.message)
    return see_other(path_for(request, "admin_eval_set", set_id=set_id))


@router.post("/admin/evals/{set_id}/collect", name="admin_eval_collect")
def collect_feedback(request: Request, set_id: int, rt: RuntimeDep) -> Response:
    service.collect_rated_answers(rt, set_id)
    return see_other(path_for(request, "admin_eval_set", set_id=set_id))


@router.post("/admin/eval-items/{item_id}/approve", name="admin_eval_item_approve")
def approve_item(request: Request, item_id: int, rt: RuntimeDep, answers: str = Form("")) -> Response:
    item = service.get_item(rt, item_id)
    try:
        service.approve_candidate(rt, item_id, _answers(answers))
    except KBError as exc:
        return set_page(request, rt, item.set_id, error=exc.message)
    return see_other(path_for(request, "admin_eval_set", set_id=item.set_id))


@router.post("/admin/eval-items/{item_id}/delete", name="admin_eval_item_delete")
def delete_item(request: Request, item_id: int, rt: RuntimeDep) -> Response:
    item = service.delete_item(rt, item_id)
    return see_other(path_for(request, "admin_eval_set", set_id=item.set_id))


@router.post("/admin/evals/{set_id}/runs", name="admin_eval_run_start")
def start_run(
    request: Request,
    set_id: int,
    rt: RuntimeDep,
    mode: str = Form("hybrid"),
    limit: int = Form(5),
    min_score: float = Form(0.0),
    rerank: bool = Form(False),
    app_id: str = Form(""),
) -> Response:
    app = int(app_id) if app_id.isdigit() else None
    config = run_service.RunConfig(mode=mode, limit=limit, min_score=min_score, rerank=rerank, app_id=app)
    try:
        run = run_service.start_run(rt, set_id, config)
    except KBError as exc:
        return set_page(request, rt, set_id, error=exc.message)
    return see_other(path_for(request, "admin_eval_run", run_id=run.id))


@router.get("/admin/eval-runs/{run_id}", name="admin_eval_run")
def run_page(request: Request, run_id: int, rt: RuntimeDep) -> HTMLResponse:
    run = run_service.get_run(rt, run_id)
    context = {
        "dataset": get_dataset(rt, run.dataset_id),
        "run": run,
        "results": run_service.run_results(rt, run_id) if run.finished else [],
        "others": [r for r in run_service.list_runs(rt, set_id=run.set_id) if r.id != run.id and r.status == "done"],
        "tab": "evals",
    }
    return render_admin(request, "admin/eval_run.html", context, section=SECTION)


@router.post("/admin/eval-runs/{run_id}/cancel", name="admin_eval_run_cancel")
def cancel_run(request: Request, run_id: int, rt: RuntimeDep) -> Response:
    try:
        run_service.cancel_run(rt, run_id)
    except KBError:
        pass  # it finished meanwhile; the run page says how
    return see_other(path_for(request, "admin_eval_run", run_id=run_id))


@router.get("/admin/eval-runs/{run_a}/compare", name="admin_eval_compare")
def compare_page(request: Request, run_a: int, rt: RuntimeDep, b: int = Query(...)) -> HTMLResponse:
    comparison = run_service.compare_runs(rt, run_a, b)
    context = {
        "dataset": get_dataset(rt, comparison.a.dataset_id),
        "c": comparison,
        "chart": runs_chart(run_service.list_runs(rt, set_id=comparison.a.set_id)),
        "tab": "evals",
    }
    return render_admin(request, "admin/eval_compare.html", context, section=SECTION)
