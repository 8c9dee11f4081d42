"""Validation of the scores table with Great Expectations, in three parts:

- `suite`: the expectations, generated from the metric specs (no GX import);
- `run`: running them with GX 1.x, the report naming failed checks and rows;
- `docs`: offline Data Docs (assets from pinned npm packages, `exprbench.assets`).
"""

from exprbench.validation.docs import fetch_data_docs_assets, rewrite_remote_tags
from exprbench.validation.run import FailedCheck, ValidationReport, validate_scores
from exprbench.validation.suite import Check, build_checks

__all__ = [
    "Check",
    "FailedCheck",
    "ValidationReport",
    "build_checks",
    "fetch_data_docs_assets",
    "rewrite_remote_tags",
    "validate_scores",
]
