"""``/health/`` (no login, JSON for monitors) and the admin dashboard at ``/admin/health/``."""

from django.contrib import admin
from django.urls import path

from . import views

urlpatterns = [
    path("health/", views.HealthView.as_view(), name="health"),
    path("admin/health/", admin.site.admin_view(views.dashboard), name="dbtools-health-dashboard"),
    path("admin/health/backup/", admin.site.admin_view(views.backup_now), name="dbtools-health-backup"),
    path("admin/health/validate/", admin.site.admin_view(views.validate_now), name="dbtools-health-validate"),
]
