"""Where the slow tests find the Qwen2.5-Coder-0.5B GGUF (491 MB): the one place to point at kb's model catalog."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

from kb.errors import ServiceUnavailable
from kb.ml.loading import resolve_source
from kb.ml.specs import load_specs

QWEN_05B_FILE = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
# Until the catalog assembles it, a developer copy can be named in $KB_TEST_QWEN_GGUF.
DEV_COPIES = [os.environ.get("KB_TEST_QWEN_GGUF"), f"/work/notes/qwen/models/{QWEN_05B_FILE}"]


def require_qwen_05b() -> Path:
    """The 0.5B file; skips the test, saying why, when this machine has none."""
    for spec in load_specs(None):  # when the model catalog lands, its resolver replaces this loop
        if spec.kind == "chat" and (spec.path or "").endswith(QWEN_05B_FILE):
            with contextlib.suppress(ServiceUnavailable):
                return Path(resolve_source(spec))
    for candidate in DEV_COPIES:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    pytest.skip(f"{QWEN_05B_FILE} not found: kb bundles no spec for it yet; set KB_TEST_QWEN_GGUF to a copy")
