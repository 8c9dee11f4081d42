"""Pinned npm files that make generated HTML work offline: one place for every pin.

GX's Data Docs link jQuery, Bootstrap, bootstrap-table, Font Awesome and vega from CDNs,
and `dvc plots show` links vega, vega-lite and vega-embed. The same files ship in npm
packages: `exprbench fetch-models` downloads them once into the exprbench cache, checked
by sha256, and `exprbench.validation.docs` / `flows.dvc_plots` load them from there.
"""

from __future__ import annotations

from exprbench.packaged import PackagedFile


def _npm(package: str, version: str, member: str, sha256: str, license: str) -> PackagedFile:
    return PackagedFile("npm", package, version, f"package/{member}", sha256, license)


VEGA = _npm(
    "vega",
    "5.33.1",
    "build/vega.min.js",
    "463f3db6a40b20e9747b4ed38f37ed0add508838f9141b1cf8366784b07b30c8",
    "BSD-3-Clause",
)
VEGA_LITE = _npm(
    "vega-lite",
    "5.23.0",
    "build/vega-lite.min.js",
    "58c27358e26f2d319cf62f45bc17a4c8362f08645001df2ec8d341eee4097c7f",
    "BSD-3-Clause",
)
VEGA_EMBED = _npm(
    "vega-embed",
    "6.29.0",
    "build/vega-embed.min.js",
    "12d02acfbe3ec59ef9a37dd4822a2e04e2961b5bbb671bbe661d2221715b99da",
    "BSD-3-Clause",
)
# What `dvc plots show` needs, in load order.
VEGA_LIBRARIES: tuple[PackagedFile, ...] = (VEGA, VEGA_LITE, VEGA_EMBED)

_BOOTSTRAP = ("bootstrap", "4.3.1")
_BS_TABLE = ("bootstrap-table", "1.19.1")
_DATEPICKER = ("bootstrap-datepicker", "1.9.0")
_FONTAWESOME = ("@fortawesome/fontawesome-free", "6.6.0")
_FA_LICENSE = "Font Awesome Free: icons CC BY 4.0, fonts SIL OFL 1.1, code MIT"
_FILTER_CONTROL_CSS = _npm(
    *_BS_TABLE,
    "dist/extensions/filter-control/bootstrap-table-filter-control.min.css",
    "be4e0c0d11f9319f1ad191f7447a38f755728bbaa10903e469f367441ba79ae2",
    "MIT",
)

# Every remote URL in GX 1.24's Data Docs templates -> the same file from an npm package.
# Bytes are identical to the CDN's: GX's own SRI hashes for popper and bootstrap match.
# vega/vega-lite/vega-embed are pinned to the newest 5.x/5.x/6.x, which GX's '@5'/'@6' load.
DATA_DOCS_ASSETS: dict[str, PackagedFile] = {
    "https://cdn.jsdelivr.net/npm/vega@5": VEGA,
    "https://cdn.jsdelivr.net/npm/vega-lite@5": VEGA_LITE,
    "https://cdn.jsdelivr.net/npm/vega-embed@6": VEGA_EMBED,
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css": _npm(
        *_FONTAWESOME,
        "css/all.min.css",
        "e5e202e3c899507992952533f57b634722b69b34241d271963559d31aa33ef81",
        _FA_LICENSE,
    ),
    "https://code.jquery.com/jquery-3.7.1.min.js": _npm(
        "jquery",
        "3.7.1",
        "dist/jquery.min.js",
        "fc9a93dd241f6b045cbff0481cf4e1901becd0e12fb45166a8f17f95823f0b1a",
        "MIT",
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js": _npm(
        "popper.js",
        "1.12.9",
        "dist/umd/popper.min.js",
        "a52f7aa54d7bcaafa056ee0a050262dfc5694ae28dee8b4cac3429af37ff0d66",
        "MIT",
    ),
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js": _npm(
        *_BOOTSTRAP,
        "dist/js/bootstrap.min.js",
        "0a34a87842c539c1f4feec56bba982fd596b73500046a6e6fe38a22260c6577b",
        "MIT",
    ),
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": _npm(
        *_BOOTSTRAP,
        "dist/css/bootstrap.min.css",
        "60b19e5da6a9234ff9220668a5ec1125c157a268513256188ee80f2d2c8d8d36",
        "MIT",
    ),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js": _npm(
        *_BS_TABLE,
        "dist/bootstrap-table.min.js",
        "06a571a9beb50bd5ddd60517159775dfec1f3e798fff38fb117ae2350dc9ba9d",
        "MIT",
    ),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css": _npm(
        *_BS_TABLE,
        "dist/bootstrap-table.min.css",
        "643f536f6982af4d7287af23f89ad457dd7e4a82f9c695330a112b0881c30a4a",
        "MIT",
    ),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/"
    "bootstrap-table-filter-control.min.js": _npm(
        *_BS_TABLE,
        "dist/extensions/filter-control/bootstrap-table-filter-control.min.js",
        "111f68d31d1bdd714f9503bf5f4e162e0739c363e4ff2feef950d39e78266ffc",
        "MIT",
    ),
    # GX links the 1.19.0 filter-control CSS (min and non-min): 1.19.1's minified file
    # carries the same rules.
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/"
    "bootstrap-table-filter-control.min.css": _FILTER_CONTROL_CSS,
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/"
    "bootstrap-table-filter-control.css": _FILTER_CONTROL_CSS,
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/"
    "bootstrap-datepicker.min.js": _npm(
        *_DATEPICKER,
        "dist/js/bootstrap-datepicker.min.js",
        "6ea55ea86749ee1fe560fabac6b3effd81b33046fa74dc657e24d41d28110a9f",
        "Apache-2.0",
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/"
    "bootstrap-datepicker.min.css": _npm(
        *_DATEPICKER,
        "dist/css/bootstrap-datepicker.min.css",
        "b22c8ea45fe905650f8087108b5ed32c1923bcd80d400adc9b0241f18be40208",
        "Apache-2.0",
    ),
    "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/"
    "bootstrap-prefers-dark.css": _npm(
        "@forevolve/bootstrap-dark",
        "1.1.0",
        "dist/css/bootstrap-prefers-dark.css",
        "b087541364cdc7e95cbf71be42da5259f3d11431cc84198c17b47cd44c87cd5b",
        "MIT",
    ),
}
# Loaded by Font Awesome's all.min.css as ../webfonts/*: copied beside it.
COMPANION_ASSETS: tuple[PackagedFile, ...] = tuple(
    _npm(*_FONTAWESOME, f"webfonts/{name}", sha256, _FA_LICENSE)
    for name, sha256 in (
        ("fa-brands-400.ttf", "bc844b5b02d3f3adabb514de4e0c0208252d3123413bd03f6287fa446acee859"),
        ("fa-brands-400.woff2", "c411f11975d26eb04cd2aa3c071181d4b18e489f1fb97060d4176a3531dfb36e"),
        ("fa-regular-400.ttf", "64f9fb623681f112261e9a2f97826782439f3925dea8f44a57d1e4db95ba6cfd"),
        (
            "fa-regular-400.woff2",
            "c732f106e91bc618767fbac8e2c7b27e5c736d477b2bb4fb83f597a43198c33c",
        ),
        ("fa-solid-900.ttf", "31f099c13f6e4ba05f1b471bf170cb5493249474222917372de3ca5cf29e6a1a"),
        ("fa-solid-900.woff2", "1f0189e087fcefbf654fad74a3a06668b782c01353a61d5c0b7f0bf23e33c020"),
        (
            "fa-v4compatibility.ttf",
            "a6274a12fd3f5f1ea05fc9b4677959b31fd101fdac4f0d09c17159c414d36d23",
        ),
        (
            "fa-v4compatibility.woff2",
            "2aca24b35bd41474dcc5e7fb5f11ec43fa06e3ac1d0035ad41108fa6b30b0871",
        ),
    )
)
