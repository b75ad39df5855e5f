"""Use cases: each function owns its transaction and returns plain results to routes, pages and the CLI."""
