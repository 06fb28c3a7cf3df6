from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    # /health/ and /admin/health/ (before the admin's own catch-all patterns).
    path("", include("dbtools.urls")),
    path("admin/", admin.site.urls),
]
