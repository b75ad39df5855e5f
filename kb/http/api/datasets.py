"""`/api/datasets`: create, list, read, change and delete knowledge bases."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from kb.http.deps import RuntimeDep
from kb.http.security.auth import require_full_access
from kb.schemas import DatasetCreate, DatasetList, DatasetPublic, DatasetReembed, DatasetUpdate, ReembedPublic
from kb.services import datasets as service
from kb.services import reembed as reembedding

router = APIRouter(prefix="/api/datasets", tags=["datasets"], dependencies=[Depends(require_full_access)])


def _public(record) -> DatasetPublic:
    return DatasetPublic.model_validate(record, from_attributes=True)


@router.post("", status_code=201, response_model=DatasetPublic)
def create_dataset(data: DatasetCreate, rt: RuntimeDep) -> DatasetPublic:
    return _public(service.create_dataset(rt, data))


@router.get("", response_model=DatasetList)
def list_datasets(rt: RuntimeDep) -> DatasetList:
    return DatasetList(items=[_public(r) for r in service.list_datasets(rt)])


@router.get("/{dataset_id}", response_model=DatasetPublic)
def get_dataset(dataset_id: int, rt: RuntimeDep) -> DatasetPublic:
    return _public(service.get_dataset(rt, dataset_id))


@router.patch("/{dataset_id}", response_model=DatasetPublic)
def update_dataset(dataset_id: int, data: DatasetUpdate, rt: RuntimeDep) -> DatasetPublic:
    return _public(service.update_dataset(rt, dataset_id, data))


@router.post("/{dataset_id}/reembed", status_code=202, response_model=ReembedPublic)
def reembed(dataset_id: int, data: DatasetReembed, rt: RuntimeDep) -> ReembedPublic:
    """Queue remaking every vector with another embedding model or variant; the switch happens all at once."""
    return reembedding.request_reembed(rt, dataset_id, data)


@router.get("/{dataset_id}/reembed", response_model=ReembedPublic)
def reembed_status(dataset_id: int, rt: RuntimeDep) -> ReembedPublic:
    """The dataset's latest re-embedding: status, stage and percentage."""
    return reembedding.reembed_status(rt, dataset_id)


@router.delete("/{dataset_id}/reembed", response_model=ReembedPublic)
def cancel_reembed(dataset_id: int, rt: RuntimeDep) -> ReembedPublic:
    """Cancel the dataset's re-embedding; the dataset keeps its vectors and model."""
    return reembedding.cancel_reembed(rt, dataset_id)


@router.delete("/{dataset_id}", status_code=204)
def delete_dataset(dataset_id: int, rt: RuntimeDep) -> Response:
    service.delete_dataset(rt, dataset_id)
    return Response(status_code=204)
