"""Report thumbnails cached by content, so a rerun of the report after new images arrive
encodes only the new ones (decoding and JPEG-encoding ~1,000 thumbnails takes seconds).

A thumbnail is keyed by the sha256 of its file's bytes, its size and the code digest of
the module whose function encodes it (`exprbench.fingerprint.code_digest`: that module
and every project module it imports, so a new quality setting or encoder is a new key),
never by path. Entries live under `<paths.cache>/thumbnails/`, outside DVC's outputs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import cached_property
from pathlib import Path

from exprbench.cache import ContentCache, cache_key
from exprbench.fingerprint import code_digest

NAMESPACE = "thumbnails"


class ThumbnailCache:
    """`encode(path, size)` (a thumbnail as a string, e.g. a data URI), cached by content."""

    def __init__(self, root: Path, encode: Callable[[Path, int], str]) -> None:
        self.entries = ContentCache(root, NAMESPACE)
        self.encode = encode

    @cached_property
    def code(self) -> str:
        return code_digest(self.encode.__module__)

    def data_uri(self, path: Path, size: int) -> str:
        """The thumbnail of `path`: from the cache, or encoded now and stored. A file
        that cannot be read or decoded raises as `encode` does, and nothing is stored."""
        content = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        key = cache_key(content, size, self.code)
        value = self.entries.get_or_compute(key, lambda: self.encode(Path(path), size))
        return str(value)
