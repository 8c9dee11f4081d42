"""Prefect tasks, one module per pipeline stage: each reads its inputs, calls the domain
code in `exprbench`, and writes its outputs atomically."""
