from django.apps import AppConfig


class DbtoolsConfig(AppConfig):
    name = "dbtools"
    verbose_name = "Database tools"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # The system checks register themselves when their module is imported (Django's
        # documented place for that is ready()); the lookups the constraints use are
        # registered explicitly, before any query or migration needs them.
        from . import checks  # noqa: F401  (imported here: it reads settings and the engines)
        from .lookups import register_lookups

        register_lookups()
