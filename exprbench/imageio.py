"""Decoding input images into plain RGB arrays, with reasons for everything that fails.

Every later stage reads pixels through `load_rgb`, so EXIF orientation, colour-mode and
bit-depth handling happen in exactly one place.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from exprbench.imagecheck import check_rgb_image

# Formats we accept; the extension alone is not trusted, the decoder decides.
SUPPORTED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "MPO"})
DEFAULT_MAX_PIXELS = 40_000_000
# File-size bound derived from max_pixels: 8 bytes a pixel is an uncompressed 16-bit RGBA
# PNG (the largest any supported format stores a pixel in), plus 16 MiB for metadata
# (EXIF, ICC, XMP). A file over it cannot be a usable image and is refused unread.
BYTES_PER_PIXEL_BOUND = 8
METADATA_ALLOWANCE = 16 * 1024 * 1024
_CHUNK = 1024 * 1024


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
    frames: int = 1  # >1 for animated WebP/APNG; frame 1 is the one scored


@dataclass(frozen=True)
class DecodedImage:
    """An input image normalised to upright 8-bit RGB, plus what it was before."""

    rgb: np.ndarray  # H x W x 3 uint8, EXIF orientation applied
    format: str
    mode: str  # colour mode as stored
    exif_orientation: int  # 1 when absent
    frames: int = 1

    @property
    def meta(self) -> ImageMeta:
        height, width = self.rgb.shape[:2]
        return ImageMeta(self.format, self.mode, width, height, self.exif_orientation, self.frames)


def max_file_bytes(max_pixels: int = DEFAULT_MAX_PIXELS) -> int:
    """The largest input file accepted for a given ingest.max_pixels (see BYTES_PER_PIXEL_BOUND)."""
    return max_pixels * BYTES_PER_PIXEL_BOUND + METADATA_ALLOWANCE


def _os_reason(error: OSError) -> str:
    name = os.strerror(error.errno) if error.errno else str(error)
    return f"cannot read file: {name} ({type(error).__name__}, errno {error.errno})"


def _chunks(handle, limit: int) -> Iterator[bytes]:
    total = 0
    while chunk := handle.read(_CHUNK):
        total += len(chunk)
        if total > limit:
            raise ImageRejected(
                f"file grew past {limit} bytes while being read, over the size limit "
                "(ingest.max_pixels)"
            )
        yield chunk


def _open_checked(path: Path, max_pixels: int):
    """Open a regular file and refuse it by size and header before anything is read in full."""
    handle = open(path, "rb")  # noqa: SIM115 - returned to the caller, who closes it
    try:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ImageRejected("not a regular file (device, pipe or socket)")
        limit = max_file_bytes(max_pixels)
        if info.st_size > limit:
            raise ImageRejected(
                f"file is {info.st_size} bytes, over the size limit of {limit} bytes derived "
                f"from ingest.max_pixels={max_pixels} ({BYTES_PER_PIXEL_BOUND} bytes a pixel "
                "plus metadata)"
            )
        if info.st_size > 0:
            _check_header(handle, max_pixels)
            handle.seek(0)
        return handle
    except BaseException:
        handle.close()
        raise


def hash_file(path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS) -> str:
    """sha256 of a file read in chunks, after the size and header checks; ImageRejected
    (with the OS error for unreadable files) when the file cannot be an input image."""
    try:
        with _open_checked(Path(path), max_pixels) as handle:
            digest = hashlib.sha256()
            for chunk in _chunks(handle, max_file_bytes(max_pixels)):
                digest.update(chunk)
            return digest.hexdigest()
    except OSError as error:
        raise ImageRejected(_os_reason(error)) from None


def read_file(path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS) -> bytes:
    """A file's bytes, refused (ImageRejected) when unreadable, not regular, or too large."""
    try:
        with _open_checked(Path(path), max_pixels) as handle:
            return b"".join(_chunks(handle, max_file_bytes(max_pixels)))
    except OSError as error:
        raise ImageRejected(_os_reason(error)) from None


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


def _open_image(source, max_pixels: int) -> Image.Image:
    """Pillow's lazy open (header only) plus the format and pixel-count checks."""
    image = Image.open(source)
    fmt = image.format or "unknown"
    if fmt not in SUPPORTED_FORMATS:
        raise ImageRejected(f"unsupported image format {fmt}; expected one of JPEG, PNG, WEBP")
    width, height = image.size
    if width * height > max_pixels:
        raise ImageRejected(
            f"image is {width}x{height} = {width * height} pixels, over the "
            f"ingest.max_pixels limit of {max_pixels} (possible decompression bomb)"
        )
    if width < 1 or height < 1:
        raise ImageRejected(f"image has no pixels ({width}x{height})")
    return image


def _decoder_errors(action):
    """Run `action`, turning decoder exceptions into ImageRejected with a reason."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return action()
    except ImageRejected:
        raise
    except UnidentifiedImageError:
        raise ImageRejected("not an image: no decoder recognises the file's contents") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageRejected(f"decompression bomb refused: {error}") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageRejected(f"corrupt or truncated image: {error}") from None


def _check_header(handle, max_pixels: int) -> None:
    _decoder_errors(lambda: _open_image(handle, max_pixels))


def decode_bytes(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """Decode and normalise one image; raises ImageRejected with a user-facing reason.

    Animated files (WebP, APNG) decode their first frame; `frames` says how many there were.
    """
    if not data:
        raise ImageRejected("empty file (0 bytes)")

    def decode() -> DecodedImage:
        image = _open_image(io.BytesIO(data), max_pixels)
        fmt = image.format or "unknown"
        mode = image.mode
        frames = int(getattr(image, "n_frames", 1) or 1)
        orientation = int(image.getexif().get(0x0112, 1) or 1)
        image.load()  # forces a full decode: truncated files fail here, not later
        # exif_transpose copies the whole image even when there is nothing to turn
        upright = ImageOps.exif_transpose(image) if orientation in range(2, 9) else image
        rgb = np.asarray(_to_rgb(upright), dtype=np.uint8)
        return DecodedImage(rgb, fmt, mode, orientation, frames)

    decoded = _decoder_errors(decode)
    rgb = check_rgb_image(decoded.rgb, "decoded image", error=ImageRejected)
    return DecodedImage(rgb, decoded.format, decoded.mode, decoded.exif_orientation, decoded.frames)


def load_rgb(path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read a file and return its upright RGB pixels (see `decode_bytes`)."""
    return decode_bytes(read_file(path, max_pixels=max_pixels), max_pixels=max_pixels).rgb


def encode_png(rgb: np.ndarray) -> bytes:
    """Lossless PNG bytes of an RGB array (deterministic for identical pixels)."""
    buffer = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()
