"""Ingest: discovery, labels, subjects, and every kind of bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from exprbench.config import Layout
from exprbench.imageio import ImageRejected, decode_bytes
from exprbench.ingest import InputConfigError, _parse_label, discover, read_subjects
from exprbench.schema import IMAGES, QUARANTINE, read_table
from exprbench.settings import Settings, load_params
from tasks.ingest import ingest
from tests.badinputs import write_bad_inputs

PARAMS = Settings.from_params(load_params(Path(__file__).resolve().parent.parent / "params.yaml"))


@pytest.mark.parametrize(
    ("stem", "label", "expression", "replicate"),
    [
        ("happy", "happy", "happy", 1),
        ("Joy-3", "Joy", "happy", 3),
        ("surprised", "surprised", "surprise", 1),
        ("fearful_2", "fearful_2", None, 1),
        ("smirk", "smirk", None, 1),
    ],
)
def test_label_parsing(stem, label, expression, replicate):
    assert _parse_label(stem) == (label, expression, replicate)


def _run_ingest(raw: Path, tmp_path: Path) -> tuple[list[dict], list[dict]]:
    layout = Layout.for_output(raw, tmp_path / "out")
    ingest.fn(layout, PARAMS)
    images = read_table(layout.images, IMAGES).to_pylist()
    quarantine = read_table(layout.quarantine, QUARANTINE).to_pylist()
    return images, quarantine


def test_every_bad_input_is_scored_or_quarantined_with_a_reason(tmp_path, photos):
    raw = tmp_path / "raw"
    expected = write_bad_inputs(raw, photos)
    images, quarantine = _run_ingest(raw, tmp_path)
    accepted = {row["path"] for row in images}
    reasons = {row["path"]: row["reason"] for row in quarantine}
    assert len(accepted) + len(reasons) == len(expected)
    assert not accepted & set(reasons)
    for path, outcome in expected.items():
        if outcome == "ok":
            assert path in accepted, f"{path} should be accepted, got {reasons.get(path)}"
        else:
            words = outcome.split(":", 1)[1]
            assert path in reasons, f"{path} should be quarantined ({words})"
            assert words in reasons[path].lower(), f"{path}: {reasons[path]!r} lacks {words!r}"
    by_path = {row["path"]: row for row in images}
    # EXIF orientation 8 on a sideways-stored portrait gives the upright size back
    exif = by_path["badgen/v1/exif/neutral.jpg"]
    assert (exif["width"], exif["height"], exif["exif_orientation"]) == (512, 600, 8)
    assert by_path["badgen/v1/cmyk/neutral.jpg"]["mode"] == "CMYK"
    assert by_path["badgen/v1/sixteen/neutral.png"]["mode"].startswith("I")
    assert "same bytes as" in by_path["badgen/v1/ünï cødé/neutral.jpg"]["flags"]
    assert by_path["badgen/v1/with space/joy.webp"]["expression"] == "happy"


def test_rerun_hits_the_content_cache(tmp_path, photos):
    raw = tmp_path / "raw"
    write_bad_inputs(raw, photos)
    layout = Layout.for_output(raw, tmp_path / "out")
    first = ingest.fn(layout, PARAMS)
    second = ingest.fn(layout, PARAMS)
    assert first.counts["cache_misses"] > 0
    assert second.counts["cache_misses"] == 0
    assert second.counts["cache_hits"] > 0


def test_sixteen_bit_is_scaled_not_clipped(photos):
    grey = np.asarray(Image.open(photos["grace_hopper"]).convert("L"), dtype=np.uint16)
    image = Image.fromarray(grey * 257)
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    rgb = decode_bytes(buffer.getvalue()).rgb
    assert rgb.dtype == np.uint8 and rgb.shape[2] == 3
    assert np.abs(rgb[..., 0].astype(int) - grey.astype(int)).max() <= 1


def test_rgba_composites_on_white():
    import io

    rgba = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    buffer = io.BytesIO()
    rgba.save(buffer, format="PNG")
    assert (decode_bytes(buffer.getvalue()).rgb == 255).all()


def test_gif_is_refused_with_the_format_named():
    import io

    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, format="GIF")
    with pytest.raises(ImageRejected, match="GIF"):
        decode_bytes(buffer.getvalue())


def test_manifest_replaces_the_folder_convention(tmp_path, photos):
    raw = tmp_path / "raw"
    (raw / "anywhere").mkdir(parents=True)
    (raw / "anywhere" / "a.jpg").write_bytes(photos["grace_hopper"].read_bytes())
    (raw / "anywhere" / "b.png").write_bytes(photos["astronaut"].read_bytes())
    (raw / "stray.jpg").write_bytes(photos["obama"].read_bytes())
    (raw / "manifest.csv").write_text(
        "path,generator,version,subject,expression\n"
        "anywhere/a.jpg,gpt,4o,grace,neutral\n"
        "anywhere/b.png,gpt,4o,grace,Happiness\n"
        "missing.jpg,gpt,4o,grace,sad\n"
    )
    found = discover(raw, ["jpg", "png"])
    assert {(c.path, c.expression) for c in found.candidates} == {
        ("anywhere/a.jpg", "neutral"),
        ("anywhere/b.png", "happy"),
    }
    reasons = {r.path: r.reason for r in found.rejected}
    assert "does not exist" in reasons["missing.jpg"]
    assert "not listed" in reasons["stray.jpg"]
    assert found.n_discovered == 4


def test_subjects_csv_scopes_and_errors(tmp_path):
    raw = tmp_path / "raw"
    (raw / "gen" / "v1").mkdir(parents=True)
    (raw / "subjects.csv").write_text("subject,gender,age,prompt\nann,woman,20s,a woman\n")
    (raw / "gen" / "v1" / "subjects.csv").write_text("subject,gender\nann,M\n")
    table = read_subjects(raw)
    assert table[("*", "*", "ann")].gender == "female"
    assert table[("*", "*", "ann")].age == "20s"
    assert table[("gen", "v1", "ann")].gender == "male"
    # genders beyond female/male are data, kept as written (lower-cased), not an error
    (raw / "subjects.csv").write_text("subject,gender\nann,Nonbinary\n")
    assert read_subjects(raw)[("*", "*", "ann")].gender == "nonbinary"
    (raw / "subjects.csv").write_text("name,gender\nann,f\n")
    with pytest.raises(InputConfigError, match="missing column"):
        read_subjects(raw)
