"""Prefect flows: one per stage plus the whole pipeline, and the `exprbench` CLI.

Offline settings are applied here, before Prefect is imported anywhere, so every process
(CLI, DVC stage, test) gets them.
"""

import os

for _key, _value in {
    "DO_NOT_TRACK": "1",  # Prefect client analytics
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
    # the 20 s default times out on two loaded cores
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "DVC_NO_ANALYTICS": "1",
    # onnxruntime's usage events (stored, then uploaded to Microsoft); read at its import
    "ORT_DISABLE_TELEMETRY": "1",
    "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
    # Arrow's default allocator (mimalloc) keeps freed blocks committed, so a stage's peak
    # grew with the largest Arrow data it had ever held; the system allocator returns them
    # (read at Arrow's first allocation)
    "ARROW_DEFAULT_MEMORY_POOL": "system",
}.items():
    os.environ.setdefault(_key, _value)
