"""The `kb` command."""

from __future__ import annotations

import logging

import typer

from kb.config import Settings

app = typer.Typer(help="kb: a self-hosted knowledge base that answers questions from your documents.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")


def load_settings() -> Settings:
    settings = Settings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return settings


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Apply the migrations (creates the embedded database on first use)."""
    from kb.db import resolve_database_url
    from kb.migrate import upgrade

    settings = load_settings()
    upgrade(resolve_database_url(settings), revision)
    typer.echo(f"database at revision {revision}")


@app.command()
def serve(
    host: str = typer.Option(None, help="Address to bind (default KB_HOST, 127.0.0.1)."),
    port: int = typer.Option(None, help="Port (default KB_PORT, 8000)."),
    migrate: bool = typer.Option(True, help="Apply pending migrations first."),
) -> None:
    """Serve the web pages, /api and /v1."""
    import uvicorn

    from kb.app import create_app
    from kb.db import Database
    from kb.migrate import upgrade

    settings = load_settings()
    db = Database.from_settings(settings)
    if migrate:
        upgrade(db.url)
    uvicorn.run(
        create_app(settings, db=db),
        host=host or settings.host,
        port=port or settings.port,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
    )


def print_quotes(quotes, excerpt_chars: int = 120) -> None:
    """The quotes shown to the model: number (starred when cited), source, page, score, excerpt."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Quotes", show_lines=False)
    for column in ("#", "source", "page", "score", "excerpt"):
        table.add_column(column, overflow="fold")
    for quote in quotes:
        text = " ".join(quote.text.split())
        excerpt = text if len(text) <= excerpt_chars else text[: excerpt_chars - 1] + "…"
        number = f"{quote.number}*" if quote.cited else str(quote.number)
        page = "" if quote.page is None else str(quote.page)
        table.add_row(number, quote.source, page, f"{quote.score:.3f}", excerpt)
    Console().print(table)


@app.command()
def ask(
    question: str = typer.Argument(..., help="The question."),
    app_name: str = typer.Option(None, "--app", help="Answer as this app (its prompt, datasets and search settings)."),
    datasets: list[str] = typer.Option(None, "--dataset", help="Answer from this dataset (repeatable), default settings."),
    max_tokens: int = typer.Option(None, help="Longest answer in tokens (default KB_ANSWER_MAX_TOKENS)."),
) -> None:
    """Answer a question from an app or datasets, streaming it, then list the quotes (* = cited)."""
    from kb.errors import KBError
    from kb.ml.types import GenerationParams
    from kb.runtime import Runtime
    from kb.services.answering import AppQuestion, FinishedAnswer, ask_app, ask_datasets
    from kb.services.apps import find_app

    if bool(app_name) == bool(datasets):
        raise typer.BadParameter("name either --app or --dataset (not both)")
    settings = load_settings()
    rt = Runtime.from_settings(settings)
    params = GenerationParams(temperature=0.0, max_tokens=max_tokens)
    try:
        if app_name:
            stream = ask_app(rt, find_app(rt, app_name), AppQuestion(question, []), params=params, source="cli")
        else:
            stream = ask_datasets(rt, datasets, question, params=params)
        for item in stream:
            if isinstance(item, FinishedAnswer):
                answer = item.answer
            else:
                typer.echo(item.text, nl=False)
    except KBError as exc:
        typer.echo(f"\nerror: {exc.message}", err=True)
        raise typer.Exit(1) from exc
    finally:
        rt.db.dispose()
    typer.echo()
    if answer.quotes:
        print_quotes(answer.quotes)
    timings = answer.timings
    first = f"{timings.first_token_ms / 1000:.1f}s" if timings.first_token_ms is not None else "-"
    typer.echo(f"first token {first}, total {timings.total_ms / 1000:.1f}s, {answer.usage.total_tokens} tokens", err=True)


if __name__ == "__main__":
    app()
