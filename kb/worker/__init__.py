"""The ingestion worker: the loop that claims jobs, and the handlers that run each kind."""
