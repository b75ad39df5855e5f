"""Process tuning every kb command applies before the heavy libraries load."""

from __future__ import annotations

import os
import subprocess
import sys

SCRIPT = (
    "import os; from kb.process import pin_mmap_threshold, tune_process; tune_process();"
    "print(os.environ.get('GOMP_SPINCOUNT', '-'), os.environ.get('OMP_WAIT_POLICY', '-'), pin_mmap_threshold())"
)
OURS = ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY", "MALLOC_MMAP_THRESHOLD_")


def _run(**env: str) -> list[str]:
    clean = {k: v for k, v in os.environ.items() if k not in OURS}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, env={**clean, **env}, check=True
    )
    return out.stdout.split()


def test_a_kb_process_pins_mallocs_mmap_threshold_and_cuts_openmps_spin_wait_short():
    assert _run() == ["10000", "-", "True"], "glibc accepted the fixed threshold"


def test_the_environment_overrides_both():
    assert _run(GOMP_SPINCOUNT="300000", MALLOC_MMAP_THRESHOLD_="65536") == ["300000", "-", "False"]
    assert _run(OMP_WAIT_POLICY="PASSIVE") == ["-", "PASSIVE", "True"], "a wait policy of the user's own stands alone"
