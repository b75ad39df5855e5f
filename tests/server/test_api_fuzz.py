"""Property-based fuzzing of every `/api` and `/v1` operation from kb's own OpenAPI document.

Schemathesis generates requests (valid and invalid) for each operation and sends them in-process
with the root key; every answer must be below 500 and match the documented schema. The default
model names are served by deterministic fakes so a generated request never loads a real model.
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
)

from kb.http.app import create_app
from kb.ml.registry import ModelRegistry
from kb.testing import EchoChatModel, HashEmbedder
from tests.helpers import ROOT

MAX_EXAMPLES = int(os.environ.get("KB_FUZZ_EXAMPLES", "20"))  # per operation; raise it for a deeper run
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance, negative_data_rejection]

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def fuzzed_app(settings, db):
    registry = ModelRegistry(settings)
    registry.register_chat(EchoChatModel(settings.chat_model))
    registry.register_embedder(HashEmbedder(dim=384, name=settings.embed_model))
    app = create_app(
        settings.model_copy(update={"rate_limit_chat_per_minute": 0, "rate_limit_chat_per_ip_per_minute": 0}),
        db=db,
        registry=registry,
    )
    return app


def test_no_operation_answers_5xx_or_breaks_its_schema(fuzzed_app):
    with TestClient(fuzzed_app):  # runs the lifespan (admin password, session secret)
        schema = schemathesis.openapi.from_asgi("/openapi.json", fuzzed_app).include(path_regex=r"^/(api|v1)/")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 15, "the fuzzer sees fewer operations than kb has"
        failures = {}
        for operation in operations:
            try:
                _fuzz(operation)
            except Exception as exc:  # collect every operation's failure, not just the first
                failures[operation.label] = str(exc)[:2000]
    assert failures == {}


def _fuzz(operation) -> None:
    @given(case=operation.as_strategy())
    @settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def run(case) -> None:
        case.call_and_validate(headers=ROOT, checks=CHECKS)

    run()
