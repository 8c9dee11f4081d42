"""Build face-api.js's networks as ONNX graphs and run them with onnxruntime.

face-api.js ships weights only; its architecture lives in its source. Each network module
describes its layers with `Graph`'s tfjs-style helpers (TensorFlow 'same' padding, which
puts the odd extra pixel after, bottom/right), and `Graph.to_bytes` serialises the ONNX
model directly in protobuf wire format, so neither the `onnx` package nor an exporter is
needed. Graphs take NHWC float32 input, as face-api.js's tensors are, and transpose once.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

# onnxruntime (1.31, Linux) records usage events in ~/.cache/Microsoft/DeveloperTools and
# later uploads them (DNS lookups of mobile.events.data.microsoft.com). It reads this
# variable once, when it is imported; disable_telemetry_events() alone still records.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
import onnxruntime as ort

OPSET = 13
IR_VERSION = 8
_FLOAT, _INT64 = 1, 7  # TensorProto.DataType


# ---------------------------------------------------------------- protobuf wire format


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64 -> two's complement, as protobuf encodes it
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(field: int, wire: int) -> bytes:
    return _varint(field << 3 | wire)


def _int(field: int, value: int) -> bytes:
    return _key(field, 0) + _varint(value)


def _bytes(field: int, payload: bytes) -> bytes:
    return _key(field, 2) + _varint(len(payload)) + payload


def _str(field: int, text: str) -> bytes:
    return _bytes(field, text.encode())


def _float(field: int, value: float) -> bytes:
    return _key(field, 5) + struct.pack("<f", value)


def _tensor(name: str, array: np.ndarray) -> bytes:
    if array.dtype == np.float32:
        dtype = _FLOAT
    elif array.dtype == np.int64:
        dtype = _INT64
    else:
        raise TypeError(f"{name}: unsupported initializer dtype {array.dtype}")
    dims = b"".join(_int(1, d) for d in array.shape)
    raw = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False)
    return dims + _int(2, dtype) + _str(8, name) + _bytes(9, raw.tobytes())


def _attribute(name: str, value: Any) -> bytes:
    head = _str(1, name)
    if isinstance(value, bool | int | np.integer):
        return head + _int(20, 2) + _int(3, int(value))
    if isinstance(value, float):
        return head + _int(20, 1) + _float(2, value)
    if isinstance(value, str):
        return head + _int(20, 3) + _bytes(4, value.encode())
    if isinstance(value, Sequence) and all(isinstance(v, int) for v in value):
        return head + _int(20, 7) + b"".join(_int(8, int(v)) for v in value)
    raise TypeError(f"attribute {name}: unsupported value {value!r}")


def _value_info(name: str, shape: Sequence[int | str] | None) -> bytes:
    tensor_type = _int(1, _FLOAT)
    if shape is not None:
        dims = b"".join(_bytes(1, _str(2, d) if isinstance(d, str) else _int(1, d)) for d in shape)
        tensor_type += _bytes(2, dims)
    return _str(1, name) + _bytes(2, _bytes(1, tensor_type))


def metadata_entry(key: str, value: str) -> bytes:
    """A ModelProto `metadata_props` entry; appended to a serialised model, it adds one."""
    return _bytes(14, _str(1, key) + _str(2, value))


# ---------------------------------------------------------------- graph builder


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'same' padding (before, after) along one axis."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def out_size(size: int, kernel: int, stride: int, padding: str) -> int:
    """Output length of a 'same' or 'valid' conv/pool along one axis."""
    if padding == "same":
        return -(-size // stride)
    return (size - kernel) // stride + 1


class Graph:
    """An ONNX graph under construction; values are referred to by name.

    The helpers mirror the tfjs ops face-api.js uses; those that change spatial size take
    and return the current (square) size, since 'same' padding depends on it.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._nodes: list[bytes] = []
        self._initializers: list[bytes] = []
        self._inputs: list[bytes] = []
        self._outputs: list[bytes] = []
        self._count = 0

    def _fresh(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def input(self, name: str, shape: Sequence[int | str]) -> str:
        self._inputs.append(_value_info(name, shape))
        return name

    def output(self, value: str, name: str) -> str:
        self.op("Identity", [value], name=name)
        self._outputs.append(_value_info(name, None))
        return name

    def const(self, array: npt.ArrayLike, hint: str = "c") -> str:
        arr = np.asarray(array)
        arr = arr.astype(np.int64 if arr.dtype.kind in "iu" else np.float32)
        name = self._fresh(hint)
        self._initializers.append(_tensor(name, arr))
        return name

    def op(self, op_type: str, inputs: Sequence[str], name: str | None = None, **attrs: Any) -> str:
        out = name or self._fresh(op_type.lower())
        node = b"".join(_str(1, i) for i in inputs) + _str(2, out)
        node += _str(3, out) + _str(4, op_type)
        node += b"".join(_bytes(5, _attribute(k, v)) for k, v in attrs.items())
        self._nodes.append(node)
        return out

    def to_bytes(self) -> bytes:
        graph = b"".join(_bytes(1, n) for n in self._nodes) + _str(2, self.name)
        graph += b"".join(_bytes(5, t) for t in self._initializers)
        graph += b"".join(_bytes(11, i) for i in self._inputs)
        graph += b"".join(_bytes(12, o) for o in self._outputs)
        opset = _bytes(8, _str(1, "") + _int(2, OPSET))
        return _int(1, IR_VERSION) + _str(2, "exprbench.faceapi") + _bytes(7, graph) + opset

    # ------------------------------------------------------------ tfjs-style layers

    def nhwc_to_nchw(self, x: str) -> str:
        return self.op("Transpose", [x], perm=[0, 3, 1, 2])

    def conv(
        self,
        x: str,
        size: int,
        filters: np.ndarray,
        bias: np.ndarray | None,
        stride: int = 1,
        padding: str = "same",
        depthwise: bool = False,
    ) -> tuple[str, int]:
        """tf.conv2d / tf.depthwiseConv2d (+ bias). filters: tfjs [kh, kw, in, out] or,
        depthwise, [kh, kw, C, 1]."""
        kernel = filters.shape[0]
        if depthwise:
            weight = filters.transpose(2, 3, 0, 1)  # [C, 1, kh, kw]
            group = filters.shape[2]
        else:
            weight = filters.transpose(3, 2, 0, 1)  # [out, in, kh, kw]
            group = 1
        before, after = same_padding(size, kernel, stride) if padding == "same" else (0, 0)
        inputs = [x, self.const(np.ascontiguousarray(weight), "w")]
        if bias is not None:
            inputs.append(self.const(bias.reshape(-1), "b"))
        out = self.op(
            "Conv",
            inputs,
            kernel_shape=[kernel, kernel],
            strides=[stride, stride],
            pads=[before, before, after, after],
            group=group,
        )
        return out, out_size(size, kernel, stride, padding)

    def separable_conv(
        self,
        x: str,
        size: int,
        weights: Mapping[str, np.ndarray],
        prefix: str,
        stride: int = 1,
    ) -> tuple[str, int]:
        """tf.separableConv2d(x, depthwise_filter, pointwise_filter, stride, 'same') + bias."""
        dw, size = self.conv(
            x, size, weights[f"{prefix}/depthwise_filter"], None, stride, depthwise=True
        )
        out, _ = self.conv(
            dw, size, weights[f"{prefix}/pointwise_filter"], weights[f"{prefix}/bias"]
        )
        return out, size

    def max_pool(
        self, x: str, size: int, kernel: int, stride: int, padding: str
    ) -> tuple[str, int]:
        """tf.maxPool: padded cells never win."""
        before, after = same_padding(size, kernel, stride) if padding == "same" else (0, 0)
        out = self.op(
            "MaxPool",
            [x],
            kernel_shape=[kernel, kernel],
            strides=[stride, stride],
            pads=[before, before, after, after],
        )
        return out, out_size(size, kernel, stride, padding)

    def avg_pool(self, x: str, size: int, kernel: int, stride: int) -> tuple[str, int]:
        """tf.avgPool(..., 'valid')."""
        out = self.op("AveragePool", [x], kernel_shape=[kernel, kernel], strides=[stride, stride])
        return out, out_size(size, kernel, stride, "valid")

    def relu(self, x: str) -> str:
        return self.op("Relu", [x])

    def relu6(self, x: str) -> str:
        """tf.clipByValue(x, 0, 6)."""
        return self.op("Clip", [x, self.const(np.float32(0)), self.const(np.float32(6))])

    def add(self, a: str, b: str) -> str:
        return self.op("Add", [a, b])

    def dense(self, x: str, weights: np.ndarray, bias: np.ndarray) -> str:
        """tf.matMul(x, weights [in, out]) + bias on N x in."""
        return self.op("Gemm", [x, self.const(weights, "fc_w"), self.const(bias, "fc_b")])

    def flatten(self, x: str) -> str:
        return self.op("Flatten", [x], axis=1)

    def softmax(self, x: str) -> str:
        return self.op("Softmax", [x], axis=1)


def no_telemetry() -> None:
    """Turn onnxruntime's telemetry events off (call before creating any session).

    The import above already set ORT_DISABLE_TELEMETRY; this also covers a process that
    imported onnxruntime before exprbench did.
    """
    ort.disable_telemetry_events()


def session(model: bytes, threads: int | None = None, spin: bool = False) -> ort.InferenceSession:
    """An onnxruntime CPU session for a serialised model (all graph optimisations on).

    threads: intra-op threads (None: onnxruntime's default, one per physical core).
    spin: let idle pool threads spin-wait for work. Off by default: spinning saves ~1 ms
    on an idle machine but, with several sessions (face-api.js's chain has five) or other
    processes on the same cores, the spinning threads steal the cores from the work.
    """
    no_telemetry()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.inter_op_num_threads = 1
    if threads is not None:
        options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    options.log_severity_level = 3
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


class Network:
    """A built graph (or serialised model) and its session: `run(**inputs)` returns the
    outputs by name."""

    def __init__(
        self, graph: Graph | bytes, threads: int | None = None, spin: bool = False
    ) -> None:
        model = graph if isinstance(graph, bytes) else graph.to_bytes()
        self.session = session(model, threads, spin)
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        feeds = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in inputs.items()}
        return dict(zip(self.output_names, self.session.run(None, feeds), strict=True))
