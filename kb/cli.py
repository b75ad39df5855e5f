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


@app.command()
def search(
    ctx: typer.Context,
    query: str = typer.Argument(..., help="The question or words to search for."),
    dataset: str = typer.Option(..., "--dataset", "-d", help="Dataset name."),
    mode: str = typer.Option("hybrid", help="vector, fulltext or hybrid."),
    limit: int = typer.Option(5, help="At most this many quotes."),
    min_score: float = typer.Option(0.0, help="Drop quotes scoring below this (0..1)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (the API's response shape)."),
) -> None:
    """Print the quotes a question finds in a dataset, with scores and the lists that found them."""
    from kb.cli_search import run_search

    settings = load_settings()
    raise typer.Exit(
        code=run_search(settings, dataset, query, mode=mode, limit=limit, min_score=min_score, as_json=as_json,
                        registry=(ctx.obj or {}).get("registry"))
    )


if __name__ == "__main__":
    app()
