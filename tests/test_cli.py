"""Command-line pieces that need no pipeline run."""

from __future__ import annotations

import re

from flows import server
from flows.cli import main
from flows.dvc_plots import build_template


def test_scorers_lists_the_registry_with_ranges(capsys):
    assert main(["scorers"]) == 0
    out = capsys.readouterr().out
    for name in ("fer", "age_gender", "dlib"):
        # the version is derived from the scorer's code and weights, never typed by hand
        assert re.search(rf"^{name} \(version [0-9a-f]{{12}}\)", out, re.M), out
    assert "target_prob" in out and "[0, 1] higher is better" in out
    assert "identity_distance" in out and "lower is better" in out


def test_plots_template_is_offline(tmp_path):
    page = build_template(tmp_path / "t.html").read_text()
    assert "{plot_divs}" in page and "{scripts}" not in page
    assert not re.search(r"<script[^>]+src=", page)
    assert "vegaEmbed" in page or "vega-embed" in page


def test_server_status_on_a_closed_port_is_not_running(capsys):
    assert not server.is_healthy(1)
    assert main(["server", "status", "--port", "1"]) == 1
    assert "not running" in capsys.readouterr().out


def test_missing_params_file_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    code = main(
        [
            "run",
            "--input",
            str(tmp_path / "in"),
            "--output",
            str(tmp_path / "out"),
            "--params",
            str(tmp_path / "nope.yaml"),
        ]
    )
    assert code == 2
    assert "params file not found" in capsys.readouterr().err


def test_score_json_one_object_per_image_and_errors_at_the_end(photos, models, capsys, tmp_path):
    import json

    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    code = main(["score", str(photos["astronaut"]), str(bad), "--json"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 1
    assert [line["path"] for line in lines] == [str(photos["astronaut"]), str(bad)]
    (face,) = lines[0]["faces"]
    assert set(face) == {
        "box",
        "score",
        "expressions",
        "age",
        "gender",
        "gender_probability",
        "descriptor",
    }
    assert set(face["expressions"]) == {
        "neutral",
        "happy",
        "sad",
        "angry",
        "surprise",
        "fear",
        "disgust",
    }
    assert max(face["expressions"], key=face["expressions"].get) == "happy"
    assert len(face["descriptor"]) == 128 and len(face["box"]) == 4
    assert "not an image" in lines[1]["error"]


def test_score_with_a_pipeline_scorer(photos, models, capsys):
    assert main(["score", str(photos["obama"]), "--scorer", "age_gender"]) == 0
    out = capsys.readouterr().out
    assert "1 face(s)" in out and "male" in out
