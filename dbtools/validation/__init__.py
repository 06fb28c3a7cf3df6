"""Data and schema validation: what the constraints missed, found with set-based SQL.

- ``rules``: the rule catalogue (categories; each data rule's query, message and fix);
- ``runner``: the service (``run_validation``, ``validate_database``), the parallel runner,
  reachability (``ensure_reachable``) and the read-only query context (``reading``);
- ``schema``: missing tables, columns, indexes, constraints; migrations; foreign objects;
  the engine's own integrity check;
- ``report``: ``Problem`` and ``ValidationReport``, stored as ``StoredReport`` rows
  (``store_report``, ``last_report``).

The names below are the package's public face: import them from ``dbtools.validation``.
"""

from .report import Problem, ValidationReport, last_report, store_report
from .rules import CATEGORIES, DATA_CATEGORIES, SCHEMA_CATEGORIES, checked_models, column_check
from .runner import ensure_reachable, reading, run_validation, validate_database

__all__ = [
    "CATEGORIES",
    "DATA_CATEGORIES",
    "SCHEMA_CATEGORIES",
    "Problem",
    "ValidationReport",
    "checked_models",
    "column_check",
    "ensure_reachable",
    "last_report",
    "reading",
    "run_validation",
    "store_report",
    "validate_database",
]
