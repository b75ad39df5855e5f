"""The lean decoder and its packed weights compute what the float model computes."""

from __future__ import annotations

import pytest
import torch

from kb.ml.decoding import TransformersDecoder
from kb.ml.lean_decoder import LeanDecoder, lean_decoder_supports
from kb.ml.packed_linear import Int4Linear, Int8Linear
from kb.testing import build_tiny_qwen


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(build_tiny_qwen(tmp_path_factory.mktemp("lean"))).eval()


def test_int4_packing_reproduces_weights_already_on_a_4bit_grid():
    torch.manual_seed(0)
    levels = torch.randint(0, 16, (64, 128)).float()
    levels[:, ::32] = 0  # every group spans the whole grid, like a Q4_1 block
    levels[:, 1::32] = 15
    scale, low = torch.rand(64, 4, 1) * 0.01 + 0.001, torch.randn(64, 4, 1) * 0.05
    weight = (levels.view(64, 4, 32) * scale + low).view(64, 128)
    x = torch.randn(3, 128).bfloat16()
    expected = x.float() @ weight.T
    assert torch.allclose(Int4Linear(weight, None)(x).float(), expected, atol=0.02 * expected.abs().max().item())


def test_int8_rows_match_the_weights():
    weight = torch.randn(50, 64)
    packed = Int8Linear(weight, None)
    assert torch.allclose(packed.rows(torch.tensor([3, 7])).float(), weight[[3, 7]], atol=0.02)


def test_lean_float_decoder_matches_transformers(tiny_model):
    assert lean_decoder_supports(tiny_model.config)
    prompt = list(range(5, 40))
    reference, lean = TransformersDecoder(tiny_model), LeanDecoder(tiny_model)
    assert torch.allclose(lean.start(prompt), reference.start(prompt), atol=1e-4)
    for token in (7, 8, 9):
        assert torch.allclose(lean.step(token), reference.step(token), atol=1e-4)


@pytest.mark.parametrize(("bits", "min_correlation"), [((8, 8), 0.999), ((4, 8), 0.97)])
def test_packed_decoders_stay_close_to_the_float_model(tiny_model, bits, min_correlation):
    prompt = list(range(5, 40))
    reference = TransformersDecoder(tiny_model).start(prompt)
    packed = LeanDecoder(tiny_model, *bits)
    logits = packed.start(prompt)
    assert torch.corrcoef(torch.stack([logits, reference]))[0, 1] > min_correlation
    assert packed.step(9).shape == reference.shape


def test_cache_grows_past_its_first_allocation(tiny_model):
    lean, reference = LeanDecoder(tiny_model), TransformersDecoder(tiny_model)
    prompt = list(range(3, 250))
    lean.start(prompt), reference.start(prompt)
    for token in range(10, 20):  # crosses the 256-position boundary
        assert torch.allclose(lean.step(token), reference.step(token), atol=1e-4)


def test_int4_prompt_path_and_token_path_agree():
    torch.manual_seed(1)
    layer = Int4Linear(torch.randn(96, 64), torch.randn(96))
    rows = torch.randn(20, 64).bfloat16()
    together = layer(rows).float()
    one_by_one = torch.cat([layer(rows[i : i + 1]) for i in range(20)]).float()
    assert torch.allclose(together, one_by_one, atol=0.05 * together.abs().max().item())
