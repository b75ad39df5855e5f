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
def explain(
    sequence: str = typer.Option("111101111011110", help="Training sequence of 0s and 1s."),
    steps: int = typer.Option(50, help="Training steps."),
    seed: int = typer.Option(1337, help="Random seed (same seed, same result)."),
    lang: str = typer.Option("en", help="en or zh."),
) -> None:
    """Train the two-token, three-context language model and show what it learned."""
    from kb.errors import KBError
    from kb.explain import format_explain_text, train_tiny_gpt, validate_explain_input

    try:
        sequence, steps = validate_explain_input(sequence, steps)
    except KBError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(format_explain_text(train_tiny_gpt(sequence, steps, seed=seed), lang))


if __name__ == "__main__":
    app()
