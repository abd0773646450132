"""Small ONNX classifiers built with onnx.helper (no torch): global average pool -> linear.

Class k's logit is sum_c W[c, k] * mean(channel c); with W = identity-like weights the
answer is the input's dominant colour, so the tests know what the model must say.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def tiny_classifier(
    *,
    size: tuple[int, int] = (224, 224),
    classes: int = 3,
    layout: str = "nchw",
    input_name: str = "pixels",
    dtype: int = TensorProto.FLOAT,
    seed: int = 0,
    embedding: str | None = None,
) -> bytes:
    """ONNX bytes of a `classes`-way classifier on (N, 3, H, W) (or NHWC) float input.

    The first three classes are "red", "green", "blue": weight 10 on their own channel.
    `seed` changes the remaining weights, hence the file's sha256 (a new version).
    `embedding` names a second output: the pooled channel means (N, 3), an input's colour.
    """
    width, height = size
    shape: list[int | str] = (
        ["N", 3, height, width] if layout == "nchw" else ["N", height, width, 3]
    )
    weights = np.random.default_rng(seed).normal(0, 0.01, (3, classes)).astype(np.float32)
    for c in range(min(3, classes)):
        weights[c, c] = 10.0
    nodes = []
    source = input_name
    if layout == "nhwc":
        nodes.append(helper.make_node("Transpose", [input_name], ["nchw"], perm=[0, 3, 1, 2]))
        source = "nchw"
    nodes += [
        helper.make_node("GlobalAveragePool", [source], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "W"], ["logits"]),
    ]
    if embedding is not None:
        nodes.append(helper.make_node("Identity", ["flat"], [embedding]))
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info(input_name, dtype, shape)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])]
        + (
            []
            if embedding is None
            else [helper.make_tensor_value_info(embedding, TensorProto.FLOAT, ["N", 3])]
        ),
        initializer=[numpy_helper.from_array(weights, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


COLOURS = ("red", "green", "blue")
