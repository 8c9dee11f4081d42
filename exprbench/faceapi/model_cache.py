"""face-api.js's networks as built ONNX models, kept in the user cache between processes.

Building a network (decoding its quantised weights, assembling the graph, serialising the
model) took ~0.8 s of every process that scores with face-api.js, more than the chain on
one image. The serialised model depends only on the weight files and the code that
converts them, so it is built once and stored as `<cache home>/onnx/<network>-<key>.onnx`
(~/.cache/exprbench, or $EXPRBENCH_HOME), where `key` is the sha256 of the network's name
and variant, the pinned sha256 of its weight files and the digest of the converter code
(every module of `exprbench.faceapi`, which holds the weight decoding and every graph
builder with all they import but `exprbench.labels`). A change to either is a new key;
nobody bumps a version.

Each stored file is a valid ONNX model whose last field is a metadata entry
`exprbench.crc32` holding the CRC-32 of every byte before it. A file that is unreadable,
short or fails that check is a miss: the model is rebuilt and rewritten (atomically, like
every cache write, so concurrent processes and workers sharing the cache never see a torn
file). Writing a build removes the same network's builds from other code or weights that
are more than a week old. Weights passed as a plain dict (not `NetworkWeights`) are built
every time.
"""

from __future__ import annotations

import functools
import hashlib
import json
import sys
import time
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from exprbench.faceapi.graph import Graph, metadata_entry
from exprbench.faceapi.weights import NetworkWeights
from exprbench.fileio import atomic_write_bytes

NAMESPACE = "onnx"
CHECKSUM_KEY = "exprbench.crc32"
# metadata_props entry with an 8-hex-digit value: a fixed-size trailer.
_TRAILER_PREFIX = metadata_entry(CHECKSUM_KEY, "00000000")[:-8]
_TRAILER_SIZE = len(_TRAILER_PREFIX) + 8

STALE_AFTER_S = 7 * 24 * 3600  # other builds of a network older than this are removed

Builder = Callable[..., Graph]


def cache_dir() -> Path:
    from exprbench.packaged import cache_home

    return cache_home() / NAMESPACE


@functools.cache
def converter_digest() -> str:
    """sha256 over (name, content) of every module of this package: the code that decodes
    the weights and builds the graphs lies within it (tests/test_faceapi_model_cache.py
    checks that each builder's import closure does). Reading ~15 small files takes ~1 ms;
    `code_digest`'s import-closure walk parses them, ~100 ms per process."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(f"{path.name}\0{hashlib.sha256(path.read_bytes()).hexdigest()}\n".encode())
    return digest.hexdigest()


def model_key(weights: NetworkWeights, build: Builder, variant: tuple[Any, ...] = ()) -> str:
    parts = {
        "network": weights.network,
        "builder": f"{build.__module__}.{build.__qualname__}",
        "variant": list(variant),
        "weights": weights.sha256,
        "code": converter_digest(),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def with_checksum(model: bytes) -> bytes:
    """`model` plus its CRC-32 as a last metadata entry (still a valid ONNX model)."""
    return model + metadata_entry(CHECKSUM_KEY, f"{zlib.crc32(model):08x}")


def checked(data: bytes) -> bool:
    """Whether `data` ends with a checksum entry matching every byte before it."""
    if len(data) <= _TRAILER_SIZE:
        return False
    body = memoryview(data)[:-_TRAILER_SIZE]
    trailer = data[-_TRAILER_SIZE:]
    if not trailer.startswith(_TRAILER_PREFIX):
        return False
    return trailer[len(_TRAILER_PREFIX) :] == f"{zlib.crc32(body):08x}".encode()


def load(path: Path) -> bytes | None:
    """A stored model that passes its checksum, or None (missing, unreadable, corrupt)."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return data if checked(data) else None


def network_model(weights: Mapping[str, np.ndarray], build: Builder, *variant: Any) -> bytes:
    """The serialised ONNX model `build(weights, *variant)`, from the user cache when
    `weights` is a `NetworkWeights` (then built and stored only on a miss)."""
    if not isinstance(weights, NetworkWeights):
        return build(weights, *variant).to_bytes()
    stem = "-".join([weights.network, *(str(v) for v in variant)])
    path = cache_dir() / f"{stem}-{model_key(weights, build, variant)}.onnx"
    model = load(path)
    if model is None:
        model = with_checksum(build(weights, *variant).to_bytes())
        try:
            atomic_write_bytes(path, model)
        except OSError as error:  # costs the build next time, never the result
            print(f"exprbench: could not cache {path}: {error}", file=sys.stderr)
        prune(path, stem)
    return model


def prune(kept: Path, stem: str, max_age_s: float = STALE_AFTER_S) -> list[Path]:
    """Remove the other builds of the same network and variant (older code or weights)
    written more than `max_age_s` ago: each is ~1-22 MB, and one code change would
    otherwise leave a full set behind. Recent ones stay, for checkouts of other versions
    that share the cache."""
    removed = []
    cutoff = time.time() - max_age_s
    for other in kept.parent.glob(f"{stem}-*.onnx"):
        name = other.name[len(stem) + 1 : -len(".onnx")]
        if other == kept or len(name) != 64:  # another variant's stem can share the prefix
            continue
        try:
            if other.stat().st_mtime < cutoff:
                other.unlink()
                removed.append(other)
        except OSError:
            continue  # gone already, or not ours to remove
    return removed
