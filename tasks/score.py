"""Stage 4, score: run every configured scorer on each primary face (long format).

In batches through the task runner of params `runner` (tasks/runner.py): first the neutral
images (every image is measured against its set's neutral, and against the other
subjects' neutrals as impostors), then every image in the faces table's order, streamed
into the scores table. The rows are those of `score_rows` over the whole table at once.
"""

from __future__ import annotations

import json
from array import array
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from itertools import chain, zip_longest
from typing import Any

import numpy as np
from prefect import task
from prefect.cache_policies import NONE

from exprbench.cache import ContentCache, cache_key
from exprbench.config import Layout
from exprbench.faces import FaceDetector, face_from_record
from exprbench.fingerprint import code_digest
from exprbench.gallery import (
    GALLERY_DETECTION,
    descriptor_cache_dir,
    gallery_descriptor,
    gallery_paths,
)
from exprbench.identity import add_impostor_measures, impostor_references
from exprbench.imageio import load_rgb
from exprbench.labels import NEUTRAL
from exprbench.schema import (
    FACES,
    IMAGES,
    THRESHOLD_METADATA_KEY,
    THRESHOLDS_METADATA_KEY,
    UPSCALE,
    ParquetRowWriter,
    SchemaMismatchError,
    iter_rows,
    scores_schema,
)
from exprbench.scorers import (
    ModelUnavailableError,
    PairScorer,
    Scorer,
    ScorerFoundNoFaceError,
    get_scorer_class,
)
from exprbench.scoring import identity_thresholds, image_rows, output_to_dict, score_rows
from exprbench.settings import ScoreSettings, Settings
from exprbench.unavailable import COLUMN as UNAVAILABLE
from exprbench.unavailable import summary, whole_scorer
from tasks.common import StageResult, progress_bar, table_rows
from tasks.runner import BatchMap, BatchResult, Tally, absolute_layout, batched, worker_local


@dataclass(frozen=True)
class ScoreRun:
    """What every batch of one score run needs (sent with each batch; small)."""

    layout: Layout  # absolute paths (tasks.runner.absolute_layout)
    options: ScoreSettings
    max_pixels: int
    identities: dict[str, str]  # scorer -> cache identity
    versions: dict[str, str]  # scorer -> code_version() (derived once, in the stage)
    gallery: dict[str, list[tuple[str, list[float]]]]  # identity scorer -> impostor faces
    gallery_note: str | None
    failed: dict[str, ModelUnavailableError]  # scorers that could not run in the stage


class Scoring:
    """One batch's scorer calls: cached outputs, this worker's scorer instances."""

    def __init__(self, run: ScoreRun) -> None:
        self.run = run
        self.classes = {name: get_scorer_class(name) for name in run.options.scorers}
        self.cache = ContentCache(run.layout.cache, "score")
        self.failed = dict(run.failed)  # scorers that cannot run in this process
        self.loaded: dict[str, np.ndarray] = {}  # the current image, shared by its scorers
        self.upscaled: dict[str, dict] = {}

    def scorer(self, name: str) -> Scorer:
        if name in self.failed:
            raise self.failed[name]
        options = self.run.options.options_for(name)
        try:
            return worker_local(
                f"scorer:{name}", self.run.identities[name], partial(self.classes[name], options)
            )
        except ModelUnavailableError as error:
            self.failed[name] = error
            raise

    def cached(self, name: str, key: str, compute: Any) -> dict:
        # an unavailable model's rows get null outputs and its reason, and are not cached:
        # the next run, with the model provided, computes them
        try:
            return self.cache.get_or_compute(key, compute)
        except ModelUnavailableError as error:
            self.failed.setdefault(name, error)
            return {"unavailable": whole_scorer(self.failed[name])}

    def work_image(self, face_row: Mapping[str, Any]) -> np.ndarray:
        path = self.upscaled[face_row["path"]]["work_path"]
        if path not in self.loaded:
            self.loaded.clear()
            self.loaded[path] = load_rgb(
                self.run.layout.resolve(path), max_pixels=self.run.max_pixels
            )
        return self.loaded[path]

    def score(self, name: str, face_row: Mapping[str, Any]) -> dict:
        def compute() -> dict:
            try:
                face = face_from_record(face_row)
                return output_to_dict(self.scorer(name).score(self.work_image(face_row), face))
            except ScorerFoundNoFaceError as error:
                return {"no_face": f"{name}: {error}"}

        geometry = [face_row[k] for k in ("landmarks5", "box_x", "box_y", "box_w", "box_h")]
        key = cache_key("score", self.run.identities[name], face_row["work_sha256"], geometry)
        return self.cached(name, key, compute)

    def compare(self, name: str, row: Mapping[str, Any], reference: Mapping[str, Any]) -> dict:
        def compute() -> dict:
            pair = self.scorer(name)
            assert isinstance(pair, PairScorer)
            crop, ref = (
                load_rgb(self.run.layout.crops_dir / f"{r['crop_sha256']}.png")
                for r in (row, reference)
            )
            return output_to_dict(pair.compare(crop, ref))

        identity = self.run.identities[name]
        key = cache_key("pair", identity, row["crop_sha256"], reference["crop_sha256"])
        return self.cached(name, key, compute)

    def inputs(self, items: list[dict]) -> tuple[list[dict], dict, dict, dict]:
        """Faces rows, upscale rows, genders and ages of `face_items`' items (by path)."""
        faces = [item["face"] for item in items]
        self.upscaled = {item["face"]["path"]: item["upscale"] for item in items}
        genders = {item["face"]["path"]: item["gender"] for item in items}
        ages = {item["face"]["path"]: item["age"] for item in items}
        return faces, self.upscaled, genders, ages

    def rows(self, items: list[dict], neutrals: list[dict] | None) -> BatchResult:
        """`image_rows` of `items` (neutrals None), else their finished rows."""
        faces, upscaled, genders, ages = self.inputs(items)
        options = self.run.options
        if neutrals is None:
            rows = image_rows(
                faces,
                upscaled,
                genders,
                self.classes,
                self.score,
                age_by_path=ages,
                tau=options.tau,
                versions=self.run.versions,
            )
        else:
            rows = score_rows(
                faces,
                upscaled,
                genders,
                self.classes,
                self.score,
                self.compare,
                options.same_identity_threshold,
                age_by_path=ages,
                tau=options.tau,
                neutrals=neutrals,
                versions=self.run.versions,
            )
            rows = add_impostor_measures(
                rows, self.run.gallery, self.run.gallery_note, impostor_references(neutrals)
            )
        return BatchResult(rows, self.cache.hits, self.cache.misses)


@task(name="score-neutrals", cache_policy=NONE)
def score_neutrals(batch: list[dict], run: ScoreRun) -> BatchResult:
    """The rows of a batch of neutral images, before the measures against the neutral."""
    return Scoring(run).rows(batch, None)


@task(name="score-batch", cache_policy=NONE)
def score_batch(batch: list[dict], run: ScoreRun, neutrals: list[dict]) -> BatchResult:
    """The finished scores rows of a batch of images; `neutrals`: `score_neutrals`' rows of
    every neutral image of the batch's generator/versions."""
    return Scoring(run).rows(batch, neutrals)


def face_items(layout: Layout, batch_size: int, expression: str | None = None) -> Iterator[dict]:
    """Each faces row (of `expression` only, if given) with its upscale row and its
    subject's labels, streamed (upscale and faces write their tables in the images table's
    order)."""
    tables = (
        (layout.faces_table, FACES),
        (layout.upscale_table, UPSCALE),
        (layout.images, IMAGES),
    )
    # every row is read and checked; the rows of other expressions are skipped here (a
    # pyarrow filter expression would import pyarrow.dataset: ~0.2 s of the stage's start)
    streams = [chain.from_iterable(iter_rows(path, schema, batch_size)) for path, schema in tables]
    for face, upscaled, image in zip_longest(*streams):
        paths = {r["path"] if r else None for r in (face, upscaled, image)}
        if len(paths) != 1:
            raise SchemaMismatchError(
                f"{layout.faces_table}, {layout.upscale_table} and {layout.images} are out of "
                f"step ({' / '.join(str(r and r['path']) for r in (face, upscaled, image))}): "
                "rerun the upscale and faces stages"
            )
        if expression is not None and face["expression"] != expression:
            continue
        yield {
            "face": face,
            "upscale": upscaled,
            "gender": image["subject_gender"],
            "age": image["subject_age"],
        }


def impostor_gallery(
    options: ScoreSettings, identities: dict[str, str], max_pixels: int
) -> tuple[dict[str, list[tuple[str, list[float]]]], str | None, dict, int]:
    """Impostor gallery: each identity scorer's descriptor of each gallery face, computed
    once per (scorer identity, image content) and cached like any image's scores; the
    gallery, why it is missing, the scorers that could not run, the cache misses."""
    gallery_files, gallery_note = gallery_paths(options.impostor_gallery)
    # shared by every run (exprbench.gallery.descriptor_cache_dir); counted apart
    gallery_cache = ContentCache(descriptor_cache_dir(), "gallery")
    failed: dict[str, ModelUnavailableError] = {}
    instances: dict[str, Scorer] = {}
    detectors: list[FaceDetector] = []

    def gallery_output(name: str, path: Any) -> dict:
        if not detectors:
            detectors.append(FaceDetector())
        if name not in instances:
            instances[name] = get_scorer_class(name)(options.options_for(name))
        rgb = load_rgb(path, max_pixels=max_pixels)
        return gallery_descriptor(detectors[0], instances[name], rgb)

    gallery: dict[str, list[tuple[str, list[float]]]] = {}
    gallery_code = code_digest("exprbench.gallery")  # detection + scoring of a gallery face
    for name in options.scorers:
        if "identity" not in get_scorer_class(name).outputs:
            continue
        gallery[name] = []
        try:
            for gallery_id, path, sha256 in gallery_files:
                key = cache_key(
                    "gallery", identities[name], gallery_code, sha256, GALLERY_DETECTION
                )
                result = gallery_cache.get_or_compute(key, partial(gallery_output, name, path))
                if result.get("descriptor") is not None:
                    gallery[name].append((gallery_id, result["descriptor"]))
        except ModelUnavailableError as error:
            # its rows say why (unavailable); the run goes on without it
            failed[name] = error
            gallery[name] = []
    return gallery, gallery_note, failed, gallery_cache.misses


@task(name="score", cache_policy=NONE)
def score(layout: Layout, settings: Settings) -> StageResult:
    options = settings.score
    max_pixels = settings.ingest.max_pixels  # upscale keeps its images within this too
    runner = settings.runner
    classes = {name: get_scorer_class(name) for name in options.scorers}  # unknown names fail
    identities = {
        name: cls.cache_identity(options.options_for(name)) for name, cls in classes.items()
    }
    gallery, gallery_note, failed, gallery_misses = impostor_gallery(
        options, identities, max_pixels
    )
    versions = {name: cls.code_version() for name, cls in classes.items()}
    run = ScoreRun(
        absolute_layout(layout),
        options,
        max_pixels,
        identities,
        versions,
        gallery,
        gallery_note,
        failed,
    )
    schema = scores_schema(
        [spec for cls in classes.values() for spec in cls.metrics()],
        {name: cls.filled_columns() for name, cls in classes.items()},
    )
    # validate checks same_identity against the threshold it was computed with
    schema = schema.with_metadata(
        {
            **(schema.metadata or {}),
            THRESHOLD_METADATA_KEY: str(options.same_identity_threshold).encode(),
            THRESHOLDS_METADATA_KEY: json.dumps(
                identity_thresholds(classes, options.same_identity_threshold), sort_keys=True
            ).encode(),
        }
    )
    n_faces = table_rows(layout.faces_table)
    tally = Tally()
    unavailable: set[tuple[str, str]] = set()  # (scorer, unavailable column) seen
    target_probs: dict[str, array] = {}
    bar = progress_bar("score", n_faces)
    with BatchMap(runner) as mapper:
        # 1. the neutral images (few): every other image is measured against them
        neutral_items = face_items(layout, runner.batch_size, NEUTRAL)
        neutral_rows: dict[tuple[str, str], list[dict]] = defaultdict(list)
        for done in mapper(
            score_neutrals,
            ({"batch": b} for b in batched(neutral_items, runner.batch_size)),
            run=run,
        ):
            for row in tally.add(done):
                neutral_rows[(row["generator"], row["version"])].append(row)

        # 2. every image, in the faces table's order, batch by batch into the scores table
        def calls() -> Iterator[dict]:
            for items in batched(face_items(layout, runner.batch_size), runner.batch_size):
                sets = dict.fromkeys((i["face"]["generator"], i["face"]["version"]) for i in items)
                yield {"batch": items, "neutrals": [r for s in sets for r in neutral_rows[s]]}

        with ParquetRowWriter(layout.scores, schema) as out:
            for done in mapper(score_batch, calls(), run=run):
                rows = tally.add(done)
                out.write(rows)
                bar.update(len({row["path"] for row in rows}))
                for row in rows:
                    if row.get(UNAVAILABLE) is not None:
                        unavailable.add((row["scorer"], row[UNAVAILABLE]))
                    if row.get("target_prob") is not None:
                        target_probs.setdefault(row["scorer"], array("d")).append(
                            row["target_prob"]
                        )
    bar.close()
    missing = summary({"scorer": s, UNAVAILABLE: value} for s, value in sorted(unavailable))
    result = StageResult(
        "score",
        {
            "images": n_faces or 0,
            "rows": out.rows,
            "scorers": ", ".join(options.scorers),
            **tally.counts(),
            # what a missing model left unmeasured; the reasons are in the report
            "unavailable": "; ".join(f"{e['scorer']}: {e['outputs']}" for e in missing) or "none",
            "gallery_cache_misses": gallery_misses,
            "impostor_gallery": gallery_note
            or ", ".join(f"{name}: {len(faces)} faces" for name, faces in gallery.items()),
        },
    )
    result.rows = [
        {"scorer": s, "faces": len(v), "mean_target_prob": round(float(np.mean(v)), 4)}
        for s, v in target_probs.items()
    ]
    return result
