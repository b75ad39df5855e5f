"""Fixtures for the knowledge-base admin pages: the app on the fast hash embedder, with its ingestion worker."""

from __future__ import annotations

import time

# Document text that would run script if a page ever printed it as HTML.
HOSTILE_MARKDOWN = (
    "# Lake safety\n\n"
    "Swimmers read this: <script>alert(1)</script> and <img src=x onerror=alert(1)> near the pier.\n\n"
    "Report a problem through the [harbour office](javascript:alert(1)) before sunset.\n"
)
HOSTILE_MARKUP = ("<script>alert(1)</script>", "<img src=x onerror=alert(1)>")


def wait_for_status(client, collection_id: int, timeout: float = 60.0) -> dict:
    """Poll the JSON API until the collection is ready or failed."""
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(f"/api/collections/{collection_id}").json()
        if body["status"] in ("ready", "error"):
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"collection {collection_id} is still {body['status']} after {timeout} s")
        time.sleep(0.1)
