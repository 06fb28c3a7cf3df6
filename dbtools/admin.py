"""The operations log and stored reports, read-only.

The health dashboard's entry in the app list comes from mcmanager.admin.McmanagerAdminSite.
"""

from django.contrib import admin

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
