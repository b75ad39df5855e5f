"""Helpers for browser tests: screenshots under test-artifacts/ and logging in through the form."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import ADMIN_PASSWORD, REPO

ARTIFACTS = REPO / "test-artifacts"


def screenshot(page, name: str) -> Path:
    """Save a full-page PNG as test-artifacts/<name>.png (git-ignored; CI keeps the folder)."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def log_in(page, password: str = ADMIN_PASSWORD) -> None:
    """Log in through the login form as a person would, and wait for the dashboard."""
    page.goto("/admin/login")
    page.fill("#password", password)
    page.click("form[action='/admin/login'] button[type=submit]")
    page.wait_for_url("**/admin")
