"""What models and apps a caller can address by name."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from kb.db.tables import App
from kb.principal import Principal
from kb.runtime import Runtime
from kb.services.gateway import APP_MODEL_PREFIX
from kb.services.model_checks import ModelFile, describe_models


@dataclass(frozen=True)
class ModelEntryInfo:
    id: str
    owned_by: str
    kind: str  # chat, embedding or app
    languages: tuple[str, ...] = ()
    dimensions: int | None = None
    licence: str | None = None
    file: ModelFile | None = None  # catalog models: licence, size, context, installed


def list_model_entries(rt: Runtime, principal: Principal) -> list[ModelEntryInfo]:
    """Configured chat and embedding models (for full-access callers) and apps (an app key sees only its own)."""
    entries: list[ModelEntryInfo] = []
    if principal.is_full:
        seen: set[str] = set()
        for status in describe_models(rt.registry):
            if status.name not in seen:
                seen.add(status.name)
                licence = status.licence or (status.file.licence if status.file else None)
                entries.append(
                    ModelEntryInfo(status.name, "kb", status.kind, status.languages, status.dim, licence, status.file)
                )
    with rt.db.session() as session:
        query = select(App.name).order_by(App.id)
        if principal.app_id is not None:
            query = query.where(App.id == principal.app_id)
        entries.extend(
            ModelEntryInfo(id=f"{APP_MODEL_PREFIX}{name}", owned_by="kb-app", kind="app")
            for name in session.scalars(query)
        )
    return entries
