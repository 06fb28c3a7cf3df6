"""What a validation run found, and where it is kept.

``Problem`` is one broken rule, ``ValidationReport`` one run (its JSON is what ``validate
--json``, /health/ and the dashboard show). ``store_report`` keeps the report as a
``StoredReport`` row in the validated database; ``last_report`` reads the newest full one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from django.db import DEFAULT_DB_ALIAS, DatabaseError

from ..models import StoredReport
from .rules import CATEGORIES, DATA_CATEGORIES, SCHEMA_CATEGORIES

REPORTS_KEPT = 50


@dataclass
class Problem:
    """One broken rule: where, which rule, how many rows, a few of them, and how to fix it."""

    category: str
    table: str
    rule: str
    count: int
    message: str
    fix: str
    sample_ids: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "category": self.category,
            "table": self.table,
            "rule": self.rule,
            "count": self.count,
            "sample_ids": list(self.sample_ids),
            "message": self.message,
            "fix": self.fix,
        }


@dataclass
class ValidationReport:
    """The outcome of one validation run; ``ok`` when no rule found anything."""

    database: str
    engine: str
    started_at: datetime
    duration_ms: int = 0
    data_checked: bool = True
    schema_checked: bool = True
    rules_run: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def problem_count(self) -> int:
        return len(self.problems)

    @property
    def summary(self) -> str:
        """ "no problems" or "2 problems (13 rows or items)"."""
        if self.ok:
            return "no problems"
        rows = sum(p.count for p in self.problems)
        noun = "problem" if self.problem_count == 1 else "problems"
        return f"{self.problem_count} {noun} ({rows} {'row or item' if rows == 1 else 'rows or items'})"

    def by_category(self, categories: Iterable[str] = CATEGORIES) -> dict[str, list[dict]]:
        grouped: dict[str, list[dict]] = {c: [] for c in categories}
        for problem in self.problems:
            if problem.category in grouped:
                grouped[problem.category].append(problem.as_dict())
        return grouped

    def as_dict(self) -> dict:
        categories = (DATA_CATEGORIES if self.data_checked else ()) + (SCHEMA_CATEGORIES if self.schema_checked else ())
        return {
            "ok": self.ok,
            "database": self.database,
            "engine": self.engine,
            "started_at": self.started_at.isoformat(),
            "duration_ms": self.duration_ms,
            "data_checked": self.data_checked,
            "schema_checked": self.schema_checked,
            "rules_run": self.rules_run,
            "problem_count": self.problem_count,
            "problems": self.by_category(categories),
        }


def store_report(report: ValidationReport, kind: str = "validation") -> None:
    """Keep the report as the last one of its kind; old ones beyond REPORTS_KEPT are removed.

    A full run is kind "validation"; a --data-only or --schema-only run is kept apart
    so it never passes for a full one.
    """
    try:
        StoredReport.objects.using(report.database).create(
            kind=kind,
            database=report.database,
            created_at=report.started_at,
            ok=report.ok,
            problem_count=report.problem_count,
            duration_ms=report.duration_ms,
            report=report.as_dict(),
        )
        keep = (
            StoredReport.objects.using(report.database)
            .filter(kind=kind)
            .order_by("-created_at", "-id")
            .values_list("pk", flat=True)[:REPORTS_KEPT]
        )
        StoredReport.objects.using(report.database).filter(kind=kind).exclude(pk__in=list(keep)).delete()
    except DatabaseError:
        # The dbtools tables may be missing (that is a finding of the report itself).
        pass


def last_report(database: str = DEFAULT_DB_ALIAS) -> StoredReport | None:
    """The newest stored full validation report (a StoredReport), or None."""
    try:
        return StoredReport.objects.using(database).filter(kind="validation").order_by("-created_at", "-id").first()
    except DatabaseError:
        return None
