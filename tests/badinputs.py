"""The adversarial inputs the tests share, built from real photos.

`write_bad_inputs` writes a folder of awkward but realistic inputs and returns what each
file should become, so tests can check every outcome. The other builders make the inputs
of single probes: a small face on a huge canvas, a manifest that swallows every row, and
file names / labels that would inject markup into a page.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

from exprbench.imageio import max_file_bytes


def write_bad_inputs(raw: Path, photos: dict[str, Path]) -> dict[str, str]:
    """Create inputs under raw/gen/v1/...; return {relative path: expected outcome}.

    Outcomes: 'ok', or 'quarantine:<words expected in the reason>'.
    """
    base = raw / "badgen" / "v1"
    hopper = Image.open(photos["grace_hopper"]).convert("RGB")
    expected: dict[str, str] = {}

    def put(rel: str, data: bytes, outcome: str) -> None:
        path = base / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        expected[f"badgen/v1/{rel}"] = outcome

    def encoded(image: Image.Image, fmt: str, **kw) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, format=fmt, **kw)
        return buffer.getvalue()

    jpeg = encoded(hopper, "JPEG", quality=92)
    put("hopper/neutral.jpg", jpeg, "ok")
    put("hopper/happy.jpg", jpeg[: len(jpeg) // 2], "quarantine:truncated")
    damaged = bytearray(encoded(hopper, "PNG"))
    start = damaged.find(b"IDAT") + 100
    damaged[start : start + 10] = b"\x00" * 10  # breaks the compressed pixel stream
    put("hopper/sad.png", bytes(damaged), "quarantine:corrupt")
    put("hopper/disgust.jpg", b"\xff\xd8\xff" + b"garbage" * 100, "quarantine:not an image")
    put("hopper/angry.jpg", b"", "quarantine:empty")
    put("hopper/fear.png", b"%PDF-1.4 this is not an image\n" * 20, "quarantine:not an image")
    bomb = Image.new("1", (8000, 8000))
    put("hopper/surprise.png", encoded(bomb, "PNG"), "quarantine:decompression bomb")
    put("hopper/smirk.jpg", jpeg, "quarantine:unknown expression label")
    put("hopper/notes.txt", b"not an input", "quarantine:unsupported extension")
    # same bytes, same cell -> quarantined duplicate; replicate suffix keeps both otherwise
    put("hopper/neutral-2.jpg", jpeg, "quarantine:duplicate")

    cmyk = encoded(hopper.convert("CMYK"), "JPEG")
    put("cmyk/neutral.jpg", cmyk, "ok")
    sixteen = Image.fromarray(np.asarray(hopper.convert("L"), dtype=np.uint16) * 257)
    put("sixteen/neutral.png", encoded(sixteen, "PNG"), "ok")
    rgba = hopper.convert("RGBA")
    put("rgba/neutral.png", encoded(rgba, "PNG"), "ok")
    rotated = hopper.rotate(90, expand=True)  # stored sideways, EXIF says rotate back
    exif = Image.Exif()
    exif[0x0112] = 8
    put("exif/neutral.jpg", encoded(rotated, "JPEG", exif=exif.tobytes()), "ok")
    put("ünï cødé/neutral.jpg", jpeg[:-2] + jpeg[-2:], "ok")  # same bytes, other cell: flagged
    put("with space/joy.webp", encoded(hopper, "WEBP"), "ok")
    put("noface/neutral.jpg", photos["feat_no_face"].read_bytes(), "ok")
    put("multi/happy.jpg", photos["feat_multi_face"].read_bytes(), "ok")
    put("deep/extra/neutral.jpg", jpeg, "quarantine:path does not follow")

    # Animated WebP: scored on frame 1, flagged with the frame count.
    frames = [hopper, hopper.rotate(10), hopper.rotate(20)]
    put(
        "anim/happy.webp", encoded(frames[0], "WEBP", save_all=True, append_images=frames[1:]), "ok"
    )
    # Far over the size bound derived from ingest.max_pixels: refused before it is read
    # (a sparse file, so it costs no disk).
    put("big/sad.jpg", b"", "quarantine:size limit")
    os.truncate(base / "big/sad.jpg", max_file_bytes() + 1)

    def link(rel: str, target: str, outcome: str) -> None:
        path = base / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to(target)
        expected[f"badgen/v1/{rel}"] = outcome

    # Hidden names are recorded, not silently skipped; a hidden folder once, not entered.
    put("hopper/.sad.jpg", jpeg, "quarantine:hidden file")
    (base / ".cache" / "x").mkdir(parents=True)
    (base / ".cache" / "x" / "happy.jpg").write_bytes(jpeg)
    expected["badgen/v1/.cache"] = "quarantine:hidden folder"
    # Links: followed when they resolve inside the input folder, quarantined otherwise.
    link("linked/sad.jpg", "../hopper/neutral.jpg", "ok")  # same bytes, other cell: flagged
    link("hopper/outside.jpg", "/proc/self/mem", "quarantine:points outside")
    link("hopper/gone.jpg", "missing.jpg", "quarantine:dangling symlink")
    link("hopper/self.jpg", "self.jpg", "quarantine:symlink loop")
    link("loop/up", "..", "quarantine:already searched")  # a folder link back up the tree
    os.mkfifo(base / "hopper" / "pipe.jpg")  # would block a plain read
    expected["badgen/v1/hopper/pipe.jpg"] = "quarantine:not a regular file"
    # A version folder that is a link to another version: followed, its files flagged.
    solo = raw / "linkgen" / "v1" / "solo"
    solo.mkdir(parents=True)
    (solo / "neutral.png").write_bytes(encoded(hopper, "PNG"))
    (raw / "linkgen" / "v2").symlink_to("v1")
    expected["linkgen/v1/solo/neutral.png"] = "ok"
    expected["linkgen/v2/solo/neutral.png"] = "ok"
    # A folder name that is not UTF-8 (Latin-1 'fréd'): quarantined, shown with \\xNN.
    latin = os.path.join(os.fsencode(base), b"fr\xe9d")
    os.mkdir(latin)
    with open(os.path.join(latin, b"neutral.jpg"), "wb") as handle:
        handle.write(jpeg)
    expected["badgen/v1/fr\\xe9d/neutral.jpg"] = "quarantine:not valid utf-8"
    # subjects.csv inside a subject folder: quarantined, the run goes on, hopper's images
    # are flagged.
    put("hopper/subjects.csv", b"subject,gender\nhopper,female\n", "quarantine:belongs at")
    return expected


# A file name and labels that would run in a browser if a page did not escape them.
HOSTILE_PATH = 'ChatGPT/4o/anna/"><img src=x onerror=alert(9)>.png'
HOSTILE_EXPRESSION = "<script>alert(8)</script>"
HOSTILE_TOP1 = "<script>window.pwned=7</script>"


def small_face_on_big_canvas(
    photo: Path, target: Path, face_px: float, face_in_photo: float, side: int = 2048
) -> Path:
    """The photo shrunk so its face is ~face_px, pasted into a side x side grey JPEG."""
    with Image.open(photo) as image:
        scale = face_px / face_in_photo
        small = image.convert("RGB").resize(
            (round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS
        )
    canvas = Image.new("RGB", (side, side), (128, 128, 128))
    canvas.paste(small, (side * 900 // 2048, side * 800 // 2048))
    target.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(target, "JPEG", quality=92)
    return target


def swallowing_manifest(raw: Path) -> Path:
    """An image and a manifest.csv whose unterminated quote (line 2) swallows every row."""
    image = raw / "g" / "v" / "s" / "happy.jpg"
    image.parent.mkdir(parents=True, exist_ok=True)
    image.write_bytes(b"not read: the manifest is broken")
    manifest = raw / "manifest.csv"
    manifest.write_text('path,generator,version,subject,expression\n"g/v/s/happy.jpg,g,v,s,happy\n')
    return manifest
