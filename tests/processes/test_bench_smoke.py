"""Every benchmark still runs: each bench/ script in its smoke mode (a few documents and questions, seconds).

The figures a smoke run prints mean nothing; what is checked is that the script runs to its end against
today's code, so a benchmark whose numbers BENCHMARKS.md quotes cannot rot unseen.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.helpers import REPO
from tests.shared_data import require_shared_data

# script: extra arguments of its smoke run
SMOKE_RUNS = {
    "chunking.py": ["--smoke"],
    "eval.py": ["--smoke"],
    "crosslang.py": ["--smoke"],
    "ingest.py": ["--smoke"],
    "fusion_ablation.py": ["--smoke"],
    "generate.py": ["--smoke"],
    "llamacpp.py": ["--smoke"],
    "qagen.py": ["--smoke"],
    "retrieval.py": ["--smoke"],
}


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(SMOKE_RUNS))
def test_the_benchmark_runs_in_its_smoke_mode(script, server_url, tmp_path):
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "KB_SHARED_DATA": str(require_shared_data()),
        "KB_BENCH_DATABASE_URL": server_url,
        "KB_DATA_DIR": str(tmp_path / "data"),
        "HF_HUB_OFFLINE": "1",
    }
    run = subprocess.run(
        [sys.executable, str(REPO / "bench" / script), *SMOKE_RUNS[script]],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, f"bench/{script} failed:\n{run.stdout[-2000:]}\n{run.stderr[-4000:]}"
