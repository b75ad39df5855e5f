"""kb: a self-hosted knowledge-base question-answering service."""

import os

# OpenMP threads that spin while waiting steal the other core from everything else on a small machine
# (a query embedding went from 15 ms to 1.5 s next to a busy process; llama.cpp's two threads stalled).
# OpenMP reads this once, when the first library using it loads (torch and llama.cpp share one
# libgomp.so.1), so it is set on importing kb, before either; the environment's own value wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
