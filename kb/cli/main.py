"""The `kb` command."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

import typer

from kb.cli.engine import engine_app
from kb.cli.eval import eval_app
from kb.cli.models import models_app
from kb.config import Settings
from kb.process import tune_process

app = typer.Typer(
    help="kb: a self-hosted knowledge base that answers questions from your documents.", no_args_is_help=True
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(engine_app, name="engine")
app.add_typer(eval_app, name="eval")
app.add_typer(models_app, name="models")

MODES = ("chunk", "qa")


def load_settings() -> Settings:
    tune_process()
    settings = Settings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return settings


def build_runtime(ctx: typer.Context, settings: Settings, *, migrate: bool):
    """The runtime for a command; a registry given in `ctx.obj["registry"]` (tests) replaces the configured one."""
    from kb.db.engine import Database
    from kb.db.migrate import upgrade
    from kb.runtime import Runtime

    db = Database.from_settings(settings)
    if migrate:
        upgrade(db.url)
    return Runtime.from_settings(settings, db=db, registry=(ctx.obj or {}).get("registry"))


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Apply the migrations (creates the embedded database on first use)."""
    from kb.db.engine import resolve_database_url
    from kb.db.migrate import upgrade

    settings = load_settings()
    upgrade(resolve_database_url(settings), revision)
    typer.echo(f"database at revision {revision}")


def _refuse_an_open_first_run(settings: Settings, db) -> None:
    """Stop `kb serve` on a network address while no admin password exists (first-run takeover)."""
    from kb.errors import KBError
    from kb.ml.registry import get_registry
    from kb.runtime import Runtime
    from kb.services import admin as admin_service

    try:
        admin_service.check_first_run_is_private(Runtime(settings, db, get_registry(settings)))
    except KBError as exc:
        typer.echo(f"Error: {exc.message}", err=True)
        raise typer.Exit(2) from exc


@app.command()
def serve(
    host: str = typer.Option(None, help="Address to bind (default KB_HOST, 127.0.0.1)."),
    port: int = typer.Option(None, help="Port (default KB_PORT, 8000)."),
    migrate: bool = typer.Option(True, help="Apply pending migrations first."),
    no_worker: bool = typer.Option(
        False, "--no-worker", help="Do not process uploads here (run `kb worker` elsewhere)."
    ),
) -> None:
    """Serve the web pages, /api and /v1, with an ingestion worker in the same process unless --no-worker."""
    import uvicorn

    from kb.db.engine import Database
    from kb.db.migrate import upgrade
    from kb.http.app import create_app
    from kb.worker.loop import Worker

    settings = load_settings()
    if host:  # the address actually bound decides whether cookies default to Secure
        settings = settings.model_copy(update={"host": host})
    db = Database.from_settings(settings)
    if migrate:
        upgrade(db.url)
    _refuse_an_open_first_run(settings, db)
    uvicorn.run(
        create_app(settings, db=db, worker=None if no_worker else Worker),
        host=host or settings.host,
        port=port or settings.port,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
    )


@app.command()
def worker(
    ctx: typer.Context,
    until_idle: bool = typer.Option(False, "--until-idle", help="Exit once no job is due (scripts, benchmarks)."),
    migrate: bool = typer.Option(True, help="Apply pending migrations first."),
) -> None:
    """Process uploaded sources: read, chunk, embed and store them. Several workers may share one database."""
    from kb.worker.kinds import recover_stale_jobs
    from kb.worker.loop import Worker

    settings = load_settings()
    rt = build_runtime(ctx, settings, migrate=migrate)
    try:
        if until_idle:
            recover_stale_jobs(rt)
            count = Worker(rt).run_until_idle()
            typer.echo(f"processed {count} job(s); the queue has nothing due")
        else:
            _work_until_signalled(Worker(rt), settings)
    finally:
        rt.db.dispose()


def _work_until_signalled(job_worker, settings: Settings) -> None:
    """Run the worker in a thread until SIGTERM or SIGINT, then stop it gracefully."""
    stop = threading.Event()

    def request_stop(signum, _frame) -> None:
        logging.getLogger("kb.worker.loop").info(
            "Stopping: no new jobs; the current one may finish for up to %.0f s (signal again to quit at once)",
            settings.shutdown_grace_seconds,
        )
        signal.signal(signum, signal.SIG_DFL)  # a second signal ends the process; its job is requeued as stalled
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, request_stop)
    thread = job_worker.start()
    while not stop.wait(1.0) and thread.is_alive():
        pass
    job_worker.shutdown()


@app.command()
def ingest(
    ctx: typer.Context,
    paths: list[Path] = typer.Argument(..., exists=True, help="Files or folders (searched recursively)."),
    dataset: str = typer.Option(..., "--dataset", "-d", help="Dataset name; created if it does not exist."),
    mode: str = typer.Option(None, help="chunk (default) or qa (the chat model writes Q/A pairs per chunk)."),
    embed_model: str = typer.Option(None, help="Embedding model of a new dataset (default KB_EMBED_MODEL)."),
    migrate: bool = typer.Option(True, help="Apply pending migrations first."),
) -> None:
    """Import files and folders into a dataset right here (no server needed), with progress and a summary."""
    from kb.cli.ingest import run_ingest

    if mode is not None and mode not in MODES:
        raise typer.BadParameter(f"mode must be one of {', '.join(MODES)}", param_hint="--mode")
    settings = load_settings()
    rt = build_runtime(ctx, settings, migrate=migrate)
    try:
        failed = run_ingest(rt, dataset, paths, mode=mode, embed_model=embed_model)
    finally:
        rt.db.dispose()
    raise typer.Exit(code=1 if failed else 0)


@app.command()
def backup(path: Path = typer.Argument(..., help="The backup file to write, e.g. kb-backup.tar.")) -> None:
    """Back up the database (pg_dump) and the uploaded files into one tar file."""
    from kb.cli.backup import create_backup
    from kb.db.engine import Database

    settings = load_settings()
    db = Database.from_settings(settings)
    try:
        summary = create_backup(db, settings.files_dir, path)
    finally:
        db.dispose()
    typer.echo(f"wrote {summary.path}: {_counts(summary.tables)}, {summary.files} files")


@app.command()
def restore(
    path: Path = typer.Argument(..., exists=True, dir_okay=False, help="A file written by kb backup."),
    yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation."),
) -> None:
    """Replace this instance's data with a backup. Stop kb serve and kb worker first."""
    from kb.cli.backup import read_manifest, restore_backup
    from kb.db.engine import Database

    settings = load_settings()
    manifest = read_manifest(path)
    if not yes:
        typer.confirm(
            f"Replace all data in this kb instance with the backup of {manifest['created_at']} "
            f"({_counts(manifest['tables'])})?",
            abort=True,
        )
    db = Database.from_settings(settings)
    try:
        summary = restore_backup(db, settings.files_dir, path)
    finally:
        db.dispose()
    typer.echo(f"restored {summary.path}: {_counts(summary.tables)}")


def _counts(tables: dict[str, int]) -> str:
    return ", ".join(f"{count} {table}" for table, count in tables.items())


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
    from kb.cli.search import run_search

    settings = load_settings()
    raise typer.Exit(
        code=run_search(
            settings,
            dataset,
            query,
            mode=mode,
            limit=limit,
            min_score=min_score,
            as_json=as_json,
            registry=(ctx.obj or {}).get("registry"),
        )
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
    ctx: typer.Context,
    question: str = typer.Argument(..., help="The question."),
    app_name: str = typer.Option(None, "--app", help="Answer as this app (its prompt, datasets and search settings)."),
    datasets: list[str] = typer.Option(
        None, "--dataset", help="Answer from this dataset (repeatable), default settings."
    ),
    max_tokens: int = typer.Option(None, help="Longest answer in tokens (default KB_ANSWER_MAX_TOKENS)."),
    migrate: bool = typer.Option(True, help="Apply pending migrations first."),
) -> None:
    """Answer a question from an app or datasets, streaming it, then list the quotes (* = cited)."""
    from kb.errors import KBError
    from kb.ml.types import GenerationParams
    from kb.services.answering import AppQuestion, FinishedAnswer, ask_app, ask_datasets
    from kb.services.apps import find_app

    if bool(app_name) == bool(datasets):
        raise typer.BadParameter("name either --app or --dataset (not both)")
    rt = build_runtime(ctx, load_settings(), migrate=migrate)
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
    typer.echo(
        f"first token {first}, total {timings.total_ms / 1000:.1f}s, {answer.usage.total_tokens} tokens", err=True
    )


if __name__ == "__main__":
    app()
