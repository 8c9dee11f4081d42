"""Write a folder of awkward but realistic inputs, built from real photos.

Returns what each file should become, so tests can check every outcome.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image


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
    return expected
