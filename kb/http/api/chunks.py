"""Chunks: list a collection's chunks, add a manual Q/A pair to a dataset, edit and delete chunks."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Response

from kb.http.deps import RuntimeDep
from kb.http.security.auth import require_full_access
from kb.schemas import ChunkCreate, ChunkPage, ChunkPublic, ChunkUpdate
from kb.services import chunks as service

router = APIRouter(prefix="/api", tags=["chunks"], dependencies=[Depends(require_full_access)])


def _public(record) -> ChunkPublic:
    return ChunkPublic.model_validate(record, from_attributes=True)


@router.get("/collections/{collection_id}/chunks", response_model=ChunkPage)
def list_chunks(
    collection_id: int,
    rt: RuntimeDep,
    offset: int = Query(0, ge=0),
    limit: int = Query(50, ge=1, le=500),
    q: str | None = Query(None, max_length=500, description="Only chunks whose text or answer contains this."),
) -> ChunkPage:
    records, total = service.list_chunks(rt, collection_id, offset=offset, limit=limit, contains=q)
    return ChunkPage(items=[_public(r) for r in records], total=total, offset=offset, limit=limit)


@router.post("/datasets/{dataset_id}/chunks", status_code=201, response_model=ChunkPublic)
def add_chunk(dataset_id: int, data: ChunkCreate, rt: RuntimeDep) -> ChunkPublic:
    return _public(service.add_manual_chunk(rt, dataset_id, data))


@router.patch("/chunks/{chunk_id}", response_model=ChunkPublic)
def update_chunk(chunk_id: int, data: ChunkUpdate, rt: RuntimeDep) -> ChunkPublic:
    return _public(service.update_chunk(rt, chunk_id, data))


@router.delete("/chunks/{chunk_id}", status_code=204)
def delete_chunk(chunk_id: int, rt: RuntimeDep) -> Response:
    service.delete_chunk(rt, chunk_id)
    return Response(status_code=204)
