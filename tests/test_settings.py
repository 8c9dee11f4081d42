"""params.yaml parsed once into typed settings; every mistake named before any work."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from exprbench.settings import ParamsError, Settings, load_params, load_settings

ROOT = Path(__file__).resolve().parent.parent
PARAMS = load_params(ROOT / "params.yaml")


def _with(section: str, key: str, value) -> dict:
    params = copy.deepcopy(PARAMS)
    params[section][key] = value
    return params


def test_project_params_parse_into_typed_sections() -> None:
    settings = load_settings(ROOT / "params.yaml")
    assert settings.faces.align in ("none", "similarity", "ffhq")
    assert isinstance(settings.faces.min_score, float)
    assert isinstance(settings.ingest.extensions, tuple)
    assert settings.score.options_for("faceapi") == dict(
        (PARAMS["score"].get("options") or {}).get("faceapi") or {}
    )
    assert settings.resolution is not None and settings.resolution.crop_px > 0


@pytest.mark.parametrize(
    "params, message",
    [
        (_with("faces", "allign", "ffhq"), r"unknown key\(s\) faces\.allign"),
        (_with("faces", "align", "affine"), r"faces\.align must be one of none, similarity"),
        (_with("faces", "min_score", "high"), r"faces\.min_score must be a number"),
        (_with("faces", "upsample", True), r"faces\.upsample must be a whole number"),
        (_with("upscale", "method", "esrgan"), r"upscale\.method must be one of"),
        (_with("upscale", "factor", 3), r"upscale\.factor must be one of auto, 2, 4, 8"),
        (_with("ingest", "extensions", "jpg"), r"ingest\.extensions must be a list"),
        (_with("score", "scorers", ["fer", 3]), r"score\.scorers\[1\] must be a non-empty"),
        (_with("score", "options", {"fer": 1}), r"score\.options\.fer must be a mapping"),
        (_with("duckdb", "threads", 0), r"duckdb\.threads must be an integer >= 1"),
        ({k: v for k, v in PARAMS.items() if k != "score"}, r"missing section 'score'"),
        ({**PARAMS, "scoring": {}}, r"unknown section\(s\) scoring"),
    ],
)
def test_mistakes_are_named(params: dict, message: str) -> None:
    with pytest.raises(ParamsError, match=message):
        Settings.from_params(params)


def test_missing_key_names_the_file(tmp_path: Path) -> None:
    params = copy.deepcopy(PARAMS)
    del params["report"]["thumb_px"]
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    with pytest.raises(ParamsError, match=rf"{path}: params: missing key 'report.thumb_px'"):
        load_settings(path)


def test_vocabularies_are_declared_once() -> None:
    from typing import get_args

    from exprbench import upscale
    from exprbench.align import ALIGN_MODES
    from exprbench.settings import AlignMode, UpscaleMethod

    assert set(get_args(UpscaleMethod)) == {"none", *upscale.METHODS}
    assert get_args(AlignMode) == ALIGN_MODES
