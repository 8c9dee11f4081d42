"""An offline HTML template for `dvc plots show`.

DVC's default page loads vega, vega-lite and vega-embed from a CDN, so it renders blank
without internet. This template inlines the same libraries from their pinned npm packages
(`exprbench.assets.VEGA_LIBRARIES`).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from exprbench.assets import VEGA_LIBRARIES
from exprbench.packaged import ensure_all

TEMPLATE_NAME = "plots-offline.html"  # DVC resolves a relative html_template inside .dvc/


def build_template(target: Path) -> Path:
    """Write the template (no `{scripts}` placeholder, so DVC adds no CDN tags)."""
    scripts = "\n".join(
        f"<script>{path.read_text(encoding='utf-8')}</script>"
        for path in ensure_all(list(VEGA_LIBRARIES))
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
        [sys.executable, "-m", "dvc", "config", "--local", "plots.html_template", TEMPLATE_NAME],
        cwd=repo,
        check=True,
    )
    return target
