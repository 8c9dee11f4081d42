"""Prefect tasks, one module per pipeline stage: each reads its inputs, calls the domain
code in `exprbench`, and writes its outputs atomically."""

# The pipeline's stages in order; each has a module here exposing a task of the same name.
STAGES = ("ingest", "upscale", "faces", "score", "validate", "aggregate", "report")
# Studies that run on the pipeline's outputs but are not part of every run.
STUDIES = ("resolution",)
