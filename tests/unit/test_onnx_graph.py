"""The layer-norm rewrite of exported embedders: same outputs as ONNX Runtime's fused kernel, without it."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from kb.ml.onnx_graph import unfuse_skip_layer_norms

HIDDEN = 16


def _model(opset: int, with_bias: bool, extra_output: bool = False) -> onnx.ModelProto:
    rng = np.random.default_rng(3)
    weights = {
        "gamma": rng.normal(1, 0.2, HIDDEN),
        "beta": rng.normal(0, 0.2, HIDDEN),
        "bias": rng.normal(0, 0.2, HIDDEN),
    }
    inputs = ["x", "skip", "gamma", "beta"] + (["bias"] if with_bias else [])
    outputs = ["normed"] + (["", "", "summed"] if extra_output else [])
    node = helper.make_node("SkipLayerNormalization", inputs, outputs, domain="com.microsoft", epsilon=1e-5)
    graph = helper.make_graph(
        [node, helper.make_node("Relu", ["normed"], ["y"])],
        "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, None, HIDDEN]) for n in ("x", "skip")],
        [
            helper.make_tensor_value_info(n, TensorProto.FLOAT, None)
            for n in ["y"] + (["summed"] if extra_output else [])
        ],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()],
    )
    return helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid("com.microsoft", 1)]
    )


def _run(model: onnx.ModelProto, feeds: dict) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["y"], feeds)[0]


@pytest.mark.parametrize(("opset", "with_bias"), [(17, True), (17, False), (18, True)])
def test_decomposed_layer_norm_matches_the_fused_kernel(opset, with_bias):
    rng = np.random.default_rng(opset)
    feeds = {n: rng.normal(0, 3, (2, 5, HIDDEN)).astype(np.float32) for n in ("x", "skip")}
    fused = _model(opset, with_bias)
    expected = _run(fused, feeds)

    assert unfuse_skip_layer_norms(fused) == 1
    assert "SkipLayerNormalization" not in {n.op_type for n in fused.graph.node}
    np.testing.assert_allclose(_run(fused, feeds), expected, atol=2e-5)


def test_a_norm_whose_other_outputs_are_used_is_kept():
    model = _model(17, with_bias=True, extra_output=True)
    assert unfuse_skip_layer_norms(model) == 0
    assert "SkipLayerNormalization" in {n.op_type for n in model.graph.node}
