"""Process tuning every kb command applies before the heavy libraries load."""

from __future__ import annotations

import os
import subprocess
import sys


def test_a_kb_process_pins_mallocs_mmap_threshold_and_lets_openmp_threads_sleep():
    script = (
        "import os; from kb.process import pin_mmap_threshold, tune_process; tune_process();"
        "print(os.environ['OMP_WAIT_POLICY'], pin_mmap_threshold())"
    )
    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "MALLOC_MMAP_THRESHOLD_")}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=clean, check=True)
    assert out.stdout.split() == ["PASSIVE", "True"], "glibc accepted the fixed threshold"


def test_the_environment_overrides_both():
    script = (
        "import os; from kb.process import pin_mmap_threshold, tune_process; tune_process();"
        "print(os.environ['OMP_WAIT_POLICY'], pin_mmap_threshold())"
    )
    env = {**os.environ, "OMP_WAIT_POLICY": "ACTIVE", "MALLOC_MMAP_THRESHOLD_": "65536"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split() == ["ACTIVE", "False"]
