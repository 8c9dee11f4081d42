"""Reference outputs that ship with the UpscalerJS model packages, used to verify the ports.

Each `@upscalerjs/esrgan-*@1.0.0` tarball has `assets/fixture.png` (a 128x128 RGBA photo,
alpha all 255) and `assets/samples/<f>x/result.png`, the package's own output for it at
x2/x3/x4 (and x8 for esrgan-thick only). They are test data, not weights: `exprbench
fetch-models` does not fetch them; tests fetch them with `ensure_all`.
"""

from __future__ import annotations

from exprbench.packaged import PackagedFile

_FIXTURE_SHA256 = "9c42004f3493b1520d7fcaa908f63bf1e34eb1206ff49ee71724c67fc5ce8294"
_SAMPLE_SHA256: dict[str, dict[int, str]] = {
    "esrgan-slim": {
        2: "3374bbc0af08d3c245f173becabef4fe67ea9c933bff4464e26a2960394a3141",
        3: "52b5f9dfa00b6a80f571f0fb88a392532958d9bfd90174b3ef921488a9a78448",
        4: "1394bfb1b9f1c007f99cee8797425dd3076dbbe09981feed0af2029345c888ac",
    },
    "esrgan-medium": {
        2: "f64bea39d9dccd263c065684cee20bc0c798e99308134855ec319cb15bcf8f57",
        3: "a2a83d69cec2287bd767368bf815d764399283bcb0e8a776f6d8e96de66d2f2f",
        4: "97ecc6e4f2b2dc09ae78b2905d982a6817bfea54390e19de52bffd2ab445c314",
    },
    "esrgan-thick": {
        2: "57c94464af02880d2c59e6122b0de3e842abb56b9df51b5d7deea2a8fdff2f21",
        3: "2df152180818bf36e615c6f00b57d05b22a33a68c59fa1a849850c707f2b1806",
        4: "1b92a6874ce10c56314d0d6ba76e83b83dc8398382eadce319c7bc9a932d1022",
        8: "64f604c5c6fcdcfe947bbf1bd3d4d9e02bce05babd9b87ce5efe6ce49176c1b9",
    },
}


def _npm(method: str, member: str, sha256: str) -> PackagedFile:
    return PackagedFile("npm", f"@upscalerjs/{method}", "1.0.0", member, sha256, "MIT")


UPSCALERJS_FIXTURES: dict[str, PackagedFile] = {
    method: _npm(method, "assets/fixture.png", _FIXTURE_SHA256) for method in _SAMPLE_SHA256
}
UPSCALERJS_SAMPLES: dict[tuple[str, int], PackagedFile] = {
    (method, factor): _npm(method, f"assets/samples/{factor}x/result.png", sha)
    for method, samples in _SAMPLE_SHA256.items()
    for factor, sha in samples.items()
}
