"""`POST /v1/embeddings`: OpenAI's embeddings API over the configured embedding models."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from kb.http.api.openai_schemas import EmbeddingRequest
from kb.http.api.usage_log import request_usage
from kb.http.deps import PrincipalDep, runtime
from kb.services.gateway import embed_inputs

router = APIRouter(prefix="/v1", tags=["openai"])


def encode_vector(vector: np.ndarray, encoding_format: str) -> list[float] | str:
    """A list of floats, or base64 of the little-endian float32 bytes (what OpenAI's SDK decodes)."""
    if encoding_format == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return vector.astype(np.float32).tolist()


@router.post("/embeddings")
async def create_embeddings(body: EmbeddingRequest, request: Request, principal: PrincipalDep) -> dict[str, Any]:
    """Embed a text or a list of texts."""
    usage = request_usage(request)
    usage.model = body.model[:200]
    result = await run_in_threadpool(
        embed_inputs, runtime(request), principal, body.model, body.input, body.dimensions, body.input_type
    )
    usage.model = result.model
    usage.add_tokens(result.prompt_tokens, 0)
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": index, "embedding": encode_vector(vector, body.encoding_format)}
            for index, vector in enumerate(result.vectors)
        ],
        "model": result.model,
        "usage": {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens},
    }
