"""MariaDB's TLS options of DATABASE_URL, in one place: what mysqlclient gets and what the
``mariadb`` / ``mariadb-dump`` client tools get.

Spellings read from the URL's query (as dj-database-url leaves them in OPTIONS):
``ssl_mode`` (also ``ssl-mode``, ``sslmode``; DISABLED, PREFERRED, REQUIRED, VERIFY_CA,
VERIFY_IDENTITY, or libpq's disable/prefer/require/verify-ca/verify-full), the files
``ssl-ca``/``ssl_ca``, ``ssl-cert``, ``ssl-key``, ``ssl-capath``, ``ssl-cipher`` (either
separator), mysqlclient's ``ssl`` dict, and ``ssl=true``/``ssl=false`` (REQUIRED/DISABLED
when no mode is given). ``normalize`` turns them into what mysqlclient takes (an ``ssl``
dict and ``ssl_mode``); ``client_flags`` into the tools' flags.

MariaDB Connector/C 3.3 (under both mysqlclient and the 10.11 tools) takes REQUIRED, like
``--ssl``, as "TLS if the server offers it": against a server without TLS it goes on in
clear text. So a required TLS is also checked by the session itself: ``REQUIRE_TLS_SQL``,
run first on connecting (Django's and our own connections' init_command, the ``mariadb``
client's --init-command), fails unless the server reports a cipher for the session.
``mariadb-dump`` 10.11 has no --init-command: it refuses a clear-text server only with
--ssl-verify-server-cert (VERIFY_CA, VERIFY_IDENTITY); under REQUIRED the backup's own
connection to the same server (taken before mariadb-dump starts) is the check.

Pure Python, no Django: settings.py reads it.
"""

MODES = ("DISABLED", "PREFERRED", "REQUIRED", "VERIFY_CA", "VERIFY_IDENTITY")
_MODE_WORDS = {"DISABLE": "DISABLED", "PREFER": "PREFERRED", "REQUIRE": "REQUIRED", "VERIFY_FULL": "VERIFY_IDENTITY"}
_MODE_KEYS = ("ssl_mode", "sslmode")
# mysqlclient's ssl dict keys, and the client tools' flag for each.
FILE_FLAGS = {
    "ca": "--ssl-ca",
    "cert": "--ssl-cert",
    "key": "--ssl-key",
    "capath": "--ssl-capath",
    "cipher": "--ssl-cipher",
}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}

NOT_ENCRYPTED = "TLS is required (DATABASE_URL ssl_mode) but this connection to the server is not encrypted"
REQUIRE_TLS_SQL = (
    "IF (SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS WHERE VARIABLE_NAME = 'Ssl_cipher') = '' "
    f"THEN SIGNAL SQLSTATE '28000' SET MESSAGE_TEXT = '{NOT_ENCRYPTED}'; END IF"
)


def _mode(value) -> str:
    word = str(value).strip().upper().replace("-", "_")
    return _MODE_WORDS.get(word, word)


def normalize(options: dict) -> dict:
    """OPTIONS with every TLS spelling as mysqlclient takes it (``ssl`` dict, ``ssl_mode``);
    the other options unchanged. An unknown mode is kept (upper case) for mysqlclient to
    refuse, and counts as requiring TLS here: never weaker than asked."""
    rest: dict = {}
    files: dict[str, str] = {}
    mode = None
    switch = None
    for key, value in (options or {}).items():
        name = str(key).lower().replace("-", "_")
        if name in _MODE_KEYS:
            mode = _mode(value) if str(value).strip() else None
        elif name == "ssl":
            if isinstance(value, dict):
                files.update({k: str(v) for k, v in value.items() if v not in (None, "")})
            else:
                switch = value
        elif name.startswith("ssl_") and name[4:] in FILE_FLAGS:
            if value not in (None, ""):
                files[name[4:]] = str(value)
        else:
            rest[key] = value
    if mode is None and switch is not None:
        word = str(switch).strip().lower()
        mode = (
            "REQUIRED" if switch is True or word in _TRUE else "DISABLED" if switch is False or word in _FALSE else None
        )
    if files:
        rest["ssl"] = files
    if mode:
        rest["ssl_mode"] = mode
    return rest


def requires_tls(options: dict) -> bool:
    mode = (options or {}).get("ssl_mode")
    return bool(mode) and mode not in ("DISABLED", "PREFERRED")


def init_command(options: dict, command: str = "") -> str:
    """``command`` preceded by the session's TLS check when TLS is required."""
    return "; ".join(part for part in (REQUIRE_TLS_SQL if requires_tls(options) else "", command) if part)


def client_flags(options: dict) -> list[str]:
    """The ``mariadb``/``mariadb-dump`` flags of normalized OPTIONS: the files, then ``--ssl``
    (``--skip-ssl`` for DISABLED), ``--ssl-verify-server-cert`` for VERIFY_CA/VERIFY_IDENTITY."""
    options = options or {}
    ssl = options.get("ssl") or {}
    args = [f"{flag}={ssl[key]}" for key, flag in FILE_FLAGS.items() if isinstance(ssl, dict) and ssl.get(key)]
    mode = options.get("ssl_mode") or ""
    if mode == "DISABLED":
        return ["--skip-ssl"]
    if mode or args:
        args.append("--ssl")
    if mode in ("VERIFY_CA", "VERIFY_IDENTITY"):
        args.append("--ssl-verify-server-cert")
    return args
