"""Admin search test for one dataset: the quotes a question would get, with scores and where they came from.

The page calls the same `search_datasets` as `POST /api/datasets/{id}/search`. It is a GET form:
searching changes nothing, and a test worth keeping can be bookmarked.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel

from kb.errors import KBError
from kb.http.deps import RuntimeDep
from kb.http.pages.admin import render_admin
from kb.http.pages.forms import form_float, form_int
from kb.http.security.auth import require_admin
from kb.rag.retrieval import MODES
from kb.runtime import Runtime
from kb.services import datasets as dataset_service
from kb.services.search import DEFAULT_LIMIT, SearchResult, search_datasets

router = APIRouter(tags=["pages"], include_in_schema=False, dependencies=[Depends(require_admin)])

SECTION = "admin_datasets"


class SearchForm(BaseModel):
    """The search test form as typed."""

    query: str = ""
    mode: str = "hybrid"
    limit: str = str(DEFAULT_LIMIT)
    min_score: str = "0"
    max_tokens: str = ""


def run_search(rt: Runtime, dataset_id: int, form: SearchForm) -> SearchResult:
    """Search the dataset with the form's settings; raises KBError for a value the search refuses."""
    return search_datasets(
        rt,
        [dataset_id],
        form.query,
        mode=form.mode,
        limit=form_int(form.limit, "Limit", DEFAULT_LIMIT),
        min_score=form_float(form.min_score, "Minimum score", 0.0),
        max_tokens=form_int(form.max_tokens, "Max tokens"),
    )


@router.get("/admin/datasets/{dataset_id}/search", name="admin_search")
def search_page(
    request: Request,
    dataset_id: int,
    form: Annotated[SearchForm, Query()],
    rt: RuntimeDep,
) -> HTMLResponse:
    dataset = dataset_service.get_dataset(rt, dataset_id)
    result, error, status = None, None, 200
    if form.query.strip():
        try:
            result = run_search(rt, dataset_id, form)
        except KBError as exc:
            error, status = exc.message, exc.status_code
    context = {"dataset": dataset, "form": form, "modes": MODES, "result": result, "error": error, "tab": "search"}
    return render_admin(request, "admin/search.html", context, section=SECTION, status_code=status)
