"""`kb search`: the quotes a question finds in a dataset, as a table or as the API's JSON."""

from __future__ import annotations

from types import SimpleNamespace

from rich.console import Console
from rich.table import Table

from kb.config import Settings
from kb.db.store import datasets as dataset_store
from kb.errors import KBError, not_found
from kb.schemas import SearchResponse
from kb.services.search import SearchResult, search_datasets

EXCERPT_CHARS = 200


def excerpt(text: str, size: int = EXCERPT_CHARS) -> str:
    """The text on one line, cut to `size` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= size else flat[: size - 1] + "…"


def found_by(ranks: dict[str, int]) -> str:
    """`vector #3, fulltext #1`: the lists that found a quote and its rank in each."""
    return ", ".join(f"{name} #{rank}" for name, rank in ranks.items())


def render_table(console: Console, result: SearchResult, dataset: str) -> None:
    table = Table(title=f"{dataset}: {len(result.quotes)} quote(s), {result.mode}", show_lines=True)
    table.add_column("#", justify="right")
    table.add_column("score", justify="right")
    table.add_column("found by")
    table.add_column("source")
    table.add_column("text")
    for number, quote in enumerate(result.quotes, 1):
        source = quote.source if quote.page is None else f"{quote.source} p.{quote.page}"
        table.add_row(str(number), f"{quote.score:.3f}", found_by(quote.ranks), source, excerpt(quote.text))
    console.print(table)


def run_search(
    settings: Settings,
    dataset_name: str,
    query: str,
    *,
    mode: str,
    limit: int,
    min_score: float,
    as_json: bool,
    registry=None,
) -> int:
    """Search one dataset by name and print the result; returns the exit code."""
    from kb.db.engine import Database

    console, errors = Console(), Console(stderr=True)
    db = Database.from_settings(settings)
    try:
        with db.session() as session:
            dataset = dataset_store.get_dataset_by_name(session, dataset_name)
        if dataset is None:
            raise not_found("dataset", dataset_name, named=True)
        deps = SimpleNamespace(settings=settings, db=db, registry=registry)
        result = search_datasets(deps, [dataset.id], query, mode=mode, limit=limit, min_score=min_score)
    except KBError as exc:
        errors.print(f"[red]error:[/red] {exc.message}")
        return 1
    finally:
        db.dispose()
    for warning in result.warnings:
        errors.print(f"[yellow]warning:[/yellow] {warning}")
    if as_json:
        print(SearchResponse.of(result).model_dump_json(indent=2))
    else:
        render_table(console, result, dataset.name)
    return 0
