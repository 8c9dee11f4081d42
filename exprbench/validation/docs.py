"""Offline Great Expectations Data Docs.

GX links jQuery, Bootstrap, bootstrap-table, Font Awesome, vega ... from CDNs.
`fetch_data_docs_assets()` (the setup step; needs npm and the registry) downloads the same
files from pinned npm packages (`exprbench.assets`) into the exprbench cache, checked by
sha256. After each build the HTML is rewritten to load copies of them under
`<docs>/static/vendor/` ("vendored"). Without the cache the remote tags are removed instead
and the index page gets a plain list of links, since its tables are otherwise drawn by the
missing JS ("stripped"). Either way no page loads anything from the network.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping
from html import escape
from pathlib import Path
from typing import Literal
from urllib.parse import quote

from exprbench.assets import COMPANION_ASSETS, DATA_DOCS_ASSETS
from exprbench.packaged import PackagedFile, PackagedFileError, ensure, ensure_all, sha256_file

DocsMode = Literal["vendored", "stripped"]

# GX's navbar logo comes from S3 although the site ships its own copy.
_GX_LOGO_URL = "https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/logo-long.png"
_GX_LOGO_LOCAL = Path("static/images/logo-long.png")
_VENDOR_DIR = Path("static/vendor")
_OFFLINE_MARK = "<!-- exprbench: offline links -->"


def _all_assets() -> list[PackagedFile]:
    return list(dict.fromkeys([*DATA_DOCS_ASSETS.values(), *COMPANION_ASSETS]))


def fetch_data_docs_assets(root: Path | None = None) -> list[Path]:
    """Setup step: download Data Docs' JS/CSS/fonts from pinned npm packages (needs npm)."""
    return ensure_all(_all_assets(), root)


def _cached_assets(root: Path | None) -> dict[PackagedFile, Path] | None:
    """Verified local copies of every asset, or None if any is missing (no download)."""
    try:
        return {item: ensure(item, root, fetch=False) for item in _all_assets()}
    except PackagedFileError:
        return None


def _vendor_path(item: PackagedFile) -> Path:
    safe_key = re.sub(r"[^A-Za-z0-9._-]+", "_", item.archive_key)
    return _VENDOR_DIR / safe_key / item.member


_TAG = re.compile(r"<script\b[^>]*>\s*</script>|<(?:link|img)\b[^>]*>", re.IGNORECASE)
_REMOTE_ATTR = re.compile(r"""\b(src|href)\s*=\s*(["'])(https?://[^"']*)\2""", re.IGNORECASE)
_SRI_ATTRS = re.compile(r"""\s+(integrity|crossorigin)\s*=\s*(["'])[^"']*\2""", re.IGNORECASE)


def rewrite_remote_tags(html: str, local_for: Mapping[str, str]) -> tuple[str, list[str]]:
    """Point remote <script>/<link>/<img> at `local_for[url]`; drop tags with no local copy.

    Returns the new HTML and the URLs dropped. SRI/crossorigin attributes go too: a
    crossorigin script is refused from file:// pages.
    """
    dropped: list[str] = []

    def replace(match: re.Match[str]) -> str:
        tag = match.group(0)
        remote = _REMOTE_ATTR.search(tag)
        if remote is None:
            return tag
        url = remote.group(3)
        local = local_for.get(url.split("?", 1)[0])
        if local is None:
            dropped.append(url)
            return ""
        tag = tag[: remote.start(3)] + local + tag[remote.end(3) :]
        return _SRI_ATTRS.sub("", tag)

    return _TAG.sub(replace, html), dropped


# GX 1.24 writes the favicon link of validation pages one '../' short; rebase every
# relative link into static/ on the page's real depth.
_STATIC_LINK = re.compile(r"""\b(src|href)="(?:\./|(?:\.\./)+)static/([^"]*)""")


def _rebase_static_links(html: str, page: Path, docs_dir: Path) -> str:
    prefix = Path(os.path.relpath(docs_dir / "static", page.parent)).as_posix()
    return _STATIC_LINK.sub(lambda m: f'{m.group(1)}="{prefix}/{m.group(2)}', html)


def _offline_index_links(docs_dir: Path, index: Path) -> str:
    """Plain links to every page: the index's own tables are drawn by (absent) JS."""
    items = []
    for kind in ("validations", "expectations"):
        for page in sorted((docs_dir / kind).rglob("*.html"), reverse=True):
            href = escape(quote(page.relative_to(index.parent).as_posix()))
            label = escape(page.relative_to(docs_dir / kind).as_posix())
            items.append(f'<li>{kind[:-1]}: <a href="{href}">{label}</a></li>')
    return (
        f"{_OFFLINE_MARK}<div><p>Pages (styles and scripts are not vendored: run "
        "<code>exprbench.validation.fetch_data_docs_assets()</code> once, with npm, and "
        f"validate again):</p><ul>{''.join(items)}</ul></div>"
    )


def make_data_docs_offline(docs_dir: Path, asset_root: Path | None = None) -> DocsMode:
    """Rewrite every page under `docs_dir` so it loads nothing remote; say how."""
    cached = _cached_assets(asset_root)
    targets: dict[str, Path] = {_GX_LOGO_URL: docs_dir / _GX_LOGO_LOCAL}
    if cached is not None:
        for item, source in cached.items():
            destination = docs_dir / _vendor_path(item)
            if not (destination.is_file() and sha256_file(destination) == item.sha256):
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, destination)
        targets |= {url: docs_dir / _vendor_path(item) for url, item in DATA_DOCS_ASSETS.items()}
    mode: DocsMode = "vendored" if cached is not None else "stripped"
    for page in docs_dir.rglob("*.html"):
        local_for = {
            url: Path(os.path.relpath(target, page.parent)).as_posix()
            for url, target in targets.items()
        }
        original = page.read_text(encoding="utf-8")
        html, _ = rewrite_remote_tags(original, local_for)
        html = _rebase_static_links(html, page, docs_dir)
        html = re.sub(re.escape(_OFFLINE_MARK) + r".*?</ul></div>", "", html, flags=re.S)
        if mode == "stripped" and page == docs_dir / "index.html":
            html = html.replace("<body>", "<body>" + _offline_index_links(docs_dir, page), 1)
        if html != original:
            tmp = page.with_name(f".{page.name}.tmp")
            tmp.write_text(html, encoding="utf-8")
            os.replace(tmp, page)
    return mode
