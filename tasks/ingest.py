"""Stage 1, ingest: discover input files, cut image sheets into cells, hash and
decode-check every image, read its generation metadata, record labels."""

from __future__ import annotations

import hashlib
from dataclasses import asdict
from importlib import metadata

from prefect import task
from prefect.cache_policies import NONE

from exprbench import sheets
from exprbench.cache import ContentCache, cache_key
from exprbench.config import Layout
from exprbench.fingerprint import code_digest
from exprbench.genmeta import GenerationMeta, read_generation_metadata
from exprbench.imageio import ImageMeta, ImageRejected, decode_bytes, hash_file, read_file
from exprbench.ingest import (
    Candidate,
    Discovery,
    Rejected,
    SheetDecl,
    add_sheet_cells,
    discover,
    image_rows,
    load_subjects,
)
from exprbench.schema import IMAGES, QUARANTINE, write_rows
from exprbench.settings import IngestSettings, Settings
from exprbench.versions import VersionOrderError, version_orders
from tasks.common import StageResult, materialise, progress_bar


def _read_checked(path, sha: str, max_pixels: int) -> bytes:
    data = read_file(path, max_pixels=max_pixels)
    if hashlib.sha256(data).hexdigest() != sha:
        raise ImageRejected("file changed while it was being read; rerun")
    return data


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
                data = _read_checked(candidate.abs_path, sha, max_pixels)
                return {"meta": asdict(decode_bytes(data, max_pixels=max_pixels).meta)}
            except ImageRejected as error:
                return {"rejected": str(error)}

        cached = cache.get_or_compute(cache_key("ingest", code, sha, max_pixels), decode)
        if "rejected" in cached:
            return sha, ImageRejected(cached["rejected"])
        return sha, ImageMeta(**cached["meta"])

    return inspect


def _describer(cache: ContentCache, max_pixels: int):
    """Generation metadata of a candidate's file (a cell: of its sheet), cached by content."""
    code = code_digest("exprbench.genmeta")
    try:
        reader = f"c2pa-python {metadata.version('c2pa-python')}"  # what reads C2PA
    except metadata.PackageNotFoundError:
        reader = "no c2pa reader"

    def describe(candidate: Candidate, sha: str) -> GenerationMeta:
        path = candidate.sheet.sheet_abs_path if candidate.sheet else candidate.abs_path
        sha = candidate.sheet.sheet_sha256 if candidate.sheet else sha

        def read() -> dict:
            try:
                data = _read_checked(path, sha, max_pixels)
            except ImageRejected as error:
                return GenerationMeta(notes=[f"metadata not read: {error}"]).to_json()
            return read_generation_metadata(data).to_json()

        key = cache_key("genmeta", code, reader, sha)
        return GenerationMeta.from_json(cache.get_or_compute(key, read))

    return describe


def _cut_sheets(
    found: Discovery, layout: Layout, cache: ContentCache, options: IngestSettings
) -> int:
    """Cut every declared sheet into cell images under interim/cells (content-addressed,
    copied atomically) and replace it by its cells; a sheet that cannot be cut as declared
    is quarantined with the reason. Returns the number of cells."""
    max_pixels = options.max_pixels
    tolerance = options.sheet_uniform_std
    code = [code_digest("exprbench.sheets"), code_digest("exprbench.imageio")]
    n_cells = 0
    for decl in found.sheets:
        try:
            sha = hash_file(decl.abs_path, max_pixels=max_pixels)
        except ImageRejected as error:
            found.rejected.append(Rejected(decl.path, f"{decl.where}: sheet quarantined: {error}"))
            continue

        def cut(decl: SheetDecl = decl, sha: str = sha) -> dict:
            try:
                rgb = decode_bytes(_read_checked(decl.abs_path, sha, max_pixels)).rgb
                cuts = sheets.cut_grid(rgb, decl.rows, decl.columns, tolerance)
                kept = [c for c, e in zip(cuts, decl.expressions, strict=True) if e is not None]
                for cell in kept:
                    sheets.check_cell(rgb, cell, tolerance)
            except (ImageRejected, sheets.SheetError) as error:
                return {"rejected": str(error)}
            return {
                "cells": [
                    [c.row, c.column, c.method, cache.put_image(sheets.crop(rgb, c))] for c in kept
                ]
            }

        skips = [e is None for e in decl.expressions]
        identity = cache_key("sheet", code, sha, decl.rows, decl.columns, skips, tolerance)
        record = cache.get_or_compute(identity, cut)
        if "rejected" in record:
            reason = f"{decl.where}: sheet quarantined: {record['rejected']}"
            found.rejected.append(Rejected(decl.path, reason, sha))
            continue
        cells = [
            (
                row,
                column,
                method,
                layout.cells_dir / materialise(cache, blob, "png", layout.cells_dir),
            )
            for row, column, method, blob in record["cells"]
        ]
        n_cells += add_sheet_cells(found, decl, sha, cells)
    return n_cells


def _version_order(
    layout: Layout, rows: list[dict], found: Discovery, rejected: list[Rejected]
) -> dict[str, int | float | str]:
    """The summary's version_order (and version_order_warning when it fell back to folder
    times); a malformed versions.csv (or manifest release_date) is quarantined."""
    pairs = {(row["generator"], row["version"]) for row in rows}
    try:
        orders = version_orders(layout.input_dir, pairs)
    except VersionOrderError as error:
        if not any(r.path == error.file for r in rejected):  # a broken manifest already is
            found.n_discovered += 1
            reason = f"{error}; the version order was not read from it"
            rejected.append(Rejected(error.file, reason))
        return {"version_order": f"not read ({error.file} quarantined)"}
    several = [order for order in orders.values() if len(order.versions) > 1]
    counts: dict[str, int | float | str] = {
        "version_order": "; ".join(o.describe() for o in several) or "one version per generator"
    }
    warnings = [order.warning for order in several if order.warning]
    if warnings:
        counts["version_order_warning"] = "; ".join(warnings)
    return counts


@task(name="ingest", cache_policy=NONE)
def ingest(layout: Layout, settings: Settings) -> StageResult:
    found = discover(layout.input_dir, list(settings.ingest.extensions))
    subjects = load_subjects(layout.input_dir)
    # A quarantined subjects.csv is a discovered path too (the invariant below counts it).
    found.rejected.extend(subjects.rejected)
    found.n_discovered += len(subjects.rejected)
    cache = ContentCache(layout.cache, "ingest")
    # one cache per kind of work, so each count below says what was (re)done
    sheet_cache = ContentCache(layout.cache, "sheets")
    meta_cache = ContentCache(layout.cache, "genmeta")
    layout.cells_dir.mkdir(parents=True, exist_ok=True)  # a DVC output, even when empty
    n_cells = _cut_sheets(found, layout, sheet_cache, settings.ingest)
    inspect = _inspector(cache, settings.ingest.max_pixels)
    describe = _describer(meta_cache, settings.ingest.max_pixels)
    with progress_bar("ingest", len(found.candidates)) as bar:
        rows, rejected = image_rows(
            found,
            subjects.table,
            lambda c: (bar.update(), inspect(c))[1],
            subjects.unusable,
            describe,
        )
    order_counts = _version_order(layout, rows, found, rejected)
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
            "sheets": len(found.sheets),
            "sheet_cells": n_cells,
            "metadata_read": sum(1 for r in rows if r["meta_source"]),
            "label_conflicts": sum(1 for r in rows if r["label_conflict"]),
            "cache_hits": cache.hits,
            "cache_misses": cache.misses,
            "sheet_cache_misses": sheet_cache.misses,
            "metadata_cache_misses": meta_cache.misses,
            **order_counts,
        },
    )
    result.rows = [{"path": r.path, "reason": r.reason} for r in rejected]
    return result
