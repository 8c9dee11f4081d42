"""The resolution study stage on real photos (a small, fast configuration)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from exprbench.config import Layout
from exprbench.settings import Settings, load_params
from tasks.faces import faces
from tasks.ingest import ingest
from tasks.resolution import resolution
from tasks.upscale import upscale
from tests.conftest import build_raw

PARAMS = load_params(Path(__file__).resolve().parent.parent / "params.yaml")


def test_resolution_stage_writes_page_summary_and_metrics(tmp_path, photos, models):
    raw = build_raw(
        tmp_path / "raw",
        photos,
        {
            "g/v/a/happy.jpg": "feat_happy",
            "g/v/b/neutral.jpg": "grace_hopper",
            "g/v/c/fear.jpg": "feat_no_face",
        },
    )
    params = {
        **PARAMS,
        "resolution": {
            "sizes": [48],
            "crop_px": 192,
            "max_faces": 0,
            "methods": ["bicubic", "esrgan-slim"],
            "scorers": ["fer", "dlib"],
        },
    }
    layout = Layout.for_output(raw, tmp_path / "out")
    for stage in (ingest, upscale, faces):
        stage.fn(layout, Settings.from_params(params))
    first = resolution.fn(layout, Settings.from_params(params))
    assert first.counts["faces"] == 2 and first.counts["cache_misses"] == 2
    out = layout.reports / "resolution"
    with (out / "summary.csv").open() as handle:
        summary = list(csv.DictReader(handle))
    assert {(r["method"], r["size"], r["scorer"]) for r in summary} == {
        (m, "48", s) for m in ("bicubic", "esrgan-slim") for s in ("fer", "dlib")
    }
    fer = {r["method"]: r for r in summary if r["scorer"] == "fer"}
    assert 0.0 <= float(fer["bicubic"]["top1_agreement"]) <= 1.0
    assert float(fer["bicubic"]["mean_psnr"]) > 20
    page = (out / "index.html").read_text()
    assert "g/v/a/happy.jpg" in page and "g/v/b/neutral.jpg" in page  # one montage per face
    assert "http://" not in page and "https://" not in page
    metrics = json.loads((out / "metrics.json").read_text())
    assert "bicubic@48/fer" in metrics
    again = resolution.fn(layout, Settings.from_params(params))
    assert again.counts["cache_misses"] == 0
