"""exprbench: measure how well generative image tools render facial expressions.

The library holds the domain code (image I/O, face geometry, model runtimes, schemas,
tables, report). It knows nothing of Prefect or DVC: `tasks/` and `flows/` compose it.
"""

__version__ = "0.1.0"
