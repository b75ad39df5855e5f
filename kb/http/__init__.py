"""The web layer: the FastAPI app, the JSON API (/api and /v1), the HTML pages and their security."""
