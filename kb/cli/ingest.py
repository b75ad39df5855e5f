"""`kb ingest` on screen: a progress bar over files and chunks, then a summary table of every file's outcome."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from kb.cli.bulk import FileResult, ensure_dataset, find_files, ingest_paths
from kb.errors import KBError
from kb.runtime import Runtime

STYLES = {"ready": "green", "error": "red", "refused": "red"}


def _label(path: Path, roots: list[Path]) -> str:
    for root in roots:
        if root.is_dir() and path.is_relative_to(root):
            return str(path.relative_to(root))
    return path.name


def summary_table(results: list[FileResult], roots: list[Path]) -> Table:
    table = Table(title="kb ingest", show_lines=False)
    for column in ("file", "status", "chunks", "reason"):
        table.add_column(column, justify="right" if column == "chunks" else "left", overflow="fold")
    for result in results:
        style = STYLES.get(result.status, "yellow")
        table.add_row(_label(result.path, roots), f"[{style}]{result.status}[/]", str(result.chunks), result.reason)
    return table


def run_ingest(rt: Runtime, dataset_name: str, paths: list[Path], *, mode: str | None, embed_model: str | None) -> bool:
    """Ingest with a live display; returns True when any file failed or was refused."""
    console = Console()
    roots = [p.resolve() for p in paths]
    files = [p.resolve() for p in find_files(paths)]
    if not files:
        console.print("[yellow]No files found under the given paths.[/]")
        return True
    try:
        dataset, created = ensure_dataset(rt, dataset_name, embed_model=embed_model)
    except KBError as exc:
        console.print(f"[red]{exc.message}[/]")
        return True
    console.print(
        f"{'Created' if created else 'Using'} dataset '{dataset.name}' ({dataset.embed_model}); {len(files)} file(s)"
    )

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        files_task = progress.add_task("files", total=len(files))

        def progress_for(slot: int):
            task = progress.add_task("chunks", total=None)

            def on_progress(stage: str, done: int, total: int) -> None:
                label = "Q/A pairs" if stage == "qa" else "chunks"
                progress.update(task, description=label, completed=done, total=total)

            return on_progress

        def on_file(result: FileResult) -> None:
            progress.advance(files_task)

        results = ingest_paths(rt, dataset.id, files, mode=mode, on_file=on_file, progress_for=progress_for)
    console.print(summary_table(results, roots))
    failed = [r for r in results if r.status != "ready"]
    chunks = sum(r.chunks for r in results if not r.duplicate)
    console.print(f"{len(results) - len(failed)} ready, {len(failed)} failed; {chunks} new chunks.")
    return bool(failed)
