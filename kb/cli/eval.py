"""`kb eval run`: run an evaluation set file against a dataset, with a progress bar, a table of totals, and exit
status 1 when `--min-hit5` is not met (for a team's own CI)."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from kb.errors import KBError

eval_app = typer.Typer(help="Measure a dataset's search with a set of questions and expected answers.")
MEASURES = ("hit@1", "hit@5", "mrr", "source_hit@5", "answer_hit", "citation_hit", "p50_ms", "p95_ms")


def _carry_out(rt, run_id: int, console: Console):
    """Claim the run's own job in a thread of this process and show its progress until it finishes."""
    from kb.services import eval_runs as run_service
    from kb.worker.loop import Worker

    job_id = run_service.run_job_id(rt, run_id)
    worker = threading.Thread(target=Worker(rt, jobs=1).run_once, kwargs={"job_ids": [job_id]}, daemon=True)
    worker.start()
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("queued", total=100)
        run = run_service.get_run(rt, run_id)
        while not run.finished:  # a `kb serve` worker may have claimed the job first; then follow it there
            bar.update(task, completed=run.progress, description=run.stage)
            time.sleep(0.2)
            run = run_service.get_run(rt, run_id)
    worker.join()
    return run


def _table(run, set_name: str) -> Table:
    table = Table(title=f"kb eval: run #{run.id} of '{set_name}' ({run.config['mode']}, limit {run.config['limit']})")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for name in MEASURES:
        value = run.totals.get(name)
        if value is not None:
            table.add_row(name, f"{value:.3f}" if isinstance(value, float) and not name.endswith("_ms") else str(value))
    table.add_row("questions counted", f"{run.totals.get('counted', 0)} of {run.totals.get('items', 0)}")
    return table


@eval_app.command("run")
def run(
    ctx: typer.Context,
    dataset: str = typer.Option(..., "--dataset", "-d", help="Dataset name."),
    set_file: Path = typer.Option(..., "--set", exists=True, dir_okay=False, help="JSONL or CSV of questions."),
    mode: str = typer.Option("hybrid", help="vector, fulltext or hybrid."),
    limit: int = typer.Option(5, help="Quotes per question (5-100)."),
    min_hit5: float = typer.Option(None, "--min-hit5", help="Exit with status 1 when hit@5 is below this."),
    migrate: bool = typer.Option(True, help="Apply pending migrations first."),
) -> None:
    """Import the file as a set (once per content) and run it; prints the totals."""
    from kb.cli.main import build_runtime, load_settings
    from kb.services import eval_runs as run_service
    from kb.services.datasets import find_dataset

    console, errors = Console(), Console(stderr=True)
    rt = build_runtime(ctx, load_settings(), migrate=migrate)
    try:
        target = find_dataset(rt, dataset)
        if target is None:
            raise KBError(f"no dataset named '{dataset}' (see `kb ingest` or the admin pages)")
        content = set_file.read_bytes()
        name = f"{set_file.stem} {hashlib.sha256(content).hexdigest()[:8]}"
        found, report = run_service.find_or_import_set(rt, target.id, name, set_file.name, content)
        for problem in (report.errors + report.not_in_documents) if report else []:
            errors.print(f"[yellow]{set_file.name} line {problem.line}:[/yellow] {problem.message}")
        started = run_service.start_run(rt, found.id, run_service.RunConfig(mode=mode, limit=limit))
        finished = _carry_out(rt, started.id, errors)
    except KBError as exc:
        errors.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(2) from exc
    finally:
        rt.db.dispose()
    if finished.status != "done":
        errors.print(f"[red]the run ended {finished.status}:[/red] {finished.error or ''}")
        raise typer.Exit(2)
    console.print(_table(finished, found.name))
    hit5 = finished.totals.get("hit@5")
    if min_hit5 is not None and (hit5 is None or hit5 < min_hit5):
        errors.print(f"[red]hit@5 {hit5} is below --min-hit5 {min_hit5}[/red]")
        raise typer.Exit(1)
