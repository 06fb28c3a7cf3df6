"""mcmanager's admin site: Django's, with "Health dashboard" first under Database tools.

Django's documented way to change the admin site (docs: "Overriding the default admin
site"): an ``AdminSite`` subclass, made the default by an ``AdminConfig`` subclass named in
INSTALLED_APPS in place of "django.contrib.admin". Every app keeps registering on
``django.contrib.admin.site``, which is then this site. This module must not touch
``admin.site`` or import models: Django imports it while it loads the apps.
"""

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig
from django.urls import reverse


class McmanagerAdminSite(admin.AdminSite):
    def get_app_list(self, request, app_label=None):
        """The app list (index, app pages and sidebar) with the health dashboard first under dbtools."""
        app_list = super().get_app_list(request, app_label)
        for app in app_list:
            if app["app_label"] == "dbtools":
                app["models"].insert(0, health_dashboard_entry())
        return app_list


def health_dashboard_entry() -> dict:
    """The dashboard (dbtools.views.dashboard, /admin/health/) as an entry of the app list."""
    return {
        "model": None,
        "name": "Health dashboard",
        "object_name": "HealthDashboard",
        "perms": {"add": False, "change": False, "delete": False, "view": True},
        "admin_url": reverse("dbtools-health-dashboard"),
        "add_url": None,
        "view_only": True,
    }


class McmanagerAdminConfig(AdminConfig):
    """django.contrib.admin (autodiscovery included) with McmanagerAdminSite as ``admin.site``."""

    default_site = "mcmanager.admin.McmanagerAdminSite"
