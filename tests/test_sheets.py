"""Image sheets: cutting grids of real face photos, and sheets through the ingest stage."""

from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageOps

from exprbench.config import Layout
from exprbench.imageio import load_rgb
from exprbench.schema import IMAGES, QUARANTINE, read_table
from exprbench.settings import Settings, load_params
from exprbench.sheets import SheetError, check_cell, cut_grid
from tasks.ingest import ingest

PARAMS = Settings.from_params(load_params(Path(__file__).resolve().parent.parent / "params.yaml"))
TOL = PARAMS.ingest.sheet_uniform_std
# real photos whose edges are not flat (a flat edge would rightly be trimmed as a frame)
FACES = (
    "astronaut",
    "grace_hopper",
    "obama",
    "obama2",
    "obama3",
    "biden",
    "feat_surprise",
    "feat_disgust",
    "feat_single_face",
)


def _faces(photos: dict[str, Path], n: int, size: tuple[int, int]) -> list[np.ndarray]:
    """n distinct real face images: the photos, then their mirror images."""
    assert n <= 2 * len(FACES), f"only {2 * len(FACES)} distinct faces"
    base = [np.asarray(ImageOps.fit(Image.open(photos[k]).convert("RGB"), size)) for k in FACES]
    pool = base + [np.ascontiguousarray(face[:, ::-1]) for face in base]
    return pool[:n]


def tile(
    cells: list[np.ndarray],
    columns: int,
    *,
    gutter: int = 0,
    border: int = 0,
    frame: int = 0,
    background: tuple[int, int, int] = (255, 255, 255),
    frame_colour: tuple[int, int, int] = (30, 30, 30),
) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """A sheet of `cells` in reading order, and each photo's box (x0, y0, x1, y1)."""
    rows = -(-len(cells) // columns)
    h, w = cells[0].shape[:2]
    ch, cw = h + 2 * frame, w + 2 * frame
    sheet = np.empty(
        (
            2 * border + rows * ch + (rows - 1) * gutter,
            2 * border + columns * cw + (columns - 1) * gutter,
            3,
        ),
        np.uint8,
    )
    sheet[:] = background
    boxes = []
    for i, cell in enumerate(cells):
        r, c = divmod(i, columns)
        y, x = border + r * (ch + gutter), border + c * (cw + gutter)
        sheet[y : y + ch, x : x + cw] = frame_colour
        sheet[y + frame : y + frame + h, x + frame : x + frame + w] = cell
        boxes.append((x + frame, y + frame, x + frame + w, y + frame + h))
    return sheet, boxes


def _jpeg(rgb: np.ndarray) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=90)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


@pytest.mark.parametrize(
    ("name", "n", "columns", "layout", "method"),
    [
        ("midjourney 2x2 with gutters and border", 4, 2, {"gutter": 12, "border": 20}, "gutter"),
        (
            "4x4 expression sheet with framed cells",
            16,
            4,
            {"gutter": 8, "border": 10, "frame": 3},
            "gutter+frame",
        ),
        (
            "4x4 on a black page, coloured frames",
            16,
            4,
            {"gutter": 6, "frame": 2, "background": (0, 0, 0), "frame_colour": (200, 40, 40)},
            "gutter+frame",
        ),
        ("2x3 without gutters", 6, 3, {}, "even"),
    ],
)
def test_cells_are_found_exactly(photos, name, n, columns, layout, method):
    cells = _faces(photos, n, (120, 150))
    sheet, boxes = tile(cells, columns, **layout)
    cuts = cut_grid(sheet, n // columns, columns, TOL)
    assert [(c.row, c.column) for c in cuts] == [
        (i // columns + 1, i % columns + 1) for i in range(n)
    ]
    assert {c.method for c in cuts} == {method}, name
    assert [c.box for c in cuts] == boxes, name
    # the same sheet as a JPEG (artefacts around every edge): within 2 px
    lossy = cut_grid(_jpeg(sheet), n // columns, columns, TOL)
    assert {c.method for c in lossy} == {method}
    worst = max(
        abs(a - b)
        for c, box in zip(lossy, boxes, strict=True)
        for a, b in zip(c.box, box, strict=True)
    )
    assert worst <= 2, f"{name}: JPEG boxes off by {worst} px"


def test_grid_mismatch_blank_cells_and_tiny_sheets_are_errors(photos):
    sheet, _ = tile(_faces(photos, 6, (120, 150)), 3, gutter=12, border=20)
    with pytest.raises(SheetError, match="declared 2 columns but the sheet shows 3"):
        cut_grid(sheet, 2, 2, TOL)
    cells = _faces(photos, 4, (120, 150))
    cells[3] = np.full_like(cells[3], 255)  # an empty slot in a 2x2 grid
    sheet, _ = tile(cells, 2, gutter=12, border=20)
    cuts = cut_grid(sheet, 2, 2, TOL)
    with pytest.raises(SheetError, match="cell row 2, column 2 is blank"):
        for cut in cuts:
            check_cell(sheet, cut, TOL)
    with pytest.raises(SheetError, match="too small"):
        cut_grid(sheet[:60, :60], 2, 2, TOL)
    with pytest.raises(SheetError, match="blank"):
        cut_grid(np.full((200, 200, 3), 128, np.uint8), 2, 2, TOL)


def _save(path: Path, rgb: np.ndarray) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path)
    return path.read_bytes()


def test_ingest_cuts_declared_sheets_and_quarantines_bad_declarations(tmp_path, photos):
    raw = tmp_path / "raw"
    faces = _faces(photos, 16, (120, 150))
    # a Midjourney-style 2x2 grid in the folder layout; one variant left out
    grid, grid_boxes = tile(faces[:4], 2, gutter=12, border=20)
    grid_bytes = _save(raw / "midjourney/v6/ann/grid.png", grid)
    # a 4x4 expression sheet with frames, outside the layout: labels come from sheets.csv
    sheet, sheet_boxes = tile(faces, 4, gutter=8, border=10, frame=3)
    _save(raw / "sheets/expressions.png", sheet)
    # an ordinary image next to them, and a 2x3 grid without gutters
    _save(raw / "midjourney/v6/ann/happy.png", faces[5])
    plain, _ = tile(faces[:6], 3)
    _save(raw / "midjourney/v6/bob/plain.jpg", plain)
    # bad declarations
    three, _ = tile(faces[:6], 3, gutter=12, border=20)
    _save(raw / "midjourney/v6/cy/three-columns.png", three)
    _save(raw / "midjourney/v6/cy/count.png", grid)
    _save(raw / "midjourney/v6/cy/unknown.png", grid)
    with_blank = faces[:4]
    with_blank[1] = np.full_like(faces[1], 255)
    blank, _ = tile(with_blank, 2, gutter=12, border=20)
    _save(raw / "midjourney/v6/cy/blank.png", blank)
    (raw / "sheets.csv").write_text(
        "file,rows,columns,labels,generator,version,subject\n"
        "midjourney/v6/ann/grid.png,2,2,happy skip sad surprise,,,\n"
        "sheets/expressions.png,4,4,"
        + ";".join(
            ["neutral", "happy", "sad", "angry"] * 3 + ["surprise", "fear", "disgust", "skip"]
        )
        + ",sheetgen,2.0,dee\n"
        "midjourney/v6/bob/plain.jpg,2,3,neutral happy sad angry surprise fear,,,\n"
        "midjourney/v6/cy/three-columns.png,2,2,happy sad angry fear,,,\n"
        "midjourney/v6/cy/count.png,2,2,happy sad angry,,,\n"
        "midjourney/v6/cy/unknown.png,2,2,happy smirk sad angry,,,\n"
        "midjourney/v6/cy/blank.png,2,2,happy sad angry fear,,,\n"
        "midjourney/v6/cy/missing.png,2,2,happy sad angry fear,,,\n"
        "midjourney/v6/ann/grid.png,2,2,happy happy happy happy,,,\n"
    )
    layout = Layout.for_output(raw, tmp_path / "out")
    result = ingest.fn(layout, PARAMS)
    images = {r["path"]: r for r in read_table(layout.images, IMAGES).to_pylist()}
    reasons = {
        r["path"]: r["reason"] for r in read_table(layout.quarantine, QUARANTINE).to_pylist()
    }

    # the 2x2 grid: three cells (one 'skip'), each with its provenance
    cells = {p: r for p, r in images.items() if p.startswith("midjourney/v6/ann/grid.png#")}
    assert sorted(cells) == [
        f"midjourney/v6/ann/grid.png#r{r}c{c}" for r, c in ((1, 1), (2, 1), (2, 2))
    ]
    sha = hashlib.sha256(grid_bytes).hexdigest()
    for path, row in cells.items():
        assert (row["generator"], row["version"], row["subject"]) == ("midjourney", "v6", "ann")
        assert row["sheet_path"] == "midjourney/v6/ann/grid.png" and row["sheet_sha256"] == sha
        assert row["cut_method"] == "gutter" and row["source"].startswith("interim:cells/")
        file = layout.resolve(row["source"])
        assert row["sha256"] == hashlib.sha256(file.read_bytes()).hexdigest()
        x0, y0, x1, y1 = grid_boxes[(row["sheet_row"] - 1) * 2 + row["sheet_column"] - 1]
        assert np.array_equal(load_rgb(file), grid[y0:y1, x0:x1]), path
    assert [
        cells[f"midjourney/v6/ann/grid.png#r{r}c{c}"]["expression"]
        for r, c in ((1, 1), (2, 1), (2, 2))
    ] == [
        "happy",
        "sad",
        "surprise",
    ]
    # the ordinary image keeps replicate 1 and its input reference
    assert images["midjourney/v6/ann/happy.png"]["source"] == "input:midjourney/v6/ann/happy.png"
    assert images["midjourney/v6/ann/happy.png"]["sheet_path"] is None
    assert cells["midjourney/v6/ann/grid.png#r1c1"]["replicate"] == 2  # after happy.png

    # the 4x4 sheet: 15 cells, labels and subject from the declaration, frames trimmed
    sheet_rows = [r for p, r in images.items() if p.startswith("sheets/expressions.png#")]
    assert len(sheet_rows) == 15
    assert {(r["generator"], r["version"], r["subject"]) for r in sheet_rows} == {
        ("sheetgen", "2.0", "dee")
    }
    assert {r["cut_method"] for r in sheet_rows} == {"gutter+frame"}
    assert sorted(r["replicate"] for r in sheet_rows if r["expression"] == "happy") == [1, 2, 3]
    for row in sheet_rows:
        x0, y0, x1, y1 = sheet_boxes[(row["sheet_row"] - 1) * 4 + row["sheet_column"] - 1]
        assert np.array_equal(load_rgb(layout.resolve(row["source"])), sheet[y0:y1, x0:x1])
    # the gutterless JPEG grid falls back to an even split, and says so
    plain_rows = [r for p, r in images.items() if p.startswith("midjourney/v6/bob/plain.jpg#")]
    assert len(plain_rows) == 6 and {r["cut_method"] for r in plain_rows} == {"even"}

    # every bad declaration quarantines its sheet with the reason; the run went on
    assert (
        "declared 2 columns but the sheet shows 3" in reasons["midjourney/v6/cy/three-columns.png"]
    )
    assert "3 labels for a 2 x 2 sheet (4 cells)" in reasons["midjourney/v6/cy/count.png"]
    assert "unknown label(s) 'smirk' (cell 1,2)" in reasons["midjourney/v6/cy/unknown.png"]
    assert "cell row 1, column 2 is blank" in reasons["midjourney/v6/cy/blank.png"]
    assert "sheet file does not exist" in reasons["midjourney/v6/cy/missing.png"]
    assert "already declared on sheets.csv:2" in reasons["sheets.csv:10"]
    assert all(r.startswith("sheets.csv:") for p, r in reasons.items() if "/cy/" in p)
    assert result.counts["sheet_cells"] == 3 + 15 + 6
    assert result.counts["accepted"] == 3 + 15 + 6 + 1
    assert result.counts["quarantined"] == 6

    # a rerun cuts nothing again: every sheet comes from the content cache
    again = ingest.fn(layout, PARAMS)
    assert again.counts["cache_misses"] == 0 and again.counts["sheet_cache_misses"] == 0
    assert again.counts["metadata_cache_misses"] == 0
    assert {r["path"]: r for r in read_table(layout.images, IMAGES).to_pylist()} == images


def test_manifest_rows_can_declare_sheets(tmp_path, photos):
    raw = tmp_path / "raw"
    grid, _ = tile(_faces(photos, 4, (120, 150)), 2, gutter=10)
    _save(raw / "batch/grid-0001.png", grid)
    _save(raw / "batch/grid-0002.png", grid[:, ::-1])
    (raw / "manifest.csv").write_text(
        "path,generator,version,subject,expression,rows,columns\n"
        "batch/grid-0001.png,mj,7,eve,happy;sad;skip;fear,2,2\n"
        "batch/grid-0002.png,mj,7,eve,happy,,\n"  # declared as a sheet in sheets.csv too
        "batch/grid-0001.png,mj,7,eve,happy happy happy happy,2,2\n"
    )
    (raw / "sheets.csv").write_text(
        "file,rows,columns,labels,generator,version,subject\n"
        "batch/grid-0002.png,2,2,skip skip skip angry,mj,7,eve\n"
    )
    layout = Layout.for_output(raw, tmp_path / "out")
    ingest.fn(layout, PARAMS)
    reasons = {
        r["path"]: r["reason"] for r in read_table(layout.quarantine, QUARANTINE).to_pylist()
    }
    assert "declared as an image sheet on sheets.csv:2" in reasons["manifest.csv:3"]
    assert "already declared on manifest.csv:2" in reasons["manifest.csv:4"]
    assert len(reasons) == 2
    rows = [r for r in read_table(layout.images, IMAGES).to_pylist() if "0001" in r["path"]]
    assert sorted((r["sheet_row"], r["sheet_column"], r["expression"]) for r in rows) == [
        (1, 1, "happy"),
        (1, 2, "sad"),
        (2, 2, "fear"),
    ]


@pytest.mark.slow
def test_a_sheet_runs_through_the_whole_pipeline_to_the_report(
    tmp_path, photos, models, prefect_server
):
    """Cut cells are read by upscale, faces and score like any image, and the report's
    contact sheet shows each cell with its provenance and the sheet's metadata."""
    from dataclasses import replace

    from PIL.PngImagePlugin import PngInfo

    from flows.stages import pipeline

    raw = tmp_path / "raw"
    grid, _ = tile(_faces(photos, 4, (160, 200)), 2, gutter=12, border=20)
    info = PngInfo()
    info.add_text("parameters", "photo of a man, smiling\nSteps: 20, Seed: 7, Model: sdxl")
    (raw / "sdgen" / "xl" / "joe").mkdir(parents=True)
    Image.fromarray(grid).save(raw / "sdgen/xl/joe/grid.png", pnginfo=info)
    (raw / "sdgen/xl/joe/neutral.jpg").write_bytes(photos["grace_hopper"].read_bytes())
    (raw / "sheets.csv").write_text(
        "file,rows,columns,labels\nsdgen/xl/joe/grid.png,2,2,happy sad skip happy\n"
    )
    settings = Settings.from_params(
        load_params(Path(__file__).resolve().parent.parent / "params.yaml")
    )
    settings = replace(settings, score=replace(settings.score, scorers=("faceapi",)))
    layout = Layout.for_output(raw, tmp_path / "out")
    pipeline(layout, settings)
    scored = pq.read_table(layout.scores).to_pandas()
    cells = sorted(p for p in scored.path.unique() if "#" in p)
    assert cells == [f"sdgen/xl/joe/grid.png#r{r}c{c}" for r, c in ((1, 1), (1, 2), (2, 2))]
    assert scored[scored.path.isin(cells)].face_found.all()
    html = layout.report_html.read_text()
    assert "cell r1c2 of sheet sdgen/xl/joe/grid.png" in html and "cut by gutter" in html
    notes = " ".join(re.findall(r"cell r[^<]*", html))
    assert "metadata: Stable Diffusion web UI sdxl (png:parameters)" in notes
    assert "LABEL CONFLICT: metadata names generator" in notes  # 'sdgen' is not in its name
    assert "metadata prompt asks for happy; label says sad" in notes
