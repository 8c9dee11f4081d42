"""A content-addressed cache for per-image work.

Keys are hashes of what determines a result (file content hash, model version, the
params that matter), never of paths, so renaming or adding files reuses earlier work.
It lives outside DVC's outputs because DVC deletes a stage's outputs before rerunning it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from exprbench.fileio import atomic_write_bytes
from exprbench.imageio import encode_png


def cache_key(*parts: Any) -> str:
    """Stable sha256 of JSON-serialisable parts (dict keys sorted).

    Callers pass what determines the result: the content hash of the input, the derived
    digest of the code that computes it (`exprbench.fingerprint.code_digest`), the sha256
    of its weights and its options. Never a path, never a hand-typed version.
    """
    payload = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


class ContentCache:
    """JSON records and binary blobs under root/namespace/ab/<key>.<suffix>."""

    def __init__(self, root: str | os.PathLike[str], namespace: str) -> None:
        self.root = Path(root) / namespace
        self.hits = 0
        self.misses = 0

    def _path(self, key: str, suffix: str) -> Path:
        return self.root / key[:2] / f"{key}.{suffix}"

    def get_json(self, key: str) -> Any | None:
        path = self._path(key, "json")
        try:
            value = json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            # A torn or missing record is a miss; it is rewritten atomically.
            self.misses += 1
            return None
        self.hits += 1
        return value

    def get_or_compute(self, key: str, compute: Callable[[], Any]) -> Any:
        """The JSON record under `key`; on a miss, `compute()` it, store it, return it.

        Every stage's per-image work goes through here, so a result is computed once per
        identity (see `cache_key`) and a torn record is recomputed, never trusted.
        """
        value = self.get_json(key)
        if value is None:
            value = compute()
            self.put_json(key, value)
        return value

    def put_json(self, key: str, value: Any) -> None:
        atomic_write_bytes(self._path(key, "json"), json.dumps(value).encode())

    def blob_path(self, key: str, suffix: str) -> Path:
        return self._path(key, suffix)

    def put_blob(self, key: str, suffix: str, data: bytes) -> Path:
        path = self._path(key, suffix)
        atomic_write_bytes(path, data)
        return path

    def put_image(self, rgb: np.ndarray) -> str:
        """Store `rgb` as a PNG blob keyed by the PNG's own sha256; return that sha256."""
        png = encode_png(rgb)
        sha = hashlib.sha256(png).hexdigest()
        self.put_blob(sha, "png", png)
        return sha
