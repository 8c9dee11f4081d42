"""The faces stage: primary face, flagged rows, and the stored crop per faces.align."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from exprbench.config import Layout
from exprbench.schema import FACES, read_table
from exprbench.settings import Settings, load_params
from tasks.faces import faces
from tasks.ingest import ingest
from tasks.upscale import upscale
from tests.conftest import build_raw

PARAMS = load_params(Path(__file__).resolve().parent.parent / "params.yaml")


@pytest.mark.parametrize("mode", ["none", "similarity", "ffhq"])
def test_faces_stage_stores_the_chosen_crop(tmp_path, photos, models, mode):
    raw = build_raw(
        tmp_path / "raw",
        photos,
        {
            "g/v/hopper/neutral.jpg": "grace_hopper",
            "g/v/group/happy.jpg": "feat_multi_face",
            "g/v/nobody/sad.jpg": "feat_no_face",
        },
    )
    params = {**PARAMS, "faces": {**PARAMS["faces"], "align": mode, "crop_size": 128}}
    layout = Layout.for_output(raw, tmp_path / "out")
    for stage in (ingest, upscale, faces):
        stage.fn(layout, Settings.from_params(params))
    rows = {r["path"]: r for r in read_table(layout.faces_table, FACES).to_pylist()}
    hopper, group, nobody = (
        rows[f"g/v/{s}"] for s in ("hopper/neutral.jpg", "group/happy.jpg", "nobody/sad.jpg")
    )
    assert hopper["face_found"] and hopper["face_count"] == 1
    assert hopper["align_detail"].startswith(f"{mode} 128 px")
    with Image.open(layout.resolve(hopper["crop_path"])) as crop:
        assert crop.size == (128, 128)
    assert len(hopper["landmarks68"]) == 136 and len(hopper["landmarks5"]) == 10
    assert group["face_count"] >= 3 and "scored the primary" in group["face_reason"]
    assert not nobody["face_found"] and nobody["crop_path"] is None
    assert nobody["face_reason"] == "no face detected"
