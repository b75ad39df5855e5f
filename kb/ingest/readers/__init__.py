"""One reader module per format; importing them fills the registry (in the order users see them listed)."""

from kb.ingest.readers import pdf, docx, markdown, text, html, csv  # noqa: F401,I001  (registers readers)
from kb.ingest.readers.registry import accepted_labels, find_reader, reader

__all__ = ["accepted_labels", "find_reader", "reader"]
