"""`POST /api/datasets/{id}/search`: the quotes a question would get, with scores and where they came from."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from kb.auth import Principal, require_full_access
from kb.retrieval import Quote
from kb.services.search import DEFAULT_LIMIT, SearchResult, search_datasets

router = APIRouter(prefix="/api", tags=["search"])


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(description="The question or words to search for.")
    mode: str = Field(default="hybrid", description="vector | fulltext | hybrid")
    limit: int = Field(default=DEFAULT_LIMIT, description="At most this many quotes (1-100).")
    min_score: float = Field(default=0.0, description="Drop quotes scoring below this (0..1, see the README).")
    max_tokens: int | None = Field(default=None, description="Quote text budget in the chat model's tokens.")
    rerank: bool = Field(default=False, description="Reorder with the configured cross-encoder (KB_RERANK_MODEL).")


class QuotePublic(BaseModel):
    chunk_id: int
    collection_id: int
    dataset_id: int
    source: str
    q: str
    a: str
    score: float
    page: int | None
    heading: str
    sources: list[str]
    ranks: dict[str, int]
    scores: dict[str, float]

    @classmethod
    def of(cls, quote: Quote) -> QuotePublic:
        return cls(
            chunk_id=quote.chunk_id,
            collection_id=quote.collection_id,
            dataset_id=quote.dataset_id,
            source=quote.source,
            q=quote.q,
            a=quote.a,
            score=round(quote.score, 6),
            page=quote.page,
            heading=quote.heading,
            sources=list(quote.sources),
            ranks=quote.ranks,
            scores={name: round(value, 6) for name, value in quote.scores.items()},
        )


class SearchResponse(BaseModel):
    results: list[QuotePublic]
    mode: str
    timings: dict[str, float]
    warnings: list[str]

    @classmethod
    def of(cls, result: SearchResult) -> SearchResponse:
        return cls(
            results=[QuotePublic.of(q) for q in result.quotes],
            mode=result.mode,
            timings=result.timings,
            warnings=result.warnings,
        )


@router.post("/datasets/{dataset_id}/search", response_model=SearchResponse)
def search_dataset(
    dataset_id: int, body: SearchRequest, request: Request, _: Principal = Depends(require_full_access)
) -> SearchResponse:
    result = search_datasets(
        request.app.state,
        [dataset_id],
        body.query,
        mode=body.mode,
        limit=body.limit,
        min_score=body.min_score,
        max_tokens=body.max_tokens,
        rerank=body.rerank,
    )
    return SearchResponse.of(result)
