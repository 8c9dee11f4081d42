"""Run a TensorFlow.js *graph* model (model.json + .bin) on onnxruntime.

A tfjs graph model is a TensorFlow GraphDef in JSON (`modelTopology.node`: name, op,
inputs, attributes) whose constants live in the weights manifest. `GraphModel` reads it,
decodes the weights with tfjs's own rules (`exprbench.faceapi.weights.decode_weights`:
float16 and uint8/uint16 quantisation included) and translates the nodes, in order, into
an ONNX graph built with `exprbench.faceapi.graph.Graph`, which onnxruntime then runs.

Layout: TensorFlow graphs are NHWC; the input is transposed once to NCHW and every 4-D
value stays NCHW (constants that broadcast over channels are reshaped to [C, 1, 1];
reductions and squeezes of NHWC axes are mapped to the NCHW axes).

Only the ops the models read here use are translated (Human's `faceres` and
`mobilefacenet`): Placeholder, Const, Identity, Conv2D, DepthwiseConv2dNative, _FusedConv2D
and FusedDepthwiseConv2dNative (fused BiasAdd, Relu, Relu6), _FusedMatMul and MatMul,
BiasAdd, Add/AddV2, Sub, Mul, Minimum, Maximum, Relu, Relu6, Abs, Square, Rsqrt, Sigmoid,
Softmax, Mean, Sum, Squeeze. Any other op raises `UnsupportedOpError` naming it and the node.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from exprbench.faceapi.graph import Graph, Network, same_padding
from exprbench.faceapi.weights import decode_weights

NHWC_TO_NCHW = (0, 2, 3, 1)  # NHWC axis -> NCHW axis


class GraphModelError(ValueError):
    """model.json is malformed or does not fit its weights."""


class UnsupportedOpError(GraphModelError):
    """The graph uses an op (or op setting) this interpreter does not translate."""


@dataclass
class _Value:
    name: str  # ONNX value name
    shape: tuple[int, ...] | None  # static shape in TensorFlow (NHWC) order; -1 = batch
    nchw: bool = False  # a 4-D value held as NCHW
    const: np.ndarray | None = None  # for Const nodes


def _attr(node: Mapping[str, Any], key: str, default: Any = None) -> Any:
    value = node.get("attr", {}).get(key)
    if value is None:
        return default
    if "list" in value:
        items = value["list"]
        if "i" in items:
            return [int(v) for v in items["i"]]
        if "s" in items:
            return [base64.b64decode(v).decode() for v in items["s"]]
        return []
    if "s" in value:
        return base64.b64decode(value["s"]).decode()
    if "i" in value:
        return int(value["i"])
    if "f" in value:
        return float(value["f"])
    if "b" in value:
        return bool(value["b"])
    return value


def _conv_out(size: int, kernel: int, stride: int, padding: str) -> int:
    return -(-size // stride) if padding == "SAME" else (size - kernel) // stride + 1


class GraphModel:
    """A tfjs graph model translated to ONNX; `run(x)` returns its outputs by node name.

    model_json: the parsed model.json; weights: its manifest's tensors by name (see
    `load`); the input's static NHWC shape comes from its Placeholder (batch may be -1).
    outputs: node names to return (default: the signature's outputs, else the last node).
    """

    def __init__(
        self,
        model_json: Mapping[str, Any],
        weights: Mapping[str, np.ndarray],
        outputs: Sequence[str] | None = None,
        threads: int | None = None,
        name: str = "tfjs_graph",
    ) -> None:
        if model_json.get("format") not in ("graph-model", None):
            raise GraphModelError(f"{name}: format {model_json.get('format')!r} is not a graph")
        nodes = model_json["modelTopology"]["node"]
        self.graph = Graph(name)
        self.values: dict[str, _Value] = {}
        self.input_name = ""
        self.input_shape: tuple[int, ...] = ()
        self.model_name = name
        for node in nodes:
            self._translate(node, weights)
        if outputs is None:
            outputs = _signature_outputs(model_json) or [nodes[-1]["name"]]
        self.output_names = list(outputs)
        for out in self.output_names:
            value = self._get(out)
            self.graph.output(self._to_tf_layout(value), out)
        self.network = Network(self.graph, threads=threads)

    @classmethod
    def load(
        cls,
        model_path: Path,
        bin_paths: Mapping[str, Path] | None = None,
        outputs: Sequence[str] | None = None,
        threads: int | None = None,
    ) -> GraphModel:
        """Read model.json and its weight files (by default next to it, as the manifest
        names them; `bin_paths` maps a manifest path to another local file)."""
        model_json = json.loads(Path(model_path).read_text())
        manifest = model_json.get("weightsManifest")
        if not manifest:
            raise GraphModelError(f"{model_path}: no weightsManifest")

        def read(path: str) -> bytes:
            local = (bin_paths or {}).get(path, Path(model_path).parent / path)
            return Path(local).read_bytes()

        weights = decode_weights(manifest, read)
        return cls(model_json, weights, outputs, threads, Path(model_path).stem)

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Outputs for an NHWC float32 batch, each in TensorFlow's layout."""
        x = np.asarray(x, dtype=np.float32)
        expected = self.input_shape[1:]
        if x.ndim != len(self.input_shape) or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"{self.model_name}: input must be (N, {', '.join(map(str, expected))}), "
                f"got {x.shape}"
            )
        return self.network.run(**{self.input_name: x})

    # ------------------------------------------------------------ translation

    def _get(self, ref: str) -> _Value:
        name = ref.split(":")[0].lstrip("^")
        if ref.split(":")[-1] not in (name, "0"):
            raise UnsupportedOpError(f"{self.model_name}: output {ref} of a multi-output node")
        if name not in self.values:
            raise GraphModelError(f"{self.model_name}: node input {ref!r} is not defined before")
        return self.values[name]

    def _to_tf_layout(self, value: _Value) -> str:
        if value.const is not None:
            return self.graph.const(value.const)
        if value.nchw:
            return self.graph.op("Transpose", [value.name], perm=[0, 2, 3, 1])
        return value.name

    def _operand(self, value: _Value, like: _Value) -> str:
        """An ONNX name for `value` usable in an elementwise op with `like`."""
        if value.const is None:
            if value.nchw != like.nchw:
                raise UnsupportedOpError(
                    f"{self.model_name}: elementwise op mixes NHWC and NCHW values"
                )
            return value.name
        array = value.const
        if like.nchw and array.size > 1:
            if any(d != 1 for d in array.shape[:-1]):
                raise UnsupportedOpError(
                    f"{self.model_name}: a constant of shape {array.shape} broadcast over "
                    "an NHWC value is only supported along channels"
                )
            array = array.reshape(-1, 1, 1)  # [C] / [1, 1, 1, C] -> [C, 1, 1]
        elif like.nchw:
            array = array.reshape(())
        return self.graph.const(array.astype(np.float32))

    def _translate(self, node: Mapping[str, Any], weights: Mapping[str, np.ndarray]) -> None:
        op, name = node["op"], node["name"]
        inputs = [i for i in node.get("input", []) if not i.startswith("^")]
        g = self.graph
        if op == "Placeholder":
            if self.input_name:
                raise UnsupportedOpError(f"{self.model_name}: more than one input ({name})")
            dims = _attr(node, "shape")["shape"]["dim"]
            shape = tuple(int(d["size"]) for d in dims)
            if len(shape) != 4 or -1 in shape[1:]:
                raise UnsupportedOpError(f"{name}: input shape {shape} is not N x H x W x C")
            self.input_name, self.input_shape = name, shape
            g.input(name, ["N", *shape[1:]])
            out = g.op("Transpose", [name], perm=[0, 3, 1, 2])
            self.values[name] = _Value(out, shape, nchw=True)
            return
        if op == "Const":
            if name not in weights:
                raise GraphModelError(f"{self.model_name}: Const {name} has no weights entry")
            self.values[name] = _Value(name, weights[name].shape, const=weights[name])
            return
        args = [self._get(i) for i in inputs]
        handler = _HANDLERS.get(op)
        if handler is None:
            raise UnsupportedOpError(
                f"{self.model_name}: op {op!r} (node {name!r}) is not supported by "
                f"exprbench.tfjs_graph; supported: {', '.join(sorted(_HANDLERS))}"
            )
        self.values[name] = handler(self, node, args)

    # ------------------------------------------------------------ op handlers

    def _conv(self, node: Mapping[str, Any], args: list[_Value]) -> _Value:
        op, name = node["op"], node["name"]
        x, w = args[0], args[1]
        depthwise = "Depthwise" in op
        if _attr(node, "data_format", "NHWC") != "NHWC" or not x.nchw or x.shape is None:
            raise UnsupportedOpError(f"{name}: {op} needs an NHWC 4-D input")
        if any(d != 1 for d in _attr(node, "dilations", [1, 1, 1, 1])):
            raise UnsupportedOpError(f"{name}: dilated convolutions are not supported")
        padding = _attr(node, "padding")
        if padding not in ("SAME", "VALID"):
            raise UnsupportedOpError(f"{name}: padding {padding!r} is not supported")
        strides = _attr(node, "strides", [1, 1, 1, 1])
        if w.const is None:
            raise UnsupportedOpError(f"{name}: the filter must be a constant")
        filters = w.const.astype(np.float32)
        kh, kw = filters.shape[:2]
        _, height, width, channels = x.shape
        pads = [0, 0, 0, 0]
        if padding == "SAME":
            top, bottom = same_padding(height, kh, strides[1])
            left, right = same_padding(width, kw, strides[2])
            pads = [top, left, bottom, right]
        if depthwise:
            if filters.shape[3] != 1:
                raise UnsupportedOpError(f"{name}: depthwise multiplier {filters.shape[3]}")
            weight, group, out_c = filters.transpose(2, 3, 0, 1), channels, channels
        else:
            weight, group, out_c = filters.transpose(3, 2, 0, 1), 1, filters.shape[3]
        conv_inputs = [x.name, self.graph.const(np.ascontiguousarray(weight), "w")]
        fused = _attr(node, "fused_ops", []) if op.startswith(("_Fused", "Fused")) else []
        if fused[:1] == ["BiasAdd"]:
            conv_inputs.append(self.graph.const(args[2].const.reshape(-1), "b"))  # type: ignore[union-attr]
            fused = fused[1:]
        elif fused:
            raise UnsupportedOpError(f"{name}: fused ops {fused} (expected BiasAdd first)")
        out = self.graph.op(
            "Conv",
            conv_inputs,
            kernel_shape=[kh, kw],
            strides=[strides[1], strides[2]],
            pads=pads,
            group=group,
        )
        shape = (
            x.shape[0],
            _conv_out(height, kh, strides[1], padding),
            _conv_out(width, kw, strides[2], padding),
            out_c,
        )
        return _Value(self._activation(out, fused, name), shape, nchw=True)

    def _activation(self, value: str, fused: Sequence[str], name: str) -> str:
        for act in fused:
            if act == "Relu":
                value = self.graph.op("Relu", [value])
            elif act == "Relu6":
                zero, six = self.graph.const(np.float32(0)), self.graph.const(np.float32(6))
                value = self.graph.op("Clip", [value, zero, six])
            else:
                raise UnsupportedOpError(f"{name}: fused activation {act!r} is not supported")
        return value

    def _matmul(self, node: Mapping[str, Any], args: list[_Value]) -> _Value:
        name = node["name"]
        x, w = args[0], args[1]
        if x.nchw or x.shape is None or len(x.shape) != 2 or w.const is None:
            raise UnsupportedOpError(f"{name}: MatMul needs a 2-D input and a constant kernel")
        kernel = w.const.astype(np.float32)
        if _attr(node, "transpose_a", False):
            raise UnsupportedOpError(f"{name}: transpose_a is not supported")
        if _attr(node, "transpose_b", False):
            kernel = kernel.T
        fused = _attr(node, "fused_ops", []) if node["op"] == "_FusedMatMul" else []
        if fused[:1] == ["BiasAdd"]:
            bias = args[2].const.astype(np.float32)  # type: ignore[union-attr]
            fused = fused[1:]
        elif fused:
            raise UnsupportedOpError(f"{name}: fused ops {fused} (expected BiasAdd first)")
        else:
            bias = np.zeros(kernel.shape[1], np.float32)
        out = self.graph.op(
            "Gemm", [x.name, self.graph.const(kernel, "fc_w"), self.graph.const(bias, "fc_b")]
        )
        return _Value(self._activation(out, fused, name), (x.shape[0], kernel.shape[1]))

    def _binary(self, node: Mapping[str, Any], args: list[_Value]) -> _Value:
        a, b = args
        onnx_op = {
            "Add": "Add",
            "AddV2": "Add",
            "BiasAdd": "Add",
            "Sub": "Sub",
            "Mul": "Mul",
            "Minimum": "Min",
            "Maximum": "Max",
        }[node["op"]]
        if a.const is not None and b.const is not None:
            raise UnsupportedOpError(f"{node['name']}: constant folding is not supported")
        like = a if a.const is None else b
        shape = like.shape
        if a.const is None and b.const is None and a.shape != b.shape:
            shape = None  # broadcasting between two computed values: shape not tracked
        out = self.graph.op(onnx_op, [self._operand(a, like), self._operand(b, like)])
        return _Value(out, shape, nchw=like.nchw)

    def _unary(self, node: Mapping[str, Any], args: list[_Value]) -> _Value:
        (x,) = args
        op = node["op"]
        if op == "Square":
            out = self.graph.op("Mul", [x.name, x.name])
        elif op == "Rsqrt":
            out = self.graph.op("Reciprocal", [self.graph.op("Sqrt", [x.name])])
        elif op == "Relu6":
            out = self._activation(x.name, ["Relu6"], node["name"])
        elif op == "Identity":
            return x
        elif op == "Softmax":
            axis = 1 if x.nchw else -1  # TensorFlow: the last (channel) axis
            out = self.graph.op("Softmax", [x.name], axis=axis)
        else:
            out = self.graph.op({"Relu": "Relu", "Abs": "Abs", "Sigmoid": "Sigmoid"}[op], [x.name])
        return _Value(out, x.shape, nchw=x.nchw)

    def _axes(self, x: _Value, axes: Sequence[int]) -> list[int]:
        rank = len(x.shape) if x.shape is not None else 0
        axes = [a + rank if a < 0 else a for a in axes]
        return [NHWC_TO_NCHW[a] for a in axes] if x.nchw else list(axes)

    def _check_order(self, x: _Value, kept: Sequence[int], name: str) -> None:
        """After dropping axes of an NCHW value, the rest must be in NHWC order too."""
        if x.nchw and [NHWC_TO_NCHW[a] for a in kept] != sorted(NHWC_TO_NCHW[a] for a in kept):
            raise UnsupportedOpError(f"{name}: reducing/squeezing these axes reorders dims")

    def _reduce(self, node: Mapping[str, Any], args: list[_Value]) -> _Value:
        x, indices = args
        name = node["name"]
        if indices.const is None or x.shape is None:
            raise UnsupportedOpError(f"{name}: reduction axes must be constant")
        tf_axes = [int(a) % len(x.shape) for a in np.atleast_1d(indices.const)]
        keep = bool(_attr(node, "keep_dims", False))
        kept = [a for a in range(len(x.shape)) if a not in tf_axes]
        if not keep:
            self._check_order(x, kept, name)
        onnx_op = {"Mean": "ReduceMean", "Sum": "ReduceSum"}[node["op"]]
        axes = self._axes(x, tf_axes)
        if onnx_op == "ReduceSum":  # opset 13: axes is an input
            out = self.graph.op(
                onnx_op, [x.name, self.graph.const(np.array(axes, np.int64))], keepdims=int(keep)
            )
        else:
            out = self.graph.op(onnx_op, [x.name], axes=axes, keepdims=int(keep))
        if keep:
            shape = tuple(1 if a in tf_axes else d for a, d in enumerate(x.shape))
            return _Value(out, shape, nchw=x.nchw)
        return _Value(out, tuple(x.shape[a] for a in kept), nchw=False)

    def _squeeze(self, node: Mapping[str, Any], args: list[_Value]) -> _Value:
        (x,) = args
        name = node["name"]
        dims = _attr(node, "squeeze_dims", [])
        if not dims or x.shape is None:
            raise UnsupportedOpError(f"{name}: Squeeze needs explicit squeeze_dims")
        dims = [d % len(x.shape) for d in dims]
        kept = [a for a in range(len(x.shape)) if a not in dims]
        self._check_order(x, kept, name)
        axes = self._axes(x, dims)
        out = self.graph.op("Squeeze", [x.name, self.graph.const(np.array(axes, np.int64))])
        return _Value(out, tuple(x.shape[a] for a in kept), nchw=False)


def _signature_outputs(model_json: Mapping[str, Any]) -> list[str]:
    signature = model_json.get("signature") or (model_json.get("userDefinedMetadata") or {}).get(
        "signature"
    )
    outputs = (signature or {}).get("outputs") or {}
    return [spec.get("name", key).split(":")[0] for key, spec in outputs.items()]


_HANDLERS = {
    "Conv2D": GraphModel._conv,
    "DepthwiseConv2dNative": GraphModel._conv,
    "_FusedConv2D": GraphModel._conv,
    "FusedDepthwiseConv2dNative": GraphModel._conv,
    "MatMul": GraphModel._matmul,
    "_FusedMatMul": GraphModel._matmul,
    **dict.fromkeys(
        ("Add", "AddV2", "BiasAdd", "Sub", "Mul", "Minimum", "Maximum"), GraphModel._binary
    ),
    **dict.fromkeys(
        ("Relu", "Relu6", "Abs", "Sigmoid", "Softmax", "Square", "Rsqrt", "Identity"),
        GraphModel._unary,
    ),
    "Mean": GraphModel._reduce,
    "Sum": GraphModel._reduce,
    "Squeeze": GraphModel._squeeze,
}
