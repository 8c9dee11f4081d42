"""An offline HTML template for `dvc plots show`.

DVC's default page loads vega, vega-lite and vega-embed from a CDN, so it renders blank
without internet. This template inlines the same libraries from their pinned npm packages.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from exprbench.packaged import PackagedFile, ensure_all

_LIBS = [
    PackagedFile(
        "npm",
        "vega",
        "5.33.1",
        "build/vega.min.js",
        "463f3db6a40b20e9747b4ed38f37ed0add508838f9141b1cf8366784b07b30c8",
        "BSD-3-Clause",
    ),
    PackagedFile(
        "npm",
        "vega-lite",
        "5.23.0",
        "build/vega-lite.min.js",
        "58c27358e26f2d319cf62f45bc17a4c8362f08645001df2ec8d341eee4097c7f",
        "BSD-3-Clause",
    ),
    PackagedFile(
        "npm",
        "vega-embed",
        "6.29.0",
        "build/vega-embed.min.js",
        "12d02acfbe3ec59ef9a37dd4822a2e04e2961b5bbb671bbe661d2221715b99da",
        "BSD-3-Clause",
    ),
]
TEMPLATE_NAME = "plots-offline.html"  # DVC resolves a relative html_template inside .dvc/


def build_template(target: Path) -> Path:
    """Write the template (no `{scripts}` placeholder, so DVC adds no CDN tags)."""
    scripts = "\n".join(
        f"<script>{path.read_text(encoding='utf-8')}</script>" for path in ensure_all(_LIBS)
    )
    page = (
        "<!DOCTYPE html>\n<html>\n<head>\n<meta charset='utf-8'>\n<title>exprbench plots</title>\n"
        f"{scripts}\n<style>table {{ border-spacing: 15px; }}</style>\n</head>\n<body>\n"
        "{plot_divs}\n</body>\n</html>\n"
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(page, encoding="utf-8")
    return target


def configure(repo: Path) -> Path:
    """Build the template inside `repo` and point DVC's plots.html_template at it."""
    target = build_template(repo / ".dvc" / TEMPLATE_NAME)
    subprocess.run(
        ["dvc", "config", "--local", "plots.html_template", TEMPLATE_NAME],
        cwd=repo,
        check=True,
    )
    return target
