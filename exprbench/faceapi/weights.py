"""face-api.js weight files: tfjs weights manifests and their uint8-quantised .bin files.

Each network ships as `<name>-weights_manifest.json` plus one `.bin` (npm package
`@vladmandic/face-api` 1.7.15, byte-identical to face-api.js 0.22.2's weights). The
manifest lists every tensor in file order with its shape and dtype; a quantised entry is
stored as uint8 (or uint16) `q` and decodes to `q * scale + min`, computed in float64 and
rounded to float32 exactly as tfjs-core's `io.decodeWeights` does.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

# network -> key in exprbench.weights.WEIGHTS of its .bin; the manifest is `<key>-manifest`.
NETWORK_WEIGHTS: dict[str, str] = {
    "ssd_mobilenetv1": "faceapi-ssd-mobilenetv1",
    "tiny_face_detector": "faceapi-tiny-face-detector",
    "face_landmark_68": "faceapi-landmark68",
    "face_expression": "faceapi-expression",
    "age_gender": "faceapi-age-gender",
    "face_recognition": "faceapi-recognition",
}

_STORED: dict[str, np.dtype] = {
    "float32": np.dtype("<f4"),
    "int32": np.dtype("<i4"),
    "bool": np.dtype("u1"),
}
_QUANTISED: dict[str, np.dtype] = {
    "uint8": np.dtype("u1"),
    "uint16": np.dtype("<u2"),
    "float16": np.dtype("<f2"),
}


class WeightFormatError(ValueError):
    """A weights manifest and its .bin do not fit together."""


def dequantize(q: np.ndarray, scale: float, minimum: float, dtype: str = "float32") -> np.ndarray:
    """uint8/uint16 codes -> values, as tfjs decodes them: float64 `q*scale + min`, then
    rounded to float32 (or Math.round-ed to int32 for int32 tensors)."""
    values = q.astype(np.float64) * float(scale) + float(minimum)
    if dtype == "int32":
        return np.floor(values + 0.5).astype(np.int32)
    return values.astype(np.float32)


def _decode_entry(data: bytes, offset: int, spec: Mapping[str, Any]) -> tuple[np.ndarray, int]:
    """One manifest entry read from `data` at `offset`: (its tensor, the offset after it)."""
    name, dtype = spec["name"], spec["dtype"]
    shape = tuple(int(d) for d in spec["shape"])
    count = math.prod(shape)
    quant = spec.get("quantization")
    stored = _QUANTISED[quant["dtype"]] if quant else _STORED[dtype]
    size = count * stored.itemsize
    if offset + size > len(data):
        raise WeightFormatError(f"{name}: needs bytes {offset}..{offset + size}, have {len(data)}")
    raw = np.frombuffer(data, dtype=stored, count=count, offset=offset)
    if quant and quant["dtype"] == "float16":
        values = raw.astype(np.float32)
    elif quant:
        values = dequantize(raw, quant["scale"], quant["min"], dtype)
    else:
        values = raw.astype(np.bool_) if dtype == "bool" else raw.copy()
    return values.reshape(shape), offset + size


def decode_weights(
    manifest: Sequence[Mapping[str, Any]], read: Callable[[str], bytes]
) -> dict[str, np.ndarray]:
    """All tensors of a tfjs weights manifest; `read(path)` returns one listed .bin file.

    The files of one group are concatenated and the group's entries read in order from it.
    """
    tensors: dict[str, np.ndarray] = {}
    for group in manifest:
        data = b"".join(read(path) for path in group["paths"])
        offset = 0
        for spec in group["weights"]:
            tensors[spec["name"]], offset = _decode_entry(data, offset, spec)
        if offset != len(data):
            raise WeightFormatError(f"{len(data) - offset} bytes left over after the last weight")
    return tensors


def load_manifest_weights(manifest_path: Path, bin_path: Path) -> dict[str, np.ndarray]:
    """Decode one network's manifest + .bin (the manifest must name exactly that .bin)."""
    manifest = json.loads(manifest_path.read_text())
    listed = [p for group in manifest for p in group["paths"]]
    if listed != [bin_path.name]:
        raise WeightFormatError(
            f"{manifest_path.name} lists {listed}, expected [{bin_path.name!r}]"
        )
    return decode_weights(manifest, lambda _path: bin_path.read_bytes())


def network_weights(network: str) -> dict[str, np.ndarray]:
    """Decoded tensors of one face-api.js network from the verified local weight files.

    Raises exprbench.scorers.base.ModelUnavailableError (with the command to run,
    `exprbench fetch-models`) when the files have not been fetched.
    """
    from exprbench.weights import weight_path

    key = NETWORK_WEIGHTS[network]
    return load_manifest_weights(weight_path(f"{key}-manifest"), weight_path(key))


class NetworkWeights(Mapping[str, np.ndarray]):
    """One network's decoded tensors, read and decoded on first use, tensor by tensor.

    Identified by its weight files' pinned sha256 (`sha256`), so a model built from it can
    be cached (`exprbench.faceapi.model_cache`) and a cached model needs no weights at
    all; the SSD detector reads only its anchors. Decoding is `decode_weights`' own, entry
    by entry: the values are the same. A missing file raises ModelUnavailableError (with
    `exprbench fetch-models`) at the first tensor read.
    """

    def __init__(self, network: str) -> None:
        from exprbench.weights import WEIGHTS

        self.network = network
        key = NETWORK_WEIGHTS[network]
        self.sha256 = {k: WEIGHTS[k].sha256 for k in (key, f"{key}-manifest")}
        self._index: dict[str, tuple[int, Mapping[str, Any]]] | None = None
        self._data = b""
        self._decoded: dict[str, np.ndarray] = {}

    def _entries(self) -> dict[str, tuple[int, Mapping[str, Any]]]:
        if self._index is None:
            from exprbench.weights import weight_path

            key = NETWORK_WEIGHTS[self.network]
            manifest_path, bin_path = weight_path(f"{key}-manifest"), weight_path(key)
            manifest = json.loads(manifest_path.read_text())
            listed = [p for group in manifest for p in group["paths"]]
            if listed != [bin_path.name]:
                raise WeightFormatError(
                    f"{manifest_path.name} lists {listed}, expected [{bin_path.name!r}]"
                )
            self._data = bin_path.read_bytes()
            index, offset = {}, 0
            for spec in manifest[0]["weights"]:
                index[spec["name"]] = (offset, spec)
                quant = spec.get("quantization")
                stored = _QUANTISED[quant["dtype"]] if quant else _STORED[spec["dtype"]]
                offset += math.prod(int(d) for d in spec["shape"]) * stored.itemsize
            if offset != len(self._data):
                raise WeightFormatError(
                    f"{bin_path.name}: {len(self._data)} bytes, its manifest lists {offset}"
                )
            self._index = index
        return self._index

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._decoded:
            offset, spec = self._entries()[name]
            self._decoded[name], _ = _decode_entry(self._data, offset, spec)
        return self._decoded[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries())

    def __len__(self) -> int:
        return len(self._entries())
