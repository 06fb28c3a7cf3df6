import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mcmanager.settings")
application = get_asgi_application()

from mcmanager.checks import refuse_insecure_start  # noqa: E402

refuse_insecure_start()
