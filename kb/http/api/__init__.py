"""JSON routers: `/api` (REST) and `/v1` (OpenAI-compatible)."""
