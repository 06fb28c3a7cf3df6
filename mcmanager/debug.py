"""The filter of Django's debug page and error reports: no password readable, whatever holds it.

Django's SafeExceptionReporterFilter hides settings and request.META entries by name
(KEY, SECRET, PASS, ...). A password also travels inside URLs: DATABASE_URL is in the
process environment, which runserver copies into every request's META, and a URL-shaped
setting (a broker, an offsite bucket, an error tracker's DSN) can carry one too. This
filter hides such names whole, and cuts the password out of any URL or libpq connection
string it shows, in settings, META and the traceback's local variables.
"""

import re

from django.views.debug import SafeExceptionReporterFilter

# scheme://user:password@host (the user may be empty: redis://:password@host).
URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^\s:/@]*:)[^\s@]+(?=@)", re.IGNORECASE)
# libpq/psycopg connection strings: "host=db password=secret" or password='se cret'.
CONNINFO_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s']+)", re.IGNORECASE)


def hide_passwords(text: str, substitute: str = SafeExceptionReporterFilter.cleansed_substitute) -> str:
    """``text`` with the password of every URL and connection string in it replaced."""
    text = URL_PASSWORD.sub(lambda m: m.group(1) + substitute, text)
    return CONNINFO_PASSWORD.sub(lambda m: m.group(1) + substitute, text)


class SecretHidingReporterFilter(SafeExceptionReporterFilter):
    """SafeExceptionReporterFilter that also hides URLs, DSNs and passwords written inside values."""

    # Django's names, plus URL/URI/DSN as a word of the name (DATABASE_URL, SENTRY_DSN,
    # MCMANAGER_BACKUP_PING_URL; not ROOT_URLCONF) and MYSQL_PWD.
    hidden_settings = re.compile(
        r"API|AUTH|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|(?:^|_)(?:URL|URI|DSN)S?(?:_|$)|_PWD(?:_|$)",
        flags=re.IGNORECASE,
    )

    def cleanse_setting(self, key, value):
        cleansed = super().cleanse_setting(key, value)
        if isinstance(cleansed, str):
            return hide_passwords(cleansed, self.cleansed_substitute)
        return cleansed

    def get_traceback_frame_variables(self, request, tb_frame):
        """Local variables as Django shows them, less the passwords in strings, dicts, lists and tuples.

        A database driver's connection parameters (a dict with "password", in a list of
        attempts or a tuple of arguments) are among the locals of a failed connection.
        Only plain containers are rebuilt: other objects (a QueryDict, a connection) keep
        the representation Django gives them.
        """
        variables = super().get_traceback_frame_variables(request, tb_frame)
        return [(name, self._hide_in_variable(value)) for name, value in variables]

    def _hide_in_variable(self, value):
        if isinstance(value, str):
            return hide_passwords(value, self.cleansed_substitute)
        if type(value) in (dict, list, tuple):
            return self.cleanse_setting("", value)
        return value
