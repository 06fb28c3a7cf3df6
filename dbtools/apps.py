from django.apps import AppConfig


class DbtoolsConfig(AppConfig):
    name = "dbtools"
    verbose_name = "Database tools"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # The system checks for the settings, and the native-SQL lookups the constraints use.
        from . import checks, lookups  # noqa: F401
