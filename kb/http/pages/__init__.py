"""HTML pages, server-rendered with Jinja2; templates and static files live in `web/`."""
