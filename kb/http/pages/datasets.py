"""Admin pages for datasets: the list with counts, create, settings, delete (after typing the name)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ValidationError

from kb.db.store.datasets import DatasetRecord
from kb.errors import BadRequest, KBError, NotFound
from kb.http.deps import RuntimeDep
from kb.http.pages.admin import render_admin
from kb.http.pages.forms import (
    Refused,
    form_float,
    form_int,
    notice_text,
    parse_separators,
    path_for,
    see_other,
    show_separators,
)
from kb.http.security.auth import require_admin
from kb.runtime import Runtime
from kb.schemas import ChunkSettings, DatasetCreate, DatasetReembed, DatasetUpdate
from kb.services import datasets as service
from kb.services import reembed as reembedding

router = APIRouter(tags=["pages"], include_in_schema=False, dependencies=[Depends(require_admin)])

SECTION = "admin_datasets"
FIELD_LABELS = {
    "name": "Name",
    "description": "Description",
    "max_tokens": "Max tokens per chunk",
    "overlap": "Overlap",
    "separators": "Custom separators",
    "mode": "Default processing",
    "qa_max_pairs": "Q/A pairs per chunk",
}


class DatasetForm(BaseModel):
    """The dataset form as typed (all text), so a refused form comes back with the user's input."""

    name: str = ""
    description: str = ""
    embed_model: str = ""
    max_tokens: str = ""
    overlap_percent: str = ""
    separators: str = ""
    mode: str = "chunk"
    qa_max_pairs: str = ""

    @classmethod
    def of(
        cls, settings: ChunkSettings | dict, *, name: str = "", description: str = "", embed_model: str = ""
    ) -> DatasetForm:
        chunking = settings if isinstance(settings, ChunkSettings) else ChunkSettings.model_validate(settings)
        return cls(
            name=name,
            description=description,
            embed_model=embed_model,
            max_tokens="" if chunking.max_tokens is None else str(chunking.max_tokens),
            overlap_percent=f"{chunking.overlap * 100:g}",
            separators=show_separators(chunking.separators),
            mode=chunking.mode,
            qa_max_pairs=str(chunking.qa_max_pairs),
        )

    def chunk_settings(self) -> ChunkSettings:
        """The typed chunk settings; raises ValidationError or BadRequest naming the field."""
        defaults = ChunkSettings()
        overlap = form_float(self.overlap_percent, "Overlap", defaults.overlap * 100)
        return ChunkSettings(
            max_tokens=form_int(self.max_tokens, "Max tokens per chunk", defaults.max_tokens),
            overlap=round(overlap / 100, 4),
            separators=parse_separators(self.separators),
            mode=self.mode,
            qa_max_pairs=form_int(self.qa_max_pairs, "Q/A pairs per chunk", defaults.qa_max_pairs),
        )


def embedding_choices(rt: Runtime) -> list[str]:
    """Embedding models a dataset may use: the default first, then every other configured one."""
    names = [rt.settings.embed_model]
    names += [spec.name for spec in rt.registry.embedding_specs() if spec.name != rt.settings.embed_model]
    return names


def _new_page(request: Request, rt: Runtime, form: DatasetForm, refused: Refused | None = None) -> HTMLResponse:
    context = {"form": form, "refused": refused, "models": embedding_choices(rt)}
    status = refused.status_code if refused else 200
    return render_admin(request, "admin/dataset_new.html", context, section=SECTION, status_code=status)


def _settings_page(
    request: Request, rt: Runtime, dataset: DatasetRecord, form: DatasetForm, refused: Refused | None = None
) -> HTMLResponse:
    try:
        reembed = reembedding.reembed_status(rt, dataset.id)
    except NotFound:
        reembed = None
    context = {
        "dataset": dataset,
        "form": form,
        "refused": refused,
        "reembed": reembed,
        "models": embedding_choices(rt),
        "embedder_problem": service.embedder_problem(rt, dataset),
        "notice": notice_text(request.query_params.get("notice")),
        "tab": "settings",
    }
    status = refused.status_code if refused else 200
    return render_admin(request, "admin/dataset_settings.html", context, section=SECTION, status_code=status)


@router.get("/admin/datasets", name="admin_datasets")
def datasets_page(request: Request, rt: RuntimeDep) -> HTMLResponse:
    # get_dataset adds each dataset's status counts, which the list query leaves out.
    datasets = [service.get_dataset(rt, record.id) for record in service.list_datasets(rt)]
    context = {"datasets": datasets, "notice": notice_text(request.query_params.get("notice"))}
    return render_admin(request, "admin/datasets.html", context, section=SECTION)


@router.get("/admin/datasets/new", name="admin_dataset_new")
def new_dataset_page(request: Request, rt: RuntimeDep) -> HTMLResponse:
    return _new_page(request, rt, DatasetForm.of(ChunkSettings(), embed_model=rt.settings.embed_model))


@router.post("/admin/datasets", name="admin_dataset_create")
def create_dataset(request: Request, form: Annotated[DatasetForm, Form()], rt: RuntimeDep) -> Response:
    try:
        data = DatasetCreate(
            name=form.name,
            description=form.description,
            embed_model=form.embed_model or None,
            chunk_settings=form.chunk_settings(),
        )
        record = service.create_dataset(rt, data)
    except (ValidationError, KBError) as exc:
        return _new_page(request, rt, form, Refused.of("dataset", form, exc, FIELD_LABELS))
    return see_other(path_for(request, "admin_dataset", dataset_id=record.id), notice="dataset_created")


@router.get("/admin/datasets/{dataset_id}/settings", name="admin_dataset_settings")
def settings_page(request: Request, dataset_id: int, rt: RuntimeDep) -> HTMLResponse:
    dataset = service.get_dataset(rt, dataset_id)
    form = DatasetForm.of(dataset.chunk_settings, name=dataset.name, description=dataset.description)
    return _settings_page(request, rt, dataset, form)


@router.post("/admin/datasets/{dataset_id}/settings", name="admin_dataset_save")
def save_settings(
    request: Request,
    dataset_id: int,
    form: Annotated[DatasetForm, Form()],
    rt: RuntimeDep,
) -> Response:
    dataset = service.get_dataset(rt, dataset_id)
    try:
        data = DatasetUpdate(name=form.name, description=form.description, chunk_settings=form.chunk_settings())
        service.update_dataset(rt, dataset_id, data)
    except (ValidationError, KBError) as exc:
        return _settings_page(request, rt, dataset, form, Refused.of("dataset", form, exc, FIELD_LABELS))
    return see_other(path_for(request, "admin_dataset_settings", dataset_id=dataset_id), notice="dataset_saved")


@router.post("/admin/datasets/{dataset_id}/reembed", name="admin_dataset_reembed")
def reembed(request: Request, dataset_id: int, rt: RuntimeDep, embed_model: Annotated[str, Form()] = "") -> Response:
    try:
        reembedding.request_reembed(rt, dataset_id, DatasetReembed(embed_model=embed_model or None))
    except KBError as exc:
        dataset = service.get_dataset(rt, dataset_id)
        form = DatasetForm.of(dataset.chunk_settings, name=dataset.name, description=dataset.description)
        return _settings_page(request, rt, dataset, form, Refused.of("reembed", form, exc, FIELD_LABELS))
    return see_other(path_for(request, "admin_dataset_settings", dataset_id=dataset_id), notice="reembed_queued")


@router.post("/admin/datasets/{dataset_id}/reembed/cancel", name="admin_dataset_reembed_cancel")
def cancel_reembed(request: Request, dataset_id: int, rt: RuntimeDep) -> Response:
    reembedding.cancel_reembed(rt, dataset_id)
    return see_other(path_for(request, "admin_dataset_settings", dataset_id=dataset_id), notice="reembed_cancelled")


@router.post("/admin/datasets/{dataset_id}/delete", name="admin_dataset_delete")
def delete_dataset(
    request: Request,
    dataset_id: int,
    rt: RuntimeDep,
    confirm_name: str = Form(""),
) -> Response:
    dataset = service.get_dataset(rt, dataset_id)
    if confirm_name.strip() != dataset.name:
        form = DatasetForm.of(dataset.chunk_settings, name=dataset.name, description=dataset.description)
        wrong_name = BadRequest("Type the dataset's name exactly as shown to delete it.", code="confirmation_mismatch")
        return _settings_page(request, rt, dataset, form, Refused.of("delete", form, wrong_name))
    service.delete_dataset(rt, dataset_id)
    return see_other(path_for(request, "admin_datasets"), notice="dataset_deleted")
