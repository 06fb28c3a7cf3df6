"""``/health/`` for monitors and ``/admin/health/``, the dashboard for admins.

Both render the results of dbtools.monitor; neither redoes a full validation per
request (data integrity comes from the last stored report).
"""

import time

from django.contrib import admin, messages
from django.db import DEFAULT_DB_ALIAS, DatabaseError
from django.http import HttpResponseRedirect, JsonResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_POST
from health_check.exceptions import ServiceWarning
from health_check.views import HealthCheckView

from . import monitor
from .errors import DbtoolsError
from .health import CHECKS
from .oplog import pending_journal


class HealthView(HealthCheckView):
    """django-health-check's view with our checks and a JSON body that carries the verdict.

    Any check not healthy answers HTTP 500 (as django-health-check does, so the
    ``health_check`` command exits 1); the body's ``status`` tells degraded from unhealthy.
    Monitors asking for anything (``Accept: */*``) get JSON; browsers asking for HTML get
    the package's page.
    """

    checks = CHECKS

    def render_to_response(self, context, **response_kwargs):
        accept = self.request.headers.get("accept", "")
        if "text/html" not in accept and "application/xhtml+xml" not in accept:
            return self.render_to_response_json(response_kwargs.get("status", 200))
        return super().render_to_response(context, **response_kwargs)

    def render_to_response_json(self, status):
        checks = {}
        for result in self.results:
            if result.error is None:
                verdict = monitor.HEALTHY
            elif isinstance(result.error, ServiceWarning):
                verdict = monitor.DEGRADED
            else:
                verdict = monitor.UNHEALTHY
            last = getattr(result.check, "last", None)
            message = last.message if last is not None else (result.error.message if result.error else "ok")
            checks[result.check.name] = {"status": verdict, "message": message}
        overall = monitor.worst(c["status"] for c in checks.values())
        return JsonResponse({"status": overall, "checks": checks}, status=status)


# --- the admin dashboard ----------------------------------------------------------


def _dashboard_context(request, database: str) -> dict:
    from .models import OperationLog
    from .validation import last_report

    t0 = time.perf_counter()
    health = monitor.health_report(database)
    connected = health.checks[0].status != monitor.UNHEALTHY
    counts, counts_exact, size, conn, last, operations = None, True, None, None, None, []
    from .backups import list_backups

    listed = list_backups()  # once: the backup figures and the trend chart read it
    backups = monitor.backup_state(database=database, listed=listed)
    if connected:
        try:
            from .engines import get_engine

            engine = get_engine(database)
            counts, counts_exact = monitor.table_counts(database, exact=False)
            size = engine.database_size()
            conn = monitor.connection_info(database)
            last = last_report(database)
            operations = list(OperationLog.objects.using(database).order_by("-started_at", "-id")[:12])
            # Refused restores and checks wait in the journal until the next logged operation.
            operations = sorted(
                operations + pending_journal(database), key=lambda op: _field(op, "started_at"), reverse=True
            )[:12]
        except DatabaseError:
            pass
    trend = _backup_trend(database, health.checked_at, connected, listed)
    report = last.report if last is not None else None
    problems = []
    if report:
        for category, items in report.get("problems", {}).items():
            for item in items:
                problems.append({**item, "category_label": category.replace("_", " ")})
    return {
        **admin.site.each_context(request),
        "title": "Database health",
        "database": database,
        "health": health,
        "counts": counts,
        "counts_exact": counts_exact,
        "size": size,
        "connection": conn,
        "backups": backups,
        "last_report": last,
        "last_report_age": monitor.human_age(int((health.checked_at - last.created_at).total_seconds()))
        if last
        else None,
        "problems": problems,
        "operations": operations,
        "trend": trend,
        "render_ms": lambda: round((time.perf_counter() - t0) * 1000),
    }


def _field(op, name: str):
    """A field of an OperationLog row or of a journal entry (a dict)."""
    return op[name] if isinstance(op, dict) else getattr(op, name)


def _backup_trend(database: str, now, connected: bool, listed) -> dict:
    """The last 30 days of backups (manifests) and failed backups (operations log), as SVG."""
    from datetime import timedelta

    from . import trends
    from .backups import belongs_to
    from .models import OperationLog

    failures = []
    if connected:
        try:
            failures = list(
                OperationLog.objects.using(database).filter(
                    operation="backup",
                    outcome=OperationLog.Outcome.FAILURE,
                    started_at__gte=now - timedelta(days=trends.DAYS),
                )[:500]
            )
        except DatabaseError:
            pass
    points = trends.collect([b for b in listed if belongs_to(b.manifest, database)], failures, now)
    return {
        "points": len(points),
        "summary": trends.summary(points),
        "backups_svg": trends.backups_svg(points, now),
        "rows_svg": trends.rows_svg(points, now),
    }


def dashboard(request):
    """The overall verdict, each check, figures, backups, the last validation and the log."""
    context = _dashboard_context(request, DEFAULT_DB_ALIAS)
    return TemplateResponse(request, "admin/dbtools/health.html", context)


@require_POST
def backup_now(request):
    """Take a backup now, as the admin (the operations log records the username)."""
    from .backups import create_backup

    try:
        result = create_backup(actor=request.user.get_username(), reason="manual")
    except DbtoolsError as exc:
        messages.error(request, f"Backup failed: {exc}")
    else:
        verification = "verified" if result.verification.ok else "NOT verified"
        messages.success(request, f"Backup {result.path.name} created and {verification}.")
        if result.offsite and not result.offsite["uploaded"]:
            messages.error(request, f"The offsite upload failed (the local backup is kept): {result.offsite['error']}")
    return HttpResponseRedirect(reverse("dbtools-health-dashboard"))


@require_POST
def validate_now(request):
    """Run a full validation now, as the admin; the dashboard then shows its report."""
    from .validation import validate_database

    try:
        report = validate_database(actor=request.user.get_username())
    except DbtoolsError as exc:
        messages.error(request, f"Validation could not run: {exc}")
    else:
        if report.ok:
            messages.success(
                request, f"Validation found no problems ({report.rules_run} rules, {report.duration_ms} ms)."
            )
        else:
            messages.warning(request, f"Validation found {report.summary}.")
    return HttpResponseRedirect(reverse("dbtools-health-dashboard"))
