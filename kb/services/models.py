"""What models and apps a caller can address by name."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from kb.auth import Principal
from kb.models import App


@dataclass(frozen=True)
class ModelEntryInfo:
    id: str
    owned_by: str


def list_model_entries(state, principal: Principal) -> list[ModelEntryInfo]:
    """Configured models (for full-access callers) and apps (an app key sees only its own)."""
    entries: list[ModelEntryInfo] = []
    if principal.is_full:
        settings = state.settings
        names = [settings.chat_model, settings.embed_model]
        entries.extend(ModelEntryInfo(id=name, owned_by="kb") for name in dict.fromkeys(names))
    with state.db.session() as session:
        query = select(App.name).order_by(App.id)
        if principal.app_id is not None:
            query = query.where(App.id == principal.app_id)
        entries.extend(ModelEntryInfo(id=f"app:{name}", owned_by="kb-app") for name in session.scalars(query))
    return entries
