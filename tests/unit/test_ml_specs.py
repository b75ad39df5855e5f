"""The models file: built-in defaults, extra models, and errors that say which entry is wrong."""

from __future__ import annotations

import json

import pytest

from kb.config import Settings
from kb.errors import ServiceUnavailable
from kb.ml import e5pack
from kb.ml.loading import remote_code_allowed
from kb.ml.registry import ModelRegistry, get_registry
from kb.ml.specs import load_specs, package_path
from kb.testing import EchoChatModel


def write(tmp_path, payload) -> object:
    path = tmp_path / "models.json"
    path.write_text(payload if isinstance(payload, str) else json.dumps(payload))
    return path


def test_builtin_defaults_exist_and_point_into_installed_packages():
    specs = {(s.kind, s.name): s for s in load_specs(None)}
    assert set(specs) == {
        ("chat", "smollm2"),
        ("chat", "qwen2.5-coder-1.5b"),
        ("chat", "qwen2.5-coder-0.5b"),
        ("embedding", "e5-small"),
        ("embedding", "minilm"),
    }
    assert package_path(specs[("chat", "smollm2")].path).is_file()
    assert (package_path(specs[("embedding", "minilm")].path) / "modules.json").is_file()
    e5 = specs[("embedding", "e5-small")]
    assert e5pack.is_pack(package_path(e5.path)) and e5pack.file_sha256(package_path(e5.path)) == e5.sha256


def test_models_file_adds_models_like_fastgpt_config(tmp_path):
    path = write(
        tmp_path,
        {
            "chat": [
                {"name": "qwen2.5-1.5b", "path": "Qwen/Qwen2.5-1.5B-Instruct", "context_length": 32768},
                {
                    "name": "gpt-remote",
                    "backend": "remote",
                    "providers": [
                        {"base_url": "http://b.example/v1", "priority": 2},
                        {"base_url": "http://a.example/v1", "priority": 1},
                    ],
                },
            ],
            "embedding": [
                {"name": "m3e", "path": "moka-ai/m3e-base"},
                {
                    "name": "e5",
                    "path": "intfloat/multilingual-e5-small",
                    "query_prefix": "query: ",
                    "document_prefix": "passage: ",
                },
            ],
        },
    )
    registry = ModelRegistry(Settings(models_file=path))
    assert [s.name for s in registry.chat_specs()] == [
        "qwen2.5-coder-1.5b",
        "qwen2.5-coder-0.5b",
        "smollm2",
        "qwen2.5-1.5b",
        "gpt-remote",
    ]
    assert [s.name for s in registry.embedding_specs()] == ["e5-small", "minilm", "m3e", "e5"]
    remote = registry.chat_spec("gpt-remote")
    assert [p.base_url for p in remote.sorted_providers()] == ["http://a.example/v1", "http://b.example/v1"]
    assert registry.embedding_specs()[3].query_prefix == "query: "


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("{not json", "is not valid JSON"),
        ({"chat": [{"name": "x"}]}, r"chat\[0\]: .*needs 'path'"),
        ({"chat": [{"name": "x", "backend": "remote"}]}, r"chat\[0\]: .*at least one entry in 'providers'"),
        ({"chat": [{"name": "x", "path": "p", "query_prefix": "q: "}]}, "prefixes only apply to embedding models"),
        ({"embedding": [{"name": "x", "path": "p", "colour": "red"}]}, r"embedding\[0\]: colour: Extra inputs"),
        (
            {"embedding": [{"name": "x", "path": "p", "quote_sentences": 2}]},
            "'quote_sentences', 'lead_sentences' and 'copy_bias' only apply to chat models",
        ),
        (
            {"chat": [{"name": "x", "path": "p", "copy_bias": {"fr": 1}}]},
            r"chat\[0\]: copy_bias\.fr\.\[key\]: Input should be 'en' or 'zh'",
        ),
        (
            {"chat": [{"name": "x", "path": "p", "copy_bias": {"zh": 40}}]},
            r"chat\[0\]: copy_bias\.zh: .*less than or equal to 10",
        ),
        (
            {"chat": [{"name": "x", "path": "p", "hybrid_weight": 0.9}]},
            "'hybrid_weight' only apply to embedding models",
        ),
        (
            {"chat": [{"name": "x", "path": "p", "quote_sentences": 0}]},
            r"chat\[0\]: quote_sentences: .*greater than or equal to 1",
        ),
        ({"chat": [{"name": "x", "path": "a"}, {"name": "x", "path": "b"}]}, "listed twice"),
        ({"chat": [{"name": "x", "backend": "remote", "providers": [{"base_url": "ftp://x"}]}]}, "base_url"),
        ({"models": []}, "models: Extra inputs"),
    ],
)
def test_bad_models_file_is_reported_with_the_entry_and_field(tmp_path, payload, message):
    with pytest.raises(ServiceUnavailable, match=message):
        ModelRegistry(Settings(models_file=write(tmp_path, payload)))


def test_missing_models_file_is_reported(tmp_path):
    with pytest.raises(ServiceUnavailable, match="cannot read models file"):
        ModelRegistry(Settings(models_file=tmp_path / "absent.json"))


def test_remote_code_runs_only_when_the_spec_and_the_operator_allow_it(tmp_path):
    path = write(tmp_path, {"chat": [{"name": "odd", "path": "org/odd", "trust_remote_code": True}]})
    odd = ModelRegistry(Settings(models_file=path)).chat_spec("odd")
    assert remote_code_allowed(odd, allow_remote_code=True)
    assert not remote_code_allowed(odd, allow_remote_code=False)
    assert not any(remote_code_allowed(spec, allow_remote_code=True) for spec in load_specs(None))


def test_the_bundled_chat_model_reads_focused_quotes_and_a_configured_one_whole_chunks_unless_told(tmp_path):
    path = write(
        tmp_path,
        {
            "chat": [
                {"name": "qwen", "path": "Qwen/Qwen2.5-1.5B-Instruct"},
                {"name": "tiny", "path": "t", "quote_sentences": 3},
            ]
        },
    )
    registry = ModelRegistry(Settings(models_file=path))
    registry.register_chat(EchoChatModel(name="echo"))
    assert registry.chat_spec().quote_sentences == 2  # the default chat model: the bundled SmolLM2-135M
    assert registry.chat_spec("qwen").quote_sentences is None and registry.chat_spec("tiny").quote_sentences == 3
    assert registry.chat_spec("echo") is None  # a ready instance has no configuration


def test_get_registry_returns_one_registry_per_settings(tmp_path):
    settings = Settings(data_dir=tmp_path)
    assert get_registry(settings) is get_registry(Settings(data_dir=tmp_path))
    assert get_registry(settings) is not get_registry(Settings(data_dir=tmp_path, chat_model="other"))
