"""Where the team's shared evaluation data lives: $KB_SHARED_DATA, else ../shared/data, else /work/shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path | None:
    """The first candidate folder that exists, or None."""
    candidates = [os.environ.get("KB_SHARED_DATA"), _REPO.parent / "shared" / "data", "/work/shared/data"]
    for candidate in candidates:
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


def require_shared_data(*parts: str) -> Path:
    """The path under the shared data folder; skips the test, saying why, when the folder is absent."""
    root = shared_data_dir()
    if root is None:
        pytest.skip("shared evaluation data not found: set KB_SHARED_DATA or put it at ../shared/data")
    return root.joinpath(*parts)
