"""Expression geometry against the neutral: action-unit-related measures from 68 landmarks.

Pure numpy, no model: the landmarks come from the caller (the `geometry` scorer fits dlib's
68-point model on the faces stage's aligned crops). docs/GEOMETRY.md explains each measure,
the FACS action unit (AU) it approximates, what each basic expression is expected to move,
and the limits.

The face frame
--------------
Every measure is read in a frame fixed by the four eye corners (canthi), which expressions
move little (unlike the lids, brows or mouth), so the frame does not follow the expression:

* eye centre = midpoint of an eye's two corners: right eye (image left) points 36 and 39,
  left eye points 42 and 45 (iBUG 300-W numbering, 0-based);
* origin = midpoint of the two eye centres; x axis = from the right eye centre to the left
  one (image left to right); y axis = x turned 90 degrees clockwise on screen, i.e. pointing
  down the face, towards the mouth;
* unit = the inter-ocular distance (IOD), the distance between the two eye centres.

So every measure is invariant to translation, rotation in the image plane and scale: the
same face in any similarity-aligned crop (or the original image) gives the same numbers.

The measures
------------
`state(landmarks)` gives each measure's value on one face (in IOD); `displacement(face,
neutral)` gives face minus neutral, the same subject's neutral image: that is what the
scores report. Sign convention: positive = the direction the named AU moves the face.
"up" is -y in the face frame. Means are over the listed points. Mouth and jaw heights are
read from the nostril base rather than the eye line: a nod (head pitch) changes the
eye-to-mouth distance about three times as much as the nose-to-mouth one, and on the demo
photos the eye-line version reads a clear smile as no lip-corner raise at all.

=====================  ======  ================================================================
column                 AU      definition (displacement = this value on the image minus the neutral)
=====================  ======  ================================================================
geo_lip_corner_raise   12      height of the lip corners (48, 54) relative to the nostril base
                               (mean of 31-35): -(mean(y48, y54) - y_nostrils)
geo_lip_stretch        20      half the mouth width, corner to corner along x: (x54 - x48) / 2,
                               i.e. the mean outward movement of one corner
geo_lip_corner_depress 15      how far the lip corners (48, 54) sit below the upper-lip centre
                               (51): mean(y48, y54) - y51
geo_mouth_open         25/26   vertical inner-lip gap: mean(y67 - y61, y66 - y62, y65 - y63)
geo_jaw_drop           26/27   depth of the chin (8) below the nostril base: y8 - y_nostrils
geo_brow_raise_inner   1       height of the inner brow (20-23) above the eye line: -mean(y)
geo_brow_raise_outer   2       height of the outer brow (17, 18, 25, 26) above the eyes: -mean(y)
geo_brow_lower         4       depth of the whole brow (17-26) below the eye line: mean(y)
geo_brow_draw_together 4       half the gap between the inner brow ends, negated:
                               -(x22 - x21) / 2, i.e. the mean inward movement of one end
geo_eye_open           5 (+)   lid aperture: mean(y41 - y37, y40 - y38, y47 - y43, y46 - y44);
                       7 (-)   positive = wider (upper lid raiser), negative = narrower
                               (lid tightener; also cheek raiser AU6 and blinks)
geo_nose_wrinkle       9       height of the nostril base (31-35) above the eye line: -mean(y)
=====================  ======  ================================================================

Fear versus surprise
--------------------
Ekman & Friesen's prototypes share AU1+2+5+26 between the two; fear adds AU4 (brows drawn
together and lowered), AU20 (lips stretched sideways) and AU7. The rule scores the two that
68 landmarks see most reliably (the inner brow ends and the lip corners move along x, where
landmark noise is smallest; see docs/GEOMETRY.md):

    geo_fear_vs_surprise = geo_brow_draw_together + geo_lip_stretch

Positive reads fear, negative surprise: surprise raises the brows without pulling their
inner ends together, and when it drops the jaw the lips round and the mouth narrows.
`verdict(score)` turns it into "fear" / "surprise" / "undecided", with a dead band of
`VERDICT_MARGIN` IOD either side of 0 (about 1.5 times the spread of their sum between
landmarks fitted on the 256 px crop and on the full image, 0.013 IOD on the demo photos).
The rule was fixed from the FACS prototypes, not fitted to data. A smile widens the mouth
too, so it is only meant for faces that are fear or surprise by request or top-1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from exprbench.metrics import Leaderboard, MetricSpec

N_LANDMARKS = 68
# Below this many pixels between the eye centres the 68 landmarks are too coarse to read.
MIN_IOD_PX = 8.0
VERDICT_MARGIN = 0.02  # IOD: |fear_vs_surprise| below this is "undecided"
FEAR_VS_SURPRISE = "geo_fear_vs_surprise"

Verdict = Literal["fear", "surprise", "undecided"]

# iBUG 300-W point groups (0-based).
RIGHT_EYE_CORNERS = (36, 39)  # the person's right eye: image left
LEFT_EYE_CORNERS = (42, 45)
LIP_CORNERS = (48, 54)
UPPER_LIP_CENTRE = 51
INNER_LIP_PAIRS = ((61, 67), (62, 66), (63, 65))  # (upper, lower)
CHIN = 8
INNER_BROW = (20, 21, 22, 23)
OUTER_BROW = (17, 18, 25, 26)
BROW = tuple(range(17, 27))
INNER_BROW_ENDS = (21, 22)
LID_PAIRS = ((37, 41), (38, 40), (43, 47), (44, 46))  # (upper lid, lower lid)
NOSTRIL_BASE = (31, 32, 33, 34, 35)


@dataclass(frozen=True)
class Measure:
    """One geometry measure: its score column, the FACS action unit(s) it approximates."""

    column: str
    aus: str  # e.g. "AU12"
    title: str  # short heading for tables
    description: str  # one line: what is measured and its sign


MEASURES: tuple[Measure, ...] = (
    Measure(
        "geo_lip_corner_raise",
        "AU12",
        "lip corners up",
        "lip corners (48, 54) raised relative to the nostril base (31-35); + = up (lip corner "
        "puller)",
    ),
    Measure(
        "geo_lip_stretch",
        "AU20",
        "lips stretched",
        "mean outward movement of each lip corner (half the change of mouth width); "
        "+ = wider (lip stretcher; the smile AU12 widens too)",
    ),
    Measure(
        "geo_lip_corner_depress",
        "AU15",
        "lip corners down",
        "lip corners (48, 54) lowered relative to the upper-lip centre (51); + = down "
        "(lip corner depressor)",
    ),
    Measure(
        "geo_mouth_open",
        "AU25/26",
        "mouth open",
        "vertical gap between the inner lips (61-63 to 65-67); + = more open (lips part, jaw drop)",
    ),
    Measure(
        "geo_jaw_drop",
        "AU26/27",
        "jaw drop",
        "chin (8) lowered relative to the nostril base (31-35); + = down (jaw drop, mouth stretch)",
    ),
    Measure(
        "geo_brow_raise_inner",
        "AU1",
        "inner brow up",
        "inner brow (20-23) raised above the eye line; + = up (inner brow raiser)",
    ),
    Measure(
        "geo_brow_raise_outer",
        "AU2",
        "outer brow up",
        "outer brow (17, 18, 25, 26) raised above the eye line; + = up (outer brow raiser)",
    ),
    Measure(
        "geo_brow_lower",
        "AU4",
        "brow lowered",
        "whole brow (17-26) lowered towards the eye line; + = down (brow lowerer)",
    ),
    Measure(
        "geo_brow_draw_together",
        "AU4",
        "brows together",
        "mean movement of each inner brow end (21, 22) towards the midline; + = closer "
        "(brow lowerer draws the brows together)",
    ),
    Measure(
        "geo_eye_open",
        "AU5 / AU7",
        "eyes open",
        "lid aperture (upper lid 37, 38, 43, 44 to lower lid 41, 40, 47, 46); + = wider "
        "(upper lid raiser AU5), - = narrower (lid tightener AU7, cheek raiser AU6)",
    ),
    Measure(
        "geo_nose_wrinkle",
        "AU9",
        "nose wrinkle",
        "nostril base (31-35) raised towards the eye line; + = up (nose wrinkler; the upper "
        "lip raiser AU10 lifts it a little too)",
    ),
)
COLUMNS: tuple[str, ...] = tuple(m.column for m in MEASURES)


@dataclass(frozen=True)
class Prototype:
    """An expression's prototype action units (Ekman & Friesen, EMFACS) and the measures
    they are expected to move: column -> +1 (in the AU's direction) or -1 (against it)."""

    aus: str
    expected: Mapping[str, int]


# What each basic expression is expected to move, from its EMFACS prototype. Only the
# measures a prototype AU moves clearly are listed; the others may move either way.
PROTOTYPES: dict[str, Prototype] = {
    "happy": Prototype(
        "AU6+12",
        {
            "geo_lip_corner_raise": 1,
            "geo_lip_stretch": 1,
            "geo_lip_corner_depress": -1,
            "geo_eye_open": -1,
        },
    ),
    "sad": Prototype(
        "AU1+4+15",
        {"geo_brow_raise_inner": 1, "geo_brow_draw_together": 1, "geo_lip_corner_depress": 1},
    ),
    "surprise": Prototype(
        "AU1+2+5B+26",
        {
            "geo_brow_raise_inner": 1,
            "geo_brow_raise_outer": 1,
            "geo_brow_lower": -1,
            "geo_eye_open": 1,
            "geo_mouth_open": 1,
            "geo_jaw_drop": 1,
        },
    ),
    "fear": Prototype(
        "AU1+2+4+5+7+20+26",
        {
            "geo_brow_raise_inner": 1,
            "geo_brow_raise_outer": 1,
            "geo_brow_draw_together": 1,
            "geo_lip_stretch": 1,
            "geo_mouth_open": 1,
            "geo_jaw_drop": 1,
        },
    ),
    "angry": Prototype(
        "AU4+5+7+23",
        {"geo_brow_lower": 1, "geo_brow_draw_together": 1, "geo_brow_raise_inner": -1},
    ),
    "disgust": Prototype(
        "AU9+15+16",
        {"geo_nose_wrinkle": 1, "geo_lip_corner_depress": 1, "geo_brow_lower": 1},
    ),
}


def _check(landmarks: object, where: str) -> np.ndarray:
    try:
        points = np.asarray(landmarks, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where}: landmarks are not numbers ({error})") from None
    if points.shape != (N_LANDMARKS, 2):
        raise ValueError(
            f"{where}: expected {N_LANDMARKS} landmarks of shape (68, 2) in iBUG 300-W order, "
            f"got {points.shape}"
        )
    if not np.isfinite(points).all():
        raise ValueError(f"{where}: landmarks contain NaN or infinity")
    return points


def face_frame(landmarks: object) -> np.ndarray:
    """The 68 landmarks in the face frame (see the module docstring): (68, 2) in IOD units,
    origin between the eye centres, x along the eye line, y down the face."""
    points = _check(landmarks, "face_frame")
    right_eye = points[list(RIGHT_EYE_CORNERS)].mean(axis=0)
    left_eye = points[list(LEFT_EYE_CORNERS)].mean(axis=0)
    axis = left_eye - right_eye
    iod = float(np.hypot(*axis))
    if not iod >= MIN_IOD_PX:
        raise ValueError(
            f"face_frame: the eye centres are {iod:.1f} px apart (< {MIN_IOD_PX:g}); too small "
            "or degenerate landmarks to measure expression geometry"
        )
    x_axis = axis / iod
    y_axis = np.array([-x_axis[1], x_axis[0]])  # x turned 90 degrees clockwise on screen
    if float(np.dot(points[CHIN] - (right_eye + left_eye) / 2, y_axis)) <= 0:
        raise ValueError(
            "face_frame: the chin is not below the eye line (mirrored or mislabelled "
            "landmarks?); expected 68 points in iBUG 300-W order"
        )
    centred = points - (right_eye + left_eye) / 2
    return np.stack([centred @ x_axis, centred @ y_axis], axis=1) / iod


def state(landmarks: object) -> dict[str, float]:
    """Every measure's value on one face, in IOD (before subtracting the neutral's)."""
    p = face_frame(landmarks)
    x, y = p[:, 0], p[:, 1]

    def mean_y(indices: Sequence[int]) -> float:
        return float(y[list(indices)].mean())

    corners_y = mean_y(LIP_CORNERS)
    nostrils_y = mean_y(NOSTRIL_BASE)
    values = {
        "geo_lip_corner_raise": nostrils_y - corners_y,
        "geo_lip_stretch": float(x[LIP_CORNERS[1]] - x[LIP_CORNERS[0]]) / 2,
        "geo_lip_corner_depress": corners_y - float(y[UPPER_LIP_CENTRE]),
        "geo_mouth_open": float(np.mean([y[low] - y[up] for up, low in INNER_LIP_PAIRS])),
        "geo_jaw_drop": float(y[CHIN]) - nostrils_y,
        "geo_brow_raise_inner": -mean_y(INNER_BROW),
        "geo_brow_raise_outer": -mean_y(OUTER_BROW),
        "geo_brow_lower": mean_y(BROW),
        "geo_brow_draw_together": -float(x[INNER_BROW_ENDS[1]] - x[INNER_BROW_ENDS[0]]) / 2,
        "geo_eye_open": float(np.mean([y[low] - y[up] for up, low in LID_PAIRS])),
        "geo_nose_wrinkle": -nostrils_y,
    }
    assert tuple(values) == COLUMNS
    return values


def displacement(landmarks: object, neutral: object) -> dict[str, float]:
    """Each measure on `landmarks` minus the same measure on the subject's `neutral`
    landmarks (both 68 x 2, any position, rotation and scale), in IOD; plus the
    fear-versus-surprise score computed from them."""
    face, reference = state(landmarks), state(neutral)
    moved = {column: face[column] - reference[column] for column in COLUMNS}
    score = fear_vs_surprise(moved)
    assert score is not None  # both measures are in `moved`
    moved[FEAR_VS_SURPRISE] = score
    return moved


def fear_vs_surprise(moved: Mapping[str, float | None]) -> float | None:
    """Signed score from displacements: + reads fear (AU4 draws the brows together, AU20
    stretches the lips), - reads surprise. None when either measure is missing."""
    together, stretch = moved.get("geo_brow_draw_together"), moved.get("geo_lip_stretch")
    if together is None or stretch is None:
        return None
    return float(together) + float(stretch)


def verdict(score: float | None, margin: float = VERDICT_MARGIN) -> Verdict | None:
    """The geometry's reading of a fear-or-surprise face from `fear_vs_surprise`."""
    if score is None or not np.isfinite(score):
        return None
    if score > margin:
        return "fear"
    if score < -margin:
        return "surprise"
    return "undecided"


def moves_as_expected(expression: str, column: str, value: float | None) -> bool | None:
    """Whether a mean displacement has the sign the expression's prototype expects
    (None: the prototype says nothing about that measure, or no value)."""
    prototype = PROTOTYPES.get(expression)
    if prototype is None or value is None or column not in prototype.expected:
        return None
    return value * prototype.expected[column] > 0


# --------------------------------------------------------------------------- metric specs

GEOMETRY_TABLE = "geometry"  # the study table (n, mean, 95% interval per cell)
AGREES = "geo_fear_surprise_agrees"
# A displacement beyond 2 IOD would put a landmark outside the face.
DISPLACEMENT_BOUND = 2.0


def _agrees_sql() -> str:
    """The verdict equals the requested label, on fear and surprise images (else NULL)."""
    return (
        f"CASE WHEN expression = 'fear' THEN {FEAR_VS_SURPRISE} > {VERDICT_MARGIN!r} "
        f"WHEN expression = 'surprise' THEN {FEAR_VS_SURPRISE} < {-VERDICT_MARGIN!r} END"
    )


GEOMETRY_METRICS: tuple[MetricSpec, ...] = (
    *(
        MetricSpec(
            m.column,
            -DISPLACEMENT_BOUND,
            DISPLACEMENT_BOUND,
            None,
            f"{m.aus}: {m.description}; image minus the subject's neutral",
            unit="IOD",
            relative_to_neutral=True,
            table=GEOMETRY_TABLE,
            digits=3,
        )
        for m in MEASURES
    ),
    MetricSpec(
        FEAR_VS_SURPRISE,
        -2 * DISPLACEMENT_BOUND,
        2 * DISPLACEMENT_BOUND,
        None,
        "geo_brow_draw_together + geo_lip_stretch: + reads fear (AU4, AU20), - surprise",
        unit="IOD",
        relative_to_neutral=True,
        table=GEOMETRY_TABLE,
        digits=3,
    ),
    MetricSpec(
        AGREES,
        0.0,
        1.0,
        True,
        f"on fear and surprise images: the geometry verdict (|{FEAR_VS_SURPRISE}| > "
        f"{VERDICT_MARGIN:g} IOD) equals the requested label",
        dtype="bool",
        relative_to_neutral=True,
        table=GEOMETRY_TABLE,
        leaderboard=Leaderboard("share_fear_surprise_geometry", "fear/surprise: geometry agrees"),
        sql=_agrees_sql(),
    ),
)
