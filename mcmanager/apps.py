from django.apps import AppConfig


class McmanagerConfig(AppConfig):
    name = "mcmanager"
    verbose_name = "mcmanager"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
