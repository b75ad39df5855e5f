"""Ingestion stages without database or server: read a file into blocks, chunk them, split Q/A pairs."""

from kb.ingest.reading import read_document
from kb.ingest.sniff import sniff_content_type
from kb.ingest.types import Block, ChunkDraft, ParsedDocument, ReadLimits

__all__ = ["Block", "ChunkDraft", "ParsedDocument", "ReadLimits", "read_document", "sniff_content_type"]
