"""The per-image stages through each task runner (params `runner`), and their streamed writes.

The stages run in a Prefect flow against the session's Prefect server, on few real photos
with two cheap scorers (fer: expression; dlib: identity, so neutral references and
impostors are exercised). A run on a Dask cluster (`distributed.LocalCluster`, two worker
processes, reached by its scheduler address as a real cluster would be), with a cache of
its own so its workers compute every result, writes the same tables as a threads run.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from exprbench.config import Layout
from exprbench.schema import ParquetRowWriter, read_table, write_rows
from exprbench.settings import ParamsError, RunnerSettings, Settings, load_params
from tests.conftest import build_raw, import_or_missing

ROOT = Path(__file__).resolve().parent.parent
FEW = {
    "g/v1/obama/neutral.jpg": "obama3",
    "g/v1/obama/happy.jpg": "obama",
    "g/v1/obama/happy-2.jpg": "obama2",
    "g/v1/franck/neutral.jpg": "franck_01829",
    "g/v1/franck/joy.jpg": "franck_04117",
}
TABLES = ("upscale_table", "faces_table", "scores")


def _settings(runner: dict) -> Settings:
    params = load_params(ROOT / "params.yaml")
    params["score"] = {**params["score"], "scorers": ["fer", "dlib"], "impostor_gallery": 2}
    params["runner"] = {**params["runner"], **runner}
    return Settings.from_params(params)


def _run(raw: Path, out: Path, runner: dict) -> tuple[Layout, list]:
    """ingest (plain call), then upscale, faces and score in a flow, through `runner`."""
    from prefect import flow

    from tasks.faces import faces
    from tasks.ingest import ingest
    from tasks.score import score
    from tasks.upscale import upscale

    settings = _settings(runner)
    layout = Layout.for_output(raw, out)
    ingest.fn(layout, settings)

    @flow(name="exprbench-per-image-stages")
    def per_image() -> list:
        return [stage(layout, settings) for stage in (upscale, faces, score)]

    return layout, per_image()


@pytest.fixture(scope="module")
def threads_run(tmp_path_factory, photos, models, prefect_server):
    tmp = tmp_path_factory.mktemp("runners")
    raw = build_raw(tmp / "raw", photos, FEW)
    runner = {"kind": "threads", "workers": 2, "batch_size": 2}
    return (raw, *_run(raw, tmp / "threads", runner))


def _same_tables(a: Layout, b: Layout) -> None:
    """Same schema, metadata and rows; floating-point columns equal to float32 precision:
    torch's CPU kernels (fer) round differently with the batch size and thread count
    (seen on an AMD EPYC: ~1e-8 on a probability between batches of 1 and 2 faces, or 1
    and 2 threads, as a Dask worker runs with one), everything else bit for bit."""
    import numpy as np
    import pyarrow as pa

    for name in TABLES:
        left, right = pq.read_table(getattr(a, name)), pq.read_table(getattr(b, name))
        assert left.num_rows > 0, name
        assert left.schema.equals(right.schema, check_metadata=True), name
        for column in left.column_names:
            mine, theirs = left.column(column), right.column(column)
            if pa.types.is_floating(mine.type):
                assert mine.is_null().equals(theirs.is_null()), (name, column)
                np.testing.assert_allclose(
                    mine.to_numpy(zero_copy_only=False),
                    theirs.to_numpy(zero_copy_only=False),
                    rtol=1e-5,
                    atol=1e-7,
                    err_msg=f"{name}.{column}",
                )
            else:
                assert mine.equals(theirs), (name, column)


def test_a_dask_cluster_gives_the_same_tables_as_threads(threads_run, tmp_path, prefect_server):
    distributed = import_or_missing("distributed", "pip install -e . (pins distributed)")
    raw, threads_layout, threads_results = threads_run
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        runner = {"kind": "dask", "batch_size": 1, "address": cluster.scheduler_address}
        layout, results = _run(raw, tmp_path / "dask", runner)
    assert layout.cache != threads_layout.cache  # its workers computed every result
    for result in results:
        assert result.counts["cache_hits"] == 0 and result.counts["cache_misses"] > 0
        assert result.counts["worker_processes"] == 2  # both worker processes ran batches
    for result in threads_results:
        assert result.counts["worker_processes"] == 1  # threads: this process
    assert threads_results[-1].counts["rows"] == results[-1].counts["rows"] == 2 * len(FEW)
    _same_tables(threads_layout, layout)


def test_a_process_pool_gives_the_same_faces_table(threads_run, tmp_path, prefect_server):
    """Only the faces stage (cheap imports), on a copy of the threads run's inputs."""
    from prefect import flow

    from tasks.faces import faces

    raw, threads_layout, _ = threads_run
    layout = Layout.for_output(raw, tmp_path / "out")
    shutil.copytree(threads_layout.interim, layout.interim, ignore=shutil.ignore_patterns("crops"))
    layout.faces_table.unlink()
    settings = _settings({"kind": "processes", "workers": 2, "batch_size": 2})

    @flow(name="exprbench-faces-in-processes")
    def faces_in_processes():
        return faces(layout, settings)

    result = faces_in_processes()
    assert result.counts["cache_misses"] == len(FEW) and result.counts["worker_processes"] >= 1
    assert pq.read_table(layout.faces_table).equals(pq.read_table(threads_layout.faces_table))


def test_batches_give_the_rows_of_the_whole_table_at_once(threads_run) -> None:
    """Neutrals first, then batches (of 2 images): the same rows, values and notes as
    `score_rows` and `add_impostor_measures` over every image at once (the outputs come
    from the run's cache, so only the assembly is compared)."""
    from exprbench.identity import add_impostor_measures
    from exprbench.scorers import get_scorer_class
    from exprbench.scoring import score_rows
    from tasks.runner import absolute_layout
    from tasks.score import ScoreRun, Scoring, face_items, impostor_gallery

    _, layout, _ = threads_run
    settings = _settings({})
    options, max_pixels = settings.score, settings.ingest.max_pixels
    identities = {
        n: get_scorer_class(n).cache_identity(options.options_for(n)) for n in options.scorers
    }
    gallery, note, failed, _ = impostor_gallery(options, identities, max_pixels)
    versions = {n: get_scorer_class(n).code_version() for n in options.scorers}
    run = ScoreRun(
        absolute_layout(layout), options, max_pixels, identities, versions, gallery, note, failed
    )
    scoring = Scoring(run)
    faces, upscaled, genders, ages = scoring.inputs(list(face_items(layout, 100)))
    args = (scoring.classes, scoring.score, scoring.compare, options.same_identity_threshold)
    rows = score_rows(faces, upscaled, genders, *args, age_by_path=ages, tau=options.tau)
    rows = add_impostor_measures(rows, gallery, note)
    assert scoring.cache.misses == 0
    streamed = pq.read_table(layout.scores)
    whole = layout.scores.with_name("whole.parquet")
    write_rows(rows, whole, streamed.schema)
    assert pq.read_table(whole).equals(streamed, check_metadata=True)
    assert any(r.get("impostor_distances") for r in rows)
    assert any(r.get("identity_rank") for r in rows)


def test_the_streaming_writer_gives_one_file_whatever_the_batches(threads_run, tmp_path) -> None:
    _, layout, _ = threads_run
    table = pq.read_table(layout.scores)
    rows = table.to_pylist()
    written = []
    for size in (1, 3, len(rows)):
        target = tmp_path / f"batches-of-{size}.parquet"
        with ParquetRowWriter(target, table.schema, row_group_rows=4) as out:
            for start in range(0, len(rows), size):
                out.write(rows[start : start + size])
        assert out.rows == len(rows)
        assert pq.ParquetFile(target).metadata.num_row_groups == -(-len(rows) // 4)
        written.append(target.read_bytes())
    assert written[0] == written[1] == written[2]
    assert read_table(tmp_path / "batches-of-1.parquet", table.schema).equals(table)
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"] == []


def test_a_failed_write_leaves_no_file(tmp_path) -> None:
    import pyarrow as pa

    schema = pa.schema([("path", pa.string()), ("value", pa.float64())])
    target = tmp_path / "t.parquet"
    with pytest.raises(pa.ArrowInvalid), ParquetRowWriter(target, schema) as out:
        out.write([{"path": "a", "value": 1.0}])
        out.write([{"path": "b", "value": "not a number"}])
    assert list(tmp_path.iterdir()) == []


def test_runner_params_are_checked() -> None:
    assert RunnerSettings() == _settings({}).runner  # params.yaml states the defaults
    with pytest.raises(ParamsError, match=r"runner\.address .* set runner\.kind to dask"):
        _settings({"address": "tcp://127.0.0.1:8786"})
    with pytest.raises(ParamsError, match=r"runner\.workers must be at least 1"):
        _settings({"workers": 0})
    with pytest.raises(ParamsError, match=r"runner\.kind must be one of"):
        _settings({"kind": "ray"})
