"""`kb engine info | build`: what the llama.cpp engine uses of this CPU, and a build of it for this CPU."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TimeElapsedColumn

from kb.ml import native_engine as ne

engine_app = typer.Typer(
    help="The llama.cpp engine: what it uses of this CPU, and a build for it.", no_args_is_help=True
)
console = Console()


@engine_app.command("info")
def info() -> None:
    """The installed llama.cpp's version, the instruction sets it was built for, and those it leaves unused."""
    state = ne.read_state()
    typer.echo(f"{ne.PACKAGE} {state.version}")
    typer.echo(f"CPU offers:  {', '.join(sorted(state.cpu_features)) or 'nothing llama.cpp names'}")
    typer.echo(f"engine uses: {', '.join(sorted(state.engine_features & set(ne.CPU_FEATURES.values()))) or '-'}")
    if state.missing:
        typer.echo(f"unused: {', '.join(state.missing)}; `kb engine build` compiles llama.cpp for this CPU")
    else:
        typer.echo("the engine uses every instruction set of this CPU that llama.cpp knows")


@engine_app.command("build")
def build(
    optional: bool = typer.Option(
        False, help="On missing tools or a failed build, warn and keep the installed engine (make install uses this)."
    ),
    force: bool = typer.Option(False, help="Build again even if a build for this CPU is cached or installed."),
    sdist: Path = typer.Option(
        None, help="A downloaded xllamacpp source release (.tar.gz), for machines without PyPI."
    ),
    jobs: int = typer.Option(os.cpu_count() or 2, min=1, help="Compiler processes at once."),
) -> None:
    """Compile llama.cpp (xllamacpp, the pinned version) for this CPU and install it in place of the portable build."""
    try:
        _build(force, sdist, jobs)
    except ne.EngineBuildError as exc:
        if not optional:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from exc
        typer.echo(f"warning: kept the portable llama.cpp build: {exc}", err=True)


def _build(force: bool, sdist: Path | None, jobs: int) -> None:
    state = ne.read_state()
    if not state.missing and not force:
        typer.echo(f"{ne.PACKAGE} {state.version} already uses every instruction set of this CPU; nothing to build")
        return
    folder = ne.engines_dir() / ne.build_key(state)
    wheel = None if force else ne.cached_wheel(folder)
    if wheel is None:
        absent = ne.missing_tools()
        if absent:
            raise ne.EngineBuildError(f"the build needs {', '.join(absent)} (on Debian: apt install cmake g++)")
        wheel = _compile(state, folder, sdist, jobs)
    else:
        typer.echo(f"using the build cached in {folder}")
    ne.install_wheel(wheel, folder / "build.log")
    typer.echo(f"installed {wheel.name}, built for this CPU ({', '.join(sorted(state.cpu_features))})")


def _compile(state: ne.EngineState, folder: Path, sdist: Path | None, jobs: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "build.log"
    log.write_text("", encoding="utf-8")
    unused = f"{', '.join(state.missing)} unused by the installed build" if state.missing else "rebuild asked for"
    typer.echo(f"compiling llama.cpp for this CPU ({unused}); log: {log}")
    columns = ("{task.description}", BarColumn(), TaskProgressColumn(), TimeElapsedColumn())
    with tempfile.TemporaryDirectory(dir=folder) as work, Progress(*columns, console=console) as bar:
        workdir = Path(work)
        task = bar.add_task("fetching the source", total=100)
        source = ne.prepare_source(sdist or ne.fetch_source(state.version, workdir, log), workdir / "src")
        bar.update(task, description="compiling llama.cpp", completed=0)
        built = ne.build_wheel(
            source, workdir / "dist", log, lambda percent: bar.update(task, completed=percent), jobs=jobs
        )
        bar.update(task, description="checking the build", completed=100)
        ne.check_build(built, workdir / "check", state, log)
        wheel = folder / built.name
        built.replace(wheel)
    return wheel
