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
    assert "animated WEBP: scored frame 1 of 3" in by_path["badgen/v1/anim/happy.webp"]["flags"]
    # a link inside the input is followed, and its bytes are recognised as a copy
    assert (
        "same bytes as badgen/v1/hopper/neutral.jpg" in by_path["badgen/v1/linked/sad.jpg"]["flags"]
    )
    assert "same bytes as linkgen/v1" in by_path["linkgen/v2/solo/neutral.png"]["flags"]
    # the misplaced subjects.csv flags its own folder's images only
    assert "subjects.csv quarantined" in by_path["badgen/v1/hopper/neutral.jpg"]["flags"]
    assert by_path["badgen/v1/cmyk/neutral.jpg"]["flags"] is None


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


def test_unreadable_file_is_quarantined_with_the_os_error(tmp_path):
    """EIO: /proc/self/mem is a regular file whose first read fails."""
    from exprbench.cache import ContentCache
    from exprbench.ingest import Candidate
    from tasks.ingest import _inspector

    inspect = _inspector(ContentCache(tmp_path / "cache", "ingest"), PARAMS.ingest.max_pixels)
    cand = Candidate(Path("/proc/self/mem"), "g/v/s/sad.jpg", "g", "v", "s", "sad", "sad", 1)
    sha, result = inspect(cand)
    assert sha is None and isinstance(result, ImageRejected)
    assert "Input/output error" in str(result) and "errno 5" in str(result)


def test_permission_denied_is_quarantined_and_the_run_completes(tmp_path, photos):
    """Mode 000 and owned by a uid not mapped into a user namespace: even root in it gets
    EACCES, as an unprivileged user would."""
    import os
    import shutil
    import subprocess
    import sys

    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1) for a user namespace")
    raw = tmp_path / "raw"
    (raw / "gen" / "v1" / "ann").mkdir(parents=True)
    (raw / "gen" / "v1" / "ann" / "neutral.jpg").write_bytes(photos["grace_hopper"].read_bytes())
    locked = raw / "gen" / "v1" / "ann" / "sad.jpg"
    locked.write_bytes(photos["grace_hopper"].read_bytes())
    locked.chmod(0)
    if os.geteuid() == 0:
        os.chown(locked, 54321, 54321)
    script = (
        "import sys; from pathlib import Path; from tests.test_ingest import _run_ingest; "
        "_run_ingest(Path(sys.argv[1]), Path(sys.argv[2]))"
    )
    command = [sys.executable, "-c", script, str(raw), str(tmp_path)]
    if os.geteuid() == 0:
        command = ["unshare", "-r", *command]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if done.returncode != 0 and "unshare" in done.stderr:
        pytest.skip(f"user namespaces unavailable: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    layout = Layout.for_output(raw, tmp_path / "out")
    images = read_table(layout.images, IMAGES).to_pylist()
    quarantine = {
        r["path"]: r["reason"] for r in read_table(layout.quarantine, QUARANTINE).to_pylist()
    }
    assert [r["path"] for r in images] == ["gen/v1/ann/neutral.jpg"]
    assert "Permission denied" in quarantine["gen/v1/ann/sad.jpg"]


def test_empty_input_writes_empty_tables(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    layout = Layout.for_output(raw, tmp_path / "out")
    result = ingest.fn(layout, PARAMS)
    assert result.counts["discovered"] == result.counts["accepted"] == 0
    assert read_table(layout.images, IMAGES).num_rows == 0
    assert read_table(layout.quarantine, QUARANTINE).num_rows == 0


def _manifest_folder(raw: Path, photos, manifest: str) -> None:
    (raw / "gen" / "v1").mkdir(parents=True)
    (raw / "gen" / "v1" / "a.jpg").write_bytes(photos["grace_hopper"].read_bytes())
    (raw / "gen" / "v1" / "b.jpg").write_bytes(photos["obama"].read_bytes())
    (raw / "gen" / "v1" / "c.jpg").write_bytes(photos["biden"].read_bytes())
    (raw / "manifest.csv").write_text(manifest.replace("ROOT", str(raw)))


def test_manifest_with_an_unterminated_quote_names_its_line_and_completes(tmp_path, photos):
    raw = tmp_path / "raw"
    _manifest_folder(
        raw,
        photos,
        "path,generator,version,subject,expression\n"
        "gen/v1/a.jpg,gen,v1,ann,neutral\n"
        'gen/v1/b.jpg,gen,v1,"ann,happy\n'
        "gen/v1/c.jpg,gen,v1,ann,sad\n",
    )
    images, quarantine = _run_ingest(raw, tmp_path)
    reasons = {r["path"]: r["reason"] for r in quarantine}
    assert images == []
    assert "manifest.csv:3: unterminated quote" in reasons["manifest.csv"]
    for name in "abc":
        assert "not listed in manifest.csv" in reasons[f"gen/v1/{name}.jpg"]


def test_manifest_paths_are_normalised_and_duplicates_named(tmp_path, photos):
    raw = tmp_path / "raw"
    _manifest_folder(
        raw,
        photos,
        "path,generator,version,subject,expression\n"
        "./gen/v1/a.jpg,gen,v1,ann,neutral\n"
        "gen//v1/b.jpg,gen,v1,ann,happy\n"
        "ROOT/gen/v1/c.jpg,gen,v1,ann,sad\n"
        "gen/v1/./a.jpg,gen,v1,ann,angry\n"
        "gen/../../outside.jpg,gen,v1,ann,fear\n",
    )
    images, quarantine = _run_ingest(raw, tmp_path)
    reasons = {r["path"]: r["reason"] for r in quarantine}
    assert {r["path"]: r["expression"] for r in images} == {
        "gen/v1/a.jpg": "neutral",
        "gen/v1/b.jpg": "happy",
        "gen/v1/c.jpg": "sad",
    }
    assert "already listed on manifest.csv:2" in reasons["manifest.csv:5"]
    assert "outside the input folder" in reasons["manifest.csv:6"]
    assert len(reasons) == 2  # nothing both scored and quarantined


def test_manifest_and_folder_mode_share_the_link_rule(tmp_path, photos):
    raw = tmp_path / "raw"
    outside = tmp_path / "elsewhere.jpg"
    outside.write_bytes(photos["obama"].read_bytes())
    _manifest_folder(
        raw,
        photos,
        "path,generator,version,subject,expression\n"
        "gen/v1/a.jpg,gen,v1,ann,neutral\n"
        "gen/v1/in.jpg,gen,v1,ann,happy\n"
        "gen/v1/out.jpg,gen,v1,ann,sad\n",
    )
    (raw / "gen" / "v1" / "in.jpg").symlink_to("b.jpg")
    (raw / "gen" / "v1" / "out.jpg").symlink_to(outside)
    found = discover(raw, ["jpg"])
    reasons = {r.path: r.reason for r in found.rejected}
    assert {c.path for c in found.candidates} == {"gen/v1/a.jpg", "gen/v1/in.jpg"}
    assert "points outside" in reasons["gen/v1/out.jpg"]
    assert found.n_discovered == len(found.candidates) + len(found.rejected)


def test_subjects_problems_never_stop_the_run(tmp_path, photos):
    raw = tmp_path / "raw"
    for subject in ("ann", "bob"):
        (raw / "gen" / "v1" / subject).mkdir(parents=True)
        (raw / "gen" / "v1" / subject / "neutral.jpg").write_bytes(
            photos["grace_hopper" if subject == "ann" else "obama"].read_bytes()
        )
    (raw / "subjects.csv").write_text("subject,gender\nann,nonbinary\nbob,M\n")
    (raw / "gen" / "v1" / "subjects.csv").write_text('subject,gender\nbob,"male\n')
    images, quarantine = _run_ingest(raw, tmp_path)
    by_subject = {r["subject"]: r for r in images}
    assert by_subject["ann"]["subject_gender"] == "nonbinary"  # data, kept
    assert by_subject["bob"]["subject_gender"] == "male"  # from the root file
    reasons = {r["path"]: r["reason"] for r in quarantine}
    assert "gen/v1/subjects.csv:2: unterminated quote" in reasons["gen/v1/subjects.csv"]
    assert "gen/v1/subjects.csv quarantined" in by_subject["ann"]["flags"]
