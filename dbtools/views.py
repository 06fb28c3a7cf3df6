"""``/health/`` for monitors and ``/admin/health/``, the dashboard for admins.

Both render the results of dbtools.monitoring (the registry of checks; the dashboard a
``Snapshot``); neither redoes a full validation per request (data integrity comes from the
last stored report).
"""

from django.contrib import admin, messages
from django.db import DEFAULT_DB_ALIAS
from django.http import HttpResponseRedirect, JsonResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_POST
from health_check.exceptions import ServiceWarning
from health_check.views import HealthCheckView

from .backups import create_backup
from .errors import DbtoolsError
from .health import CHECKS
from .monitoring import DEGRADED, HEALTHY, UNHEALTHY, build_snapshot, worst
from .validation import validate_database


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
                verdict = HEALTHY
            elif isinstance(result.error, ServiceWarning):
                verdict = DEGRADED
            else:
                verdict = UNHEALTHY
            last = result.check.last
            message = last.message if last is not None else (result.error.message if result.error else "ok")
            checks[result.check.name] = {"status": verdict, "message": message}
        overall = worst(c["status"] for c in checks.values())
        return JsonResponse({"status": overall, "checks": checks}, status=status)


# --- the admin dashboard ----------------------------------------------------------


def dashboard(request):
    """The overall verdict, each check, figures, backups, the trend, the last validation and the log."""
    context = {
        **admin.site.each_context(request),
        "title": "Database health",
        "snapshot": build_snapshot(DEFAULT_DB_ALIAS),
    }
    return TemplateResponse(request, "admin/dbtools/health.html", context)


@require_POST
def backup_now(request):
    """Take a backup now, as the admin (the operations log records the username)."""
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
