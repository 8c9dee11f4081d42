"""Decoding input images into plain RGB arrays, with reasons for everything that fails.

Every later stage reads pixels through `load_rgb`, so EXIF orientation, colour-mode and
bit-depth handling happen in exactly one place.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from exprbench.imagecheck import check_rgb_image

# Formats we accept; the extension alone is not trusted, the decoder decides.
SUPPORTED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "MPO"})
DEFAULT_MAX_PIXELS = 40_000_000


class ImageRejected(ValueError):
    """The file cannot be used as an input image; str(error) is the reason shown to users."""


@dataclass(frozen=True)
class ImageMeta:
    """What ingest records about a decodable image (cacheable by content hash)."""

    format: str
    mode: str  # colour mode as stored
    width: int  # after EXIF orientation
    height: int
    exif_orientation: int  # 1 when absent


@dataclass(frozen=True)
class DecodedImage:
    """An input image normalised to upright 8-bit RGB, plus what it was before."""

    rgb: np.ndarray  # H x W x 3 uint8, EXIF orientation applied
    format: str
    mode: str  # colour mode as stored
    exif_orientation: int  # 1 when absent

    @property
    def meta(self) -> ImageMeta:
        height, width = self.rgb.shape[:2]
        return ImageMeta(self.format, self.mode, width, height, self.exif_orientation)


def _to_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit grey: scale to 8 bits instead of letting Pillow clip at 255.
        array = np.asarray(image, dtype=np.uint32)
        peak = 65535 if mode.startswith("I;16") or array.max() > 255 else 255
        grey = (array.astype(np.float64) * (255.0 / peak)).round().astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        # Composite on white: transparent backgrounds are the common case for cut-outs.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode == "RGB":
        return image
    return image.convert("RGB")  # L, P, CMYK, YCbCr, 1, F: Pillow's conversions


def decode_bytes(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """Decode and normalise one image; raises ImageRejected with a user-facing reason."""
    if not data:
        raise ImageRejected("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            fmt = image.format or "unknown"
            if fmt not in SUPPORTED_FORMATS:
                raise ImageRejected(
                    f"unsupported image format {fmt}; expected one of JPEG, PNG, WEBP"
                )
            width, height = image.size
            if width * height > max_pixels:
                raise ImageRejected(
                    f"image is {width}x{height} = {width * height} pixels, over the "
                    f"ingest.max_pixels limit of {max_pixels} (possible decompression bomb)"
                )
            if width < 1 or height < 1:
                raise ImageRejected(f"image has no pixels ({width}x{height})")
            mode = image.mode
            orientation = int(image.getexif().get(0x0112, 1) or 1)
            image.load()  # forces a full decode: truncated files fail here, not later
            upright = ImageOps.exif_transpose(image)
            rgb = np.asarray(_to_rgb(upright), dtype=np.uint8)
    except ImageRejected:
        raise
    except UnidentifiedImageError:
        raise ImageRejected("not an image: no decoder recognises the file's contents") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageRejected(f"decompression bomb refused: {error}") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageRejected(f"corrupt or truncated image: {error}") from None
    rgb = check_rgb_image(rgb, "decoded image", error=ImageRejected)
    return DecodedImage(rgb, fmt, mode, orientation)


def load_rgb(path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read a file and return its upright RGB pixels (see `decode_bytes`)."""
    return decode_bytes(Path(path).read_bytes(), max_pixels=max_pixels).rgb


def encode_png(rgb: np.ndarray) -> bytes:
    """Lossless PNG bytes of an RGB array (deterministic for identical pixels)."""
    buffer = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()
