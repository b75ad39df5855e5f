"""The answering pipeline: retrieval, fusion, rerank, focus, prompts, citations, rewriting, answers."""
