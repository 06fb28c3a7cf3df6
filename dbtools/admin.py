"""The operations log and stored reports, read-only, and the link to the health dashboard."""

from django.contrib import admin
from django.urls import reverse

from .models import OperationLog, StoredReport


class ReadOnlyAdmin(admin.ModelAdmin):
    """What dbtools records is history: admins read it, nobody edits it by hand."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(OperationLog)
class OperationLogAdmin(ReadOnlyAdmin):
    list_display = ("started_at", "operation", "outcome", "actor", "database", "duration_ms", "message")
    list_filter = ("operation", "outcome", "database")
    search_fields = ("actor", "message", "file")
    date_hierarchy = "started_at"


@admin.register(StoredReport)
class StoredReportAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "kind", "database", "ok", "problem_count", "duration_ms")
    list_filter = ("kind", "ok")


_original_get_app_list = admin.site.get_app_list


def get_app_list(request, app_label=None):
    """The admin's app list with "Health dashboard" first under Database tools (index and sidebar)."""
    app_list = _original_get_app_list(request, app_label)
    for app in app_list:
        if app["app_label"] == "dbtools":
            app["models"].insert(
                0,
                {
                    "model": None,
                    "name": "Health dashboard",
                    "object_name": "HealthDashboard",
                    "perms": {"add": False, "change": False, "delete": False, "view": True},
                    "admin_url": reverse("dbtools-health-dashboard"),
                    "add_url": None,
                    "view_only": True,
                },
            )
    return app_list


# The default site is an instance; replacing this one method keeps every other app's admin as it is.
admin.site.get_app_list = get_app_list
