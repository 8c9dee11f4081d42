"""The user cache of built face-api.js ONNX models (exprbench.faceapi.model_cache) and the
lazily decoded weights it relies on. Outputs with a cached model must equal a fresh build's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from exprbench.faceapi import model_cache
from exprbench.faceapi.chain import _FACTORIES
from exprbench.faceapi.expression import FaceExpressionNet
from exprbench.faceapi.expression import build_graph as expression_graph
from exprbench.faceapi.weights import NETWORK_WEIGHTS, NetworkWeights, network_weights
from exprbench.fingerprint import module_closure
from exprbench.packaged import cache_home

PACKAGE = "exprbench.faceapi"


@pytest.fixture
def fresh_cache(models, tmp_path, monkeypatch) -> Path:
    """An EXPRBENCH_HOME with the fetched weights but no built models; its ONNX folder."""
    packages = cache_home() / "packages"
    home = tmp_path / "home"
    home.mkdir()
    (home / "packages").symlink_to(packages)
    monkeypatch.setenv("EXPRBENCH_HOME", str(home))
    return home / model_cache.NAMESPACE


def test_every_builder_lies_in_the_hashed_package():
    # The key hashes the files of exprbench.faceapi (not a closure walk, ~100 ms a process):
    # every graph builder and the weight decoding must import nothing outside it that
    # shapes a model. exprbench.labels only names expression.py's outputs.
    modules = {factory.__module__ for factory, _ in _FACTORIES.values()}
    modules.add("exprbench.faceapi.weights")
    skip = frozenset({"exprbench.weights", "exprbench.faceapi.model_cache"})
    outside = {
        name
        for module in modules
        for name in module_closure(module, skip=skip)
        if not name.startswith(f"{PACKAGE}.")
    }
    assert outside <= {"exprbench.labels"}, outside


@pytest.mark.parametrize("network", sorted(NETWORK_WEIGHTS))
def test_lazy_weights_decode_exactly_like_the_whole_manifest(models, network):
    eager = network_weights(network)
    lazy = NetworkWeights(network)
    assert list(lazy) == list(eager)
    for name, values in eager.items():
        assert lazy[name].dtype == values.dtype
        np.testing.assert_array_equal(lazy[name], values)


def test_a_built_model_is_stored_once_and_reused(fresh_cache):
    weights = NetworkWeights("face_expression")
    model = model_cache.network_model(weights, expression_graph)
    stored = list(fresh_cache.glob("*.onnx"))
    assert len(stored) == 1 and stored[0].read_bytes() == model
    # the stored model is the fresh build plus its checksum entry
    fresh = expression_graph(network_weights("face_expression")).to_bytes()
    assert model == model_cache.with_checksum(fresh)
    # a second load reads it back without touching the weights
    again = NetworkWeights("face_expression")
    assert model_cache.network_model(again, expression_graph) == model
    assert again._index is None  # nothing decoded, not even the manifest read
    # another variant or code digest is another entry
    key = model_cache.model_key(again, expression_graph)
    assert key != model_cache.model_key(again, expression_graph, (416,))


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage", "empty"])
def test_a_corrupt_entry_is_rebuilt(fresh_cache, damage):
    weights = NetworkWeights("face_expression")
    good = model_cache.network_model(weights, expression_graph)
    path = next(fresh_cache.glob("*.onnx"))
    data = bytearray(path.read_bytes())
    if damage == "flip":  # one bit of one weight: still a parseable model
        data[len(data) // 2] ^= 0x01
    elif damage == "truncate":
        del data[-100:]
    elif damage == "garbage":
        data[:64] = b"\xff" * 64
    else:
        data.clear()
    path.write_bytes(bytes(data))
    assert model_cache.load(path) is None

    crop = np.random.default_rng(3).random((2, 112, 112, 3), dtype=np.float32)
    net = FaceExpressionNet(NetworkWeights("face_expression"))
    assert path.read_bytes() == good  # rebuilt and rewritten
    reference = FaceExpressionNet(network_weights("face_expression"))  # built, no cache
    np.testing.assert_array_equal(net.forward(crop), reference.forward(crop))


def test_checksum_trailer_keeps_a_valid_onnx_model(models):
    import onnxruntime as ort

    body = expression_graph(network_weights("face_expression")).to_bytes()
    model = model_cache.with_checksum(body)
    assert model_cache.checked(model)
    assert not model_cache.checked(body)
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    assert set(session.get_modelmeta().custom_metadata_map) == {model_cache.CHECKSUM_KEY}


def test_old_builds_of_the_same_network_are_pruned(fresh_cache):
    import os
    import time

    fresh_cache.mkdir(parents=True)
    stale = fresh_cache / f"face_expression-{'a' * 64}.onnx"
    recent = fresh_cache / f"face_expression-{'b' * 64}.onnx"
    other = fresh_cache / f"age_gender-{'c' * 64}.onnx"
    for path in (stale, recent, other):
        path.write_bytes(b"old build")
    week_ago = time.time() - model_cache.STALE_AFTER_S - 60
    for path in (stale, other):
        os.utime(path, (week_ago, week_ago))
    model_cache.network_model(NetworkWeights("face_expression"), expression_graph)
    assert not stale.exists()
    assert recent.exists() and other.exists()  # recent, or another network's
    assert len(list(fresh_cache.glob("face_expression-*.onnx"))) == 2


def test_score_faceapi_process_imports_no_pipeline_stack(models, tmp_path):
    # `exprbench score --scorer faceapi` in a fresh process: the JSON comes out, the
    # offline settings of `import flows` apply, and none of the heavy stacks is imported.
    import json

    from conftest import fresh_python

    from exprbench.demo_sources import fetch_photos

    image = fetch_photos(["astronaut"])["astronaut"]
    heavy = ("torch", "prefect", "pandas", "duckdb", "cv2", "dlib", "great_expectations")
    code = (
        "import json, os, sys\n"
        "from flows.cli import main\n"
        f"code = main(['score', '--scorer', 'faceapi', '--json', {str(image)!r}])\n"
        f"loaded = [m for m in {heavy!r} if m in sys.modules]\n"
        "print(json.dumps({'code': code, 'loaded': loaded, "
        "'offline': os.environ.get('DO_NOT_TRACK')}))\n"
    )
    scored, report = (json.loads(line) for line in fresh_python(code, tmp_path).splitlines())
    assert len(scored["faces"]) == 1 and len(scored["faces"][0]["descriptor"]) == 128
    assert report == {"code": 0, "loaded": [], "offline": "1"}


def test_several_images_at_once_give_the_same_records_in_order(
    models, photos, tmp_path, monkeypatch
):
    from exprbench import single
    from exprbench.scorers.faceapi import FaceApiScorer
    from exprbench.single import image_workers, score_paths

    monkeypatch.setattr(single.os, "sched_getaffinity", lambda _pid: {0, 1, 2, 3})

    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    paths = [str(photos[n]) for n in ("feat_multi_face", "obama")] + [str(bad)]
    paths.append(str(photos["astronaut"]))
    assert image_workers("faceapi", {}, 1) == ({}, 1)
    assert image_workers("faceapi", {"threads": 2}, 9) == ({"threads": 2}, 1)
    assert image_workers("fer", {}, 9) == ({}, 1)
    assert image_workers("faceapi", {"min_iou": 0.4}, 9) == ({"min_iou": 0.4, "threads": 1}, 4)
    assert image_workers("faceapi", {}, 3) == ({"threads": 1}, 3)
    one_by_one = list(score_paths(paths, FaceApiScorer({"threads": 2}), None))
    at_once = list(score_paths(paths, FaceApiScorer({"threads": 1}), None, workers=3))
    assert [r["path"] for r in at_once] == paths
    assert "error" in at_once[2] and len(at_once[0]["faces"]) == 5
    assert at_once == one_by_one  # same floats, whatever the threads
