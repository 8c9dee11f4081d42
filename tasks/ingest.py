"""Stage 1, ingest: discover input files, hash and decode-check them, record labels."""

from __future__ import annotations

import hashlib
from dataclasses import asdict

from prefect import task
from prefect.cache_policies import NONE

from exprbench.cache import ContentCache, cache_key
from exprbench.config import Layout
from exprbench.fingerprint import code_digest
from exprbench.imageio import ImageMeta, ImageRejected, decode_bytes, hash_file, read_file
from exprbench.ingest import Candidate, discover, image_rows, load_subjects
from exprbench.schema import IMAGES, QUARANTINE, write_rows
from exprbench.settings import Settings
from tasks.common import StageResult, progress_bar


def _inspector(cache: ContentCache, max_pixels: int):
    code = code_digest("exprbench.imageio")  # what decodes and normalises an image

    def inspect(candidate: Candidate) -> tuple[str | None, ImageMeta | ImageRejected]:
        # Size and header are checked before any full read; the hash is taken in chunks, so
        # a cache hit never holds the file in memory. Unreadable files give the OS error.
        try:
            sha = hash_file(candidate.abs_path, max_pixels=max_pixels)
        except ImageRejected as error:
            return None, error

        def decode() -> dict:
            try:
                data = read_file(candidate.abs_path, max_pixels=max_pixels)
                if hashlib.sha256(data).hexdigest() != sha:
                    raise ImageRejected("file changed while it was being read; rerun")
                return {"meta": asdict(decode_bytes(data, max_pixels=max_pixels).meta)}
            except ImageRejected as error:
                return {"rejected": str(error)}

        cached = cache.get_or_compute(cache_key("ingest", code, sha, max_pixels), decode)
        if "rejected" in cached:
            return sha, ImageRejected(cached["rejected"])
        return sha, ImageMeta(**cached["meta"])

    return inspect


@task(name="ingest", cache_policy=NONE)
def ingest(layout: Layout, settings: Settings) -> StageResult:
    found = discover(layout.input_dir, list(settings.ingest.extensions))
    subjects = load_subjects(layout.input_dir)
    # A quarantined subjects.csv is a discovered path too (the invariant below counts it).
    found.rejected.extend(subjects.rejected)
    found.n_discovered += len(subjects.rejected)
    cache = ContentCache(layout.cache, "ingest")
    inspect = _inspector(cache, settings.ingest.max_pixels)
    with progress_bar("ingest", len(found.candidates)) as bar:
        rows, rejected = image_rows(
            found, subjects.table, lambda c: (bar.update(), inspect(c))[1], subjects.unusable
        )
    if len(rows) + len(rejected) != found.n_discovered:
        raise RuntimeError(
            f"ingest lost files: {found.n_discovered} discovered, {len(rows)} kept, "
            f"{len(rejected)} quarantined"
        )
    write_rows(rows, layout.images, IMAGES)
    write_rows(
        [
            {"path": r.path, "sha256": r.sha256, "stage": "ingest", "reason": r.reason}
            for r in rejected
        ],
        layout.quarantine,
        QUARANTINE,
    )
    result = StageResult(
        "ingest",
        {
            "discovered": found.n_discovered,
            "accepted": len(rows),
            "quarantined": len(rejected),
            "cache_hits": cache.hits,
            "cache_misses": cache.misses,
        },
    )
    result.rows = [{"path": r.path, "reason": r.reason} for r in rejected]
    return result
