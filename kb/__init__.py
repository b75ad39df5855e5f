"""kb: a self-hosted knowledge-base question-answering service."""

__version__ = "0.1.0"
