"""`POST /api/datasets/{id}/search`: the quotes a question would get, with scores and where they came from."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from kb.http.deps import runtime
from kb.http.security.auth import require_full_access
from kb.schemas import SearchResponse
from kb.services.search import DEFAULT_LIMIT, search_datasets

router = APIRouter(prefix="/api", tags=["search"], dependencies=[Depends(require_full_access)])


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(description="The question or words to search for.")
    mode: str = Field(default="hybrid", description="vector | fulltext | hybrid")
    limit: int = Field(default=DEFAULT_LIMIT, description="At most this many quotes (1-100).")
    min_score: float = Field(default=0.0, description="Drop quotes scoring below this (0..1, see the README).")
    max_tokens: int | None = Field(default=None, description="Quote text budget in the chat model's tokens.")
    rerank: bool = Field(default=False, description="Reorder with the configured cross-encoder (KB_RERANK_MODEL).")


@router.post("/datasets/{dataset_id}/search", response_model=SearchResponse)
def search_dataset(dataset_id: int, body: SearchRequest, request: Request) -> SearchResponse:
    result = search_datasets(
        runtime(request),
        [dataset_id],
        body.query,
        mode=body.mode,
        limit=body.limit,
        min_score=body.min_score,
        max_tokens=body.max_tokens,
        rerank=body.rerank,
    )
    return SearchResponse.of(result)
