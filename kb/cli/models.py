"""`kb models list | pull | verify`: the model files on this machine, fetched once into the shared cache."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn
from rich.table import Table

from kb.config import Settings
from kb.errors import KBError
from kb.ml.catalog import cached_file, file_state, load_catalog
from kb.ml.model_files import ModelFileError, check_file, pull_entry, pull_url, sha256_of
from kb.ml.specs import ModelSpec, load_specs

models_app = typer.Typer(help="Model files: what is installed, fetching and verifying them.", no_args_is_help=True)
console = Console()
STATES = {
    "cached": "installed",
    "user-path": "installed (your file)",
    "parts": "parts installed (assembled on first use)",
    "missing": "not installed",
}


@contextmanager
def byte_progress(description: str) -> Iterator:
    """A rich progress bar in bytes; yields the (done, total) callback the model file functions take."""
    columns = ("{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(description, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total or None)


def _specs(settings: Settings) -> list[ModelSpec]:
    try:
        return load_specs(settings.models_file)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


def _user_path(spec: ModelSpec) -> Path | None:
    return Path(spec.path).expanduser() if spec.catalog and spec.path else None


@models_app.command("list")
def list_models() -> None:
    """Every model kb knows: installed or not, size, licence, context, and which one is the default."""
    settings = Settings()
    catalog = load_catalog()
    table = Table(title=f"Models (shared files in {settings.shared_models_dir})")
    for column in ("name", "kind", "size", "licence", "context", "state"):
        table.add_column(column, overflow="fold")
    defaults = {"chat": settings.chat_model, "embedding": settings.embed_model}
    notes = []
    for spec in _specs(settings):
        name = f"{spec.name} (default)" if defaults[spec.kind] == spec.name else spec.name
        if spec.catalog:
            entry = catalog[spec.catalog]
            state = file_state(entry, settings.shared_models_dir, _user_path(spec))
            row = (f"{entry.size / 1e9:.2f} GB", entry.licence, f"{entry.context_length:,}", STATES[state.state])
            table.add_row(name, spec.kind, *row)
            notes.append(f"{spec.name}: {state.detail}")
        else:
            table.add_row(name, spec.kind, "", "", "", f"{spec.backend}: {spec.path or 'remote providers'}")
    console.print(table)
    for note in notes:
        console.print(note, soft_wrap=True, highlight=False)


@models_app.command("pull")
def pull(
    name: str = typer.Argument(..., help="A catalog model (see `kb models list`), or the URL or path of any GGUF."),
    sha256: str = typer.Option(None, help="For a URL or path: the file's expected sha256 (checked before use)."),
) -> None:
    """Fetch a model file once into the shared cache and verify it; an interrupted download resumes."""
    settings = Settings()
    catalog = load_catalog()
    try:
        if name in catalog:
            entry = catalog[name]
            with byte_progress(entry.file) as progress:
                path = pull_entry(entry, settings.shared_models_dir, progress)
            typer.echo(f"{entry.name}: {path} ({entry.size:,} bytes, sha256 {entry.sha256}) verified")
            return
        if "://" not in name and not Path(name).expanduser().exists():
            raise typer.BadParameter(f"'{name}' is not a catalog model ({', '.join(catalog)}), a URL or a file")
        with byte_progress(name.rsplit("/", 1)[-1]) as progress:
            path, digest = pull_url(name, settings.shared_models_dir, sha256=sha256, progress=progress)
    except KBError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"{path} (sha256 {digest}) verified. To use it, add to your models file (KB_MODELS_FILE):")
    typer.echo(f'  {{"chat": [{{"name": "{path.stem.lower()}", "path": "{path}"}}]}}')


@models_app.command("verify")
def verify(names: list[str] = typer.Argument(None, help="Catalog models to check (default: every installed one).")):
    """Re-hash installed catalog model files; a corrupt file in the shared cache is deleted so it can be fetched again."""
    settings = Settings()
    catalog = load_catalog()
    user_paths = {s.catalog: _user_path(s) for s in _specs(settings) if s.catalog and s.path}
    unknown = [name for name in names or [] if name not in catalog]
    if unknown:
        raise typer.BadParameter(f"not in the catalog: {', '.join(unknown)}; it has: {', '.join(catalog)}")
    failed = checked = 0
    for entry in (catalog[name] for name in names) if names else catalog.values():
        user_path = user_paths.get(entry.name)
        path = user_path or cached_file(entry, settings.shared_models_dir)
        if not path.is_file():
            if names:
                typer.echo(f"{entry.name}: not installed (`kb models pull {entry.name}`)")
                failed += 1
            continue
        checked += 1
        try:
            with byte_progress(f"{entry.name}") as progress:
                digest = sha256_of(path, progress)
            check_file(entry, path, actual_sha256=digest, delete=user_path is None)
            typer.echo(f"{entry.name}: {path} ok (sha256 {digest})")
        except ModelFileError as exc:
            typer.echo(f"{entry.name}: FAILED: {exc.message}", err=True)
            failed += 1
    if not checked and not failed:
        typer.echo("no catalog model is installed yet; see `kb models list`")
    raise typer.Exit(1 if failed else 0)
