"""kb: a self-hosted knowledge-base question-answering service."""

import os

# OpenMP threads that spin long while waiting steal the other core from everything else on a small machine
# (with libgomp's default 300,000 spins a query embedding went from 15 ms to 1.5 s next to a busy process, and
# llama.cpp's two threads stalled). Not spinning at all (OMP_WAIT_POLICY=PASSIVE) costs llama.cpp dearly on a
# quiet machine: every one of a token's hundreds of small steps then wakes a sleeping thread (Qwen2.5-1.5B
# decoded 9.0 tokens/s and read 61 prompt tokens/s, against 12.5 and 68 with a short spin; beside three busy
# processes both settings gave the same 3.3 and 22). So threads spin briefly, then sleep. OpenMP reads this once,
# when the first library using it loads (torch and llama.cpp share one libgomp.so.1), so it is set on importing
# kb, before either; the environment's own values (GOMP_SPINCOUNT, OMP_WAIT_POLICY) win.
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", "10000")

__version__ = "0.1.0"
