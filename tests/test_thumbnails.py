"""The report's thumbnail cache: the same data URI as encoding directly, reused while the
file's content is unchanged, recomputed when it changes (whatever the path)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from exprbench.report import THUMBNAIL_PX, thumbnail_data_uri
from exprbench.thumbnails import ThumbnailCache


def test_cached_thumbnail_is_the_direct_one_and_follows_the_content(
    tmp_path: Path, photos: dict[str, Path]
) -> None:
    image = tmp_path / "in" / "face.jpg"
    image.parent.mkdir()
    shutil.copy(photos["obama"], image)
    cache = ThumbnailCache(tmp_path / "cache", thumbnail_data_uri)

    first = cache.data_uri(image, THUMBNAIL_PX)
    assert first == thumbnail_data_uri(image, THUMBNAIL_PX)
    assert (cache.entries.hits, cache.entries.misses) == (0, 1)

    # a fresh cache over the same root (a rerun): read back, not encoded again
    rerun = ThumbnailCache(tmp_path / "cache", thumbnail_data_uri)
    assert rerun.data_uri(image, THUMBNAIL_PX) == first
    assert (rerun.entries.hits, rerun.entries.misses) == (1, 0)

    # another size is another thumbnail
    assert rerun.data_uri(image, 64) == thumbnail_data_uri(image, 64)
    assert rerun.entries.misses == 1

    # same path, new content: recomputed, and it is the new photo's thumbnail
    shutil.copy(photos["biden"], image)
    changed = rerun.data_uri(image, THUMBNAIL_PX)
    assert changed == thumbnail_data_uri(image, THUMBNAIL_PX)
    assert changed != first
    assert rerun.entries.misses == 2

    # a file that cannot be decoded raises as the encoder does and leaves no entry
    broken = tmp_path / "in" / "broken.jpg"
    broken.write_bytes(b"not an image")
    stored = sorted((tmp_path / "cache").rglob("*.json"))
    with pytest.raises(OSError):  # PIL's UnidentifiedImageError is an OSError
        rerun.data_uri(broken, THUMBNAIL_PX)
    assert sorted((tmp_path / "cache").rglob("*.json")) == stored
