"""ONNX graph rewrites that make models faster on ONNX Runtime's CPU provider.

ONNX Runtime runs convolutions fastest in its blocked channel layout (NCHWc), and converts
tensors out of and back into it around any layer that has no blocked kernel, and pads
channel counts to whole blocks of 16. Three rewrites avoid that. Two are for ArcFace
MobileFaceNet (``w600k_mbf``), whose recogniser then runs about 1.6x faster on one thread
than the original graph (17.3 against 10.7 ms per face); one is for SCRFD:

* **PRelu** (34 layers): ``PRelu(x, s) = x + (1 - s) * Relu(-x)``. For ``x >= 0`` this
  is ``x`` exactly; for ``x < 0`` it is ``s * x`` up to float32 rounding. ``Relu`` and
  per-channel ``Mul``/``Add`` stay in the blocked layout (two passes over the tensor).
* **A grouped convolution with two channels per group** (the second layer, 3x3 over
  56x56x128, which ONNX Runtime ran at about a tenth of its usual speed): each output
  channel mixes its own input channel and its pair's. It becomes two depthwise
  convolutions, one over the input and one over a copy of the input with each pair of
  channels swapped, summed. The swapped copy is made by the producing ``PRelu(Conv(.))``
  with its output channels permuted, which costs one small extra convolution.
* **Sibling convolutions** (SCRFD's score, box and landmark heads at each stride: 2, 8 and
  20 output channels over the same input, each padded to whole blocks of 16 channels): one
  convolution with all their output channels, split afterwards (the detector runs about
  1.17x faster at 448x640).

The outputs equal the original model's up to float32 rounding (bit for bit for the
merged siblings; tests compare them on real faces). Hashes are always checked on the
original file.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from onnx import ModelProto, NodeProto, TensorProto

log = logging.getLogger(__name__)


def optimise(path: Path) -> bytes | None:
    """The model with the rewrites above applied, or None when none applies (or one
    fails on an unforeseen model: the original then runs unchanged).

    Requires the ``onnx`` package; without it the original model is used.
    """
    try:
        import onnx
    except ImportError:  # optional: the plain model runs the same, only slower
        return None
    model = onnx.load(str(path))
    try:
        counts = {
            "sibling convolutions merged": merge_sibling_convs(model),
            "paired-group convolutions split": split_channel_pairs(model),
            "PRelu rewritten": rewrite_prelu(model),
        }
    except Exception as exc:  # a model these rewrites do not foresee still loads as it is
        log.warning("%s runs without graph rewrites: %s", path.name, exc)
        return None
    if not any(counts.values()):
        return None
    log.debug("%s: %s", path.name, counts)
    data: bytes = model.SerializeToString()
    return data


def _constants(model: ModelProto) -> dict[str, TensorProto]:
    return {init.name: init for init in model.graph.initializer}


def _replace_nodes(model: ModelProto, nodes: list[NodeProto], constants: list[Any]) -> None:
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    model.graph.initializer.extend(constants)


def rewrite_prelu(model: ModelProto) -> int:
    """Rewrite every PRelu with constant slopes as ``x + (1 - s) * Relu(-x)``; returns the
    number rewritten."""
    from onnx import helper, numpy_helper

    initializers = _constants(model)
    nodes: list[NodeProto] = []
    constants = []
    rewritten = 0
    for node in model.graph.node:
        init = initializers.get(node.input[1]) if node.op_type == "PRelu" else None
        if init is None:
            nodes.append(node)
            continue
        rewritten += 1
        x, y = node.input[0], node.output[0]
        slope = numpy_helper.to_array(init)
        constants += [
            numpy_helper.from_array(-np.ones_like(slope), f"{y}__minus_one"),
            numpy_helper.from_array((1 - slope).astype(slope.dtype), f"{y}__one_minus_slope"),
        ]
        nodes += [
            helper.make_node("Mul", [x, f"{y}__minus_one"], [f"{y}__neg"]),
            helper.make_node("Relu", [f"{y}__neg"], [f"{y}__neg_part"]),
            helper.make_node("Mul", [f"{y}__neg_part", f"{y}__one_minus_slope"], [f"{y}__fix"]),
            helper.make_node("Add", [x, f"{y}__fix"], [y]),
        ]
    _replace_nodes(model, nodes, constants)
    return rewritten


def split_channel_pairs(model: ModelProto) -> int:
    """Rewrite grouped convolutions with two input and two output channels per group, fed
    by ``PRelu(Conv(.))`` with constant weights, as two summed depthwise convolutions;
    returns the number rewritten."""
    from onnx import helper, numpy_helper

    initializers = _constants(model)
    producer = {out: node for node in model.graph.node for out in node.output}
    nodes: list[NodeProto] = []
    constants = []
    split = 0
    for node in model.graph.node:
        source = _paired_source(node, producer, initializers)
        if source is None:
            nodes.append(node)
            continue
        split += 1
        conv, prelu = source
        const = {name: numpy_helper.to_array(initializers[name]) for name in conv.input[1:]}
        weight = numpy_helper.to_array(initializers[node.input[1]])
        channels = weight.shape[0]
        swap = np.arange(channels) ^ 1  # channel 2g <-> 2g+1
        y = node.output[0]
        producer_weight, *producer_bias = (const[name][swap] for name in conv.input[1:])
        constants += [
            numpy_helper.from_array(producer_weight, f"{y}__swap_w"),
            *(numpy_helper.from_array(b, f"{y}__swap_b") for b in producer_bias),
            numpy_helper.from_array(
                numpy_helper.to_array(initializers[prelu.input[1]])[swap], f"{y}__swap_s"
            ),
        ]
        swap_conv = helper.make_node(
            "Conv",
            [conv.input[0], f"{y}__swap_w", *([f"{y}__swap_b"] if producer_bias else [])],
            [f"{y}__swap_conv"],
        )
        swap_conv.attribute.extend(conv.attribute)
        own = np.arange(channels)
        # Output o of group o//2 reads inputs 2(o//2) + {0, 1}: its own channel o is input
        # index o % 2 of the group, its pair's channel is the other index.
        constants += [
            numpy_helper.from_array(
                np.ascontiguousarray(weight[own, own % 2, None]), f"{y}__own_w"
            ),
            numpy_helper.from_array(
                np.ascontiguousarray(weight[own, 1 - own % 2, None]), f"{y}__pair_w"
            ),
        ]
        own_inputs = [node.input[0], f"{y}__own_w", *node.input[2:3]]
        depthwise = [a for a in node.attribute if a.name != "group"]
        own_conv = helper.make_node("Conv", own_inputs, [f"{y}__own"], group=channels)
        pair_conv = helper.make_node(
            "Conv", [f"{y}__swapped", f"{y}__pair_w"], [f"{y}__pair"], group=channels
        )
        own_conv.attribute.extend(depthwise)
        pair_conv.attribute.extend(depthwise)
        nodes += [
            swap_conv,
            helper.make_node("PRelu", [f"{y}__swap_conv", f"{y}__swap_s"], [f"{y}__swapped"]),
            own_conv,
            pair_conv,
            helper.make_node("Add", [f"{y}__own", f"{y}__pair"], [y]),
        ]
    _replace_nodes(model, nodes, constants)
    return split


def _group(node: NodeProto) -> int:
    """A convolution's ``group`` attribute (1 when absent)."""
    return next((int(a.i) for a in node.attribute if a.name == "group"), 1)


def _paired_source(
    node: NodeProto, producer: dict[str, NodeProto], initializers: dict[str, TensorProto]
) -> tuple[NodeProto, NodeProto] | None:
    """``(conv, prelu)`` feeding ``node`` when it is a paired-group convolution this module
    can split, else None."""
    if node.op_type != "Conv" or not all(name in initializers for name in node.input[1:]):
        return None
    group = _group(node)
    channels, per_group = initializers[node.input[1]].dims[:2]
    if group == 1 or per_group != 2 or channels != 2 * group:
        return None
    prelu = producer.get(node.input[0])
    if prelu is None or prelu.op_type != "PRelu" or prelu.input[1] not in initializers:
        return None
    conv = producer.get(prelu.input[0])
    if conv is None or conv.op_type != "Conv" or _group(conv) != 1:
        return None  # permuting a grouped producer's outputs would mix its groups
    if not all(name in initializers for name in conv.input[1:]):
        return None
    per_channel = [initializers[prelu.input[1]], *(initializers[n] for n in conv.input[1:])]
    if any(not t.dims or t.dims[0] != channels for t in per_channel):
        return None  # a shared slope or another channel count: the copy cannot be permuted
    return conv, prelu


def merge_sibling_convs(model: ModelProto) -> int:
    """Merge ungrouped convolutions that read the same input with the same attributes and
    constant weights into one convolution followed by a Split; returns the number of
    convolutions removed."""
    from onnx import helper, numpy_helper

    initializers = _constants(model)
    families: dict[tuple[str, tuple[int, ...], bytes], list[NodeProto]] = {}
    for node in model.graph.node:
        if node.op_type != "Conv" or len(node.input) != 3:
            continue
        if not all(name in initializers for name in node.input[1:]):
            continue
        if _group(node) != 1:
            continue
        # Same attributes and the same kernel (weights may leave kernel_shape implicit).
        kernel = tuple(initializers[node.input[1]].dims[1:])
        key = b"".join(a.SerializeToString() for a in sorted(node.attribute, key=lambda a: a.name))
        families.setdefault((node.input[0], kernel, key), []).append(node)
    groups = [family for family in families.values() if len(family) > 1]
    merged = {n.output[0]: family for family in groups for n in family}
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
    nodes: list[NodeProto] = []
    constants = []
    for node in model.graph.node:
        family = merged.get(node.output[0])
        if family is None:
            nodes.append(node)
            continue
        if node.output[0] != family[0].output[0]:
            continue  # emitted with the first of its family
        name = f"{family[0].output[0]}__merged"
        weights = [numpy_helper.to_array(initializers[n.input[1]]) for n in family]
        biases = [numpy_helper.to_array(initializers[n.input[2]]) for n in family]
        sizes = np.array([w.shape[0] for w in weights], dtype=np.int64)
        constants += [
            numpy_helper.from_array(np.concatenate(weights), f"{name}_w"),
            numpy_helper.from_array(np.concatenate(biases), f"{name}_b"),
        ]
        conv = helper.make_node("Conv", [node.input[0], f"{name}_w", f"{name}_b"], [name])
        conv.attribute.extend(node.attribute)
        outputs = [n.output[0] for n in family]
        if opset >= 13:
            constants.append(numpy_helper.from_array(sizes, f"{name}_sizes"))
            split = helper.make_node("Split", [name, f"{name}_sizes"], outputs, axis=1)
        else:
            split = helper.make_node("Split", [name], outputs, axis=1, split=sizes.tolist())
        nodes += [conv, split]
    _replace_nodes(model, nodes, constants)
    return sum(len(family) - 1 for family in groups)
