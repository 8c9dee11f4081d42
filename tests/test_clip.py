"""The CLIP zero-shot scorer, on a small CLIP with RANDOM weights built in the test.

No package reachable here ships CLIP weights, so every test builds a tiny `CLIPModel`
(transformers, seeded random initialisation) and a tiny byte-level BPE vocabulary
(`tests/random_clip.py`), saved in the documented Hugging Face folder layout, and points
the real scorer at it. The
random model's probabilities are NEVER results: these tests check the code path (the
folder checks and their messages, preprocessing against transformers' CLIP image
processor, the logits against transformers' own CLIP forward, prompt ensembling, the
cache identity, the CLI and the absence of network attempts), not what CLIP sees.
"""

from __future__ import annotations

import json
import os
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import load_rgb_array

from exprbench.faces import FaceDetector
from exprbench.geometry import Face
from exprbench.labels import EXPRESSIONS
from exprbench.scorers import ModelUnavailableError
from exprbench.scorers.clip_zero_shot import (
    CLIP_MEAN,
    CLIP_STD,
    TEMPLATES,
    ClipScorer,
    _sha256_by_stat,
    clip_pixels,
    face_square,
    file_sha256,
)
from exprbench.settings import ParamsError
from flows.cli import main
from tests.random_clip import write_random_clip

REPO = Path(__file__).resolve().parents[1]
FACE_PHOTOS = ("obama", "grace_hopper", "astronaut", "franck_01829")


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_random_clip(tmp_path_factory.mktemp("clip") / "tiny-random-clip", seed=0)


@pytest.fixture(scope="module")
def faces(photos: dict[str, Path], models: None) -> list[tuple[np.ndarray, Face]]:
    """The primary face of each of several real photos, as the pipeline's detector finds it."""
    detector = FaceDetector()
    items = []
    for name in FACE_PHOTOS:
        image = load_rgb_array(photos[name])
        items.append((image, detector.detect(image, upsample=1)[0]))
    return items


# ---------------------------------------------------------------- preprocessing


@pytest.mark.parametrize("size", [224, 64])
def test_preprocessing_matches_transformers_clip_image_processor(photos, size):
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    reference = CLIPImageProcessorPil(
        size={"shortest_edge": size}, crop_size={"height": size, "width": size}
    )
    image = load_rgb_array(photos["grace_hopper"])  # not square: resize + centre crop
    for pixels in (image, image.transpose(1, 0, 2).copy(), image[:300, :300]):
        expected = reference(images=pixels, return_tensors="np")["pixel_values"][0]
        ours = clip_pixels(pixels, size, CLIP_MEAN, CLIP_STD)
        assert ours.shape == expected.shape == (3, size, size)
        np.testing.assert_allclose(ours, expected, atol=1e-5)


def test_face_square_is_centred_and_filled_outside_the_image():
    image = np.arange(20 * 30 * 3, dtype=np.uint8).reshape(20, 30, 3)
    crop = face_square(image, (10, 5, 10, 8), margin=0.25, fill=(1, 2, 3))
    assert crop.shape == (15, 15, 3)  # longer side 10 x 1.5
    np.testing.assert_array_equal(crop, image[2:17, 8:23])  # centre (15, 9), corner (7.5, 1.5)
    edge = face_square(image, (0, 0, 10, 10), margin=0.5, fill=(1, 2, 3))
    assert edge.shape == (20, 20, 3)
    np.testing.assert_array_equal(edge[:5, :5], np.broadcast_to([1, 2, 3], (5, 5, 3)))
    np.testing.assert_array_equal(edge[5:, 5:], image[:15, :15])
    with pytest.raises(ValueError, match="outside"):
        face_square(image, (100, 100, 5, 5), margin=0.1, fill=(0, 0, 0))


# ---------------------------------------------------------------- the scorer


def test_probabilities_on_real_faces(tiny_clip, faces):
    scorer = ClipScorer({"weights": str(tiny_clip)})
    batch = scorer.score_batch(faces)
    assert len(batch) == len(faces)
    rows = []
    for (image, face), output in zip(faces, batch, strict=True):
        probs = output.probabilities
        assert probs is not None and list(probs) == list(EXPRESSIONS)
        assert all(0.0 <= p <= 1.0 for p in probs.values())
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-12)
        single = scorer.score(image, face).probabilities
        assert single is not None
        np.testing.assert_allclose(list(single.values()), list(probs.values()), atol=1e-5)
        rows.append(list(probs.values()))
    # different faces give different outputs (the crop reaches the model)
    assert np.ptp(np.array(rows), axis=0).max() > 1e-4


def test_single_template_equals_transformers_clip_logits(tiny_clip, faces):
    """With one template the probabilities are exactly transformers' CLIP forward
    (logits_per_image) over the 7 class prompts: class order, logit scale and pooling."""
    import torch
    from transformers import CLIPModel, CLIPTokenizer

    template = "a photo of a {} face."
    scorer = ClipScorer({"weights": str(tiny_clip), "templates": [template]})
    model = CLIPModel.from_pretrained(tiny_clip, local_files_only=True).eval()
    tokenizer = CLIPTokenizer.from_pretrained(tiny_clip, local_files_only=True)
    prompts = [template.format(scorer.words[name]) for name in EXPRESSIONS]
    tokens = tokenizer(prompts, padding=True, return_tensors="pt")
    pixels = np.stack(
        [
            clip_pixels(face_square(im, f.box, 0.25, scorer.fill), 64, CLIP_MEAN, CLIP_STD)
            for im, f in faces
        ]
    )
    with torch.inference_mode():
        logits = model(**tokens, pixel_values=torch.from_numpy(pixels)).logits_per_image
    expected = torch.softmax(logits.double(), dim=-1).numpy()
    ours = [list(o.probabilities.values()) for o in scorer.score_batch(faces)]  # type: ignore[union-attr]
    np.testing.assert_allclose(ours, expected, atol=1e-6)


def test_prompt_ensembling_averages_normalised_prompt_embeddings(tiny_clip, faces):
    import torch
    import torch.nn.functional as F

    first, second = TEMPLATES[0], TEMPLATES[1]
    one = ClipScorer({"weights": str(tiny_clip), "templates": [first]})
    two = ClipScorer({"weights": str(tiny_clip), "templates": [second]})
    both = ClipScorer({"weights": str(tiny_clip), "templates": [first, second]})
    expected = F.normalize(one.class_embeddings + two.class_embeddings, dim=-1)
    torch.testing.assert_close(both.class_embeddings, expected, atol=1e-6, rtol=0)
    assert torch.linalg.norm(both.class_embeddings, dim=-1).sub(1).abs().max() < 1e-6
    outputs = {
        key: np.array([list(o.probabilities.values()) for o in s.score_batch(faces)])  # type: ignore[union-attr]
        for key, s in {"one": one, "two": two, "both": both}.items()
    }
    # changing the templates changes the output; the ensemble is neither member
    assert np.abs(outputs["one"] - outputs["two"]).max() > 1e-4
    assert np.abs(outputs["both"] - outputs["one"]).max() > 1e-5
    assert np.abs(outputs["both"] - outputs["two"]).max() > 1e-5
    # class words are an option too
    sad = ClipScorer(
        {"weights": str(tiny_clip), "templates": [first], "classnames": {"sad": "gloomy"}}
    )
    assert not torch.allclose(
        sad.class_embeddings[EXPRESSIONS.index("sad")],
        one.class_embeddings[EXPRESSIONS.index("sad")],
    )
    torch.testing.assert_close(sad.class_embeddings[0], one.class_embeddings[0])


# ---------------------------------------------------------------- cache identity


def test_cache_identity_hashes_the_weight_files_not_their_path(tiny_clip, tmp_path):
    options = {"weights": str(tiny_clip)}
    identity = ClipScorer.cache_identity(options)
    assert ClipScorer.cache_identity(dict(options)) == identity
    copy = shutil.copytree(tiny_clip, tmp_path / "elsewhere")
    assert ClipScorer.cache_identity({"weights": str(copy)}) == identity  # same bytes
    retrained = write_random_clip(tmp_path / "other-seed", seed=1)
    assert ClipScorer.cache_identity({"weights": str(retrained)}) != identity
    # a changed tokenizer file alone changes it too
    merges = copy / "merges.txt"
    merges.write_text(merges.read_text() + "f ace</w>\n")
    assert ClipScorer.cache_identity({"weights": str(copy)}) != identity
    assert ClipScorer.cache_identity({**options, "templates": ["a {} face"]}) != identity
    assert ClipScorer.cache_identity({**options, "margin": 0.1}) != identity
    # without weights nothing can be computed: the identity is still defined (the score
    # stage asks before building the scorer, whose construction names what is missing)
    missing = ClipScorer.cache_identity({"weights": str(tmp_path / "none")})
    assert missing not in (identity, ClipScorer.cache_identity({}))
    # each file is hashed once per process while it is unchanged
    weights = tiny_clip / "model.safetensors"
    file_sha256(weights)
    hits = _sha256_by_stat.cache_info().hits
    assert file_sha256(weights) == file_sha256(weights)
    assert _sha256_by_stat.cache_info().hits == hits + 2


def test_pytorch_model_bin_folder_loads_the_same_model(tiny_clip, tmp_path):
    """The other documented weight file: a state dict saved with torch.save."""
    import torch
    from safetensors.torch import load_file

    folder = Path(shutil.copytree(tiny_clip, tmp_path / "bin"))
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    from_bin = ClipScorer({"weights": str(folder)})
    reference = ClipScorer({"weights": str(tiny_clip)})
    torch.testing.assert_close(from_bin.class_embeddings, reference.class_embeddings)
    assert from_bin.logit_scale == reference.logit_scale


# ---------------------------------------------------------------- missing / bad weights


def _broken(tiny_clip: Path, tmp_path: Path, case: str) -> Path:
    folder = Path(shutil.copytree(tiny_clip, tmp_path / case))
    if case == "no-config":
        (folder / "config.json").unlink()
    elif case == "not-clip":
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, "model_type": "siglip"}))
    elif case == "no-weights":
        (folder / "model.safetensors").unlink()
    elif case == "no-tokenizer":
        (folder / "merges.txt").unlink()
    elif case == "truncated-weights":
        data = (folder / "model.safetensors").read_bytes()
        (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    elif case == "missing-tensor":  # transformers would initialise it randomly
        from safetensors.torch import load_file, save_file

        tensors = load_file(folder / "model.safetensors")
        del tensors["visual_projection.weight"]
        save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    elif case == "other-architecture":
        config = json.loads((folder / "config.json").read_text())
        config["vision_config"]["hidden_size"] = 48
        (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize(
    ("case", "says"),
    [
        ("no-config", "has no config.json"),
        ("not-clip", "model_type 'siglip', not 'clip'"),
        ("no-weights", "has no weights (model.safetensors or pytorch_model.bin)"),
        ("no-tokenizer", "has no tokenizer (vocab.json + merges.txt or tokenizer.json)"),
        ("truncated-weights", "could not be loaded"),
        ("other-architecture", "could not be loaded"),
        ("missing-tensor", "weights do not fit its config.json: {'missing_keys': ['visual_proj"),
    ],
)
def test_incomplete_weight_folders_are_named(tiny_clip, tmp_path, case, says):
    folder = _broken(tiny_clip, tmp_path, case)
    with pytest.raises(ModelUnavailableError) as raised:
        ClipScorer({"weights": str(folder)})
    message = str(raised.value)
    assert says in message and str(folder) in message
    assert "score.options.clip.weights" in message  # where it goes
    assert "openai/clip-vit-base-patch32" in message  # which format, by example


def test_missing_weights_say_what_where_and_why(tmp_path):
    pt = tmp_path / "ViT-B-32.pt"
    pt.write_bytes(b"not read")
    cases = {
        None: "no CLIP weights given",
        str(tmp_path / "nowhere"): "does not exist",
        str(pt): "is a file, not a folder (OpenAI's original TorchScript checkpoint",
    }
    for value, says in cases.items():
        options = {} if value is None else {"weights": value}
        with pytest.raises(ModelUnavailableError) as raised:
            ClipScorer(options)
        message = str(raised.value)
        assert message.startswith("clip: ") and says in message
        for part in (
            "score.options.clip.weights in params.yaml",  # where
            "config.json",  # what
            "model.safetensors or pytorch_model.bin",
            "vocab.json + merges.txt or tokenizer.json",
            "no package on the reachable registries ships CLIP weights",  # why
        ):
            assert part in message, (part, message)


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"template": ["a {}"]}, "unknown key(s) score.options.clip.template"),
        ({"templates": ["a face"]}, "score.options.clip.templates must be"),
        ({"templates": []}, "score.options.clip.templates must be"),
        ({"classnames": {"joy": "joyful"}}, "score.options.clip.classnames must map"),
        ({"margin": 2}, "score.options.clip.margin must be"),
    ],
)
def test_bad_options_are_params_errors(tiny_clip, options, says):
    with pytest.raises(ParamsError, match=None) as raised:
        ClipScorer({"weights": str(tiny_clip), **options})
    assert says in str(raised.value)


# ---------------------------------------------------------------- CLI


def _params_with(tmp_path: Path, options: dict) -> Path:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["score"]["options"] = {"clip": options}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return tmp_path


def test_cli_score_reads_the_weights_from_params(
    tiny_clip, photos, models, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(_params_with(tmp_path, {"weights": str(tiny_clip)}))
    code = main(
        ["score", str(photos["obama"]), str(photos["grace_hopper"]), "--scorer", "clip", "--json"]
    )
    assert code == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(records) == 2
    for record in records:
        assert record["faces"], record
        probs = record["faces"][0]["expressions"]
        assert list(probs) == list(EXPRESSIONS)
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-9)


def test_cli_score_without_weights_is_a_clear_error(photos, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(_params_with(tmp_path, {"weights": str(tmp_path / "missing")}))
    assert main(["score", str(photos["obama"]), "--scorer", "clip"]) == 2
    err = capsys.readouterr().err
    assert "exprbench: error: clip: " in err and "does not exist" in err
    assert "score.options.clip.weights" in err


# ---------------------------------------------------------------- network


CHILD = textwrap.dedent(
    """
    import sys
    import numpy as np
    from exprbench.geometry import Face
    from exprbench.scorers.clip_zero_shot import ClipScorer

    scorer = ClipScorer({"weights": sys.argv[1]})
    ClipScorer.cache_identity({"weights": sys.argv[1]})
    points = np.zeros((5, 2), np.float32), np.zeros((68, 2), np.float32)
    face = Face((40.0, 40.0, 60.0, 60.0), 1.0, *points)
    out = scorer.score(np.full((160, 160, 3), 128, np.uint8), face)
    assert abs(sum(out.probabilities.values()) - 1) < 1e-9
    """
)


def test_clip_makes_no_network_attempt(tiny_clip, tmp_path):
    """Load and score in a network namespace with only loopback, under strace: no connect
    before the marker, with the Hugging Face offline variables NOT set by the caller."""
    from test_no_network import traced_offline

    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    traced_offline(CHILD, [str(tiny_clip)], env, tmp_path / "strace.log", 300)
