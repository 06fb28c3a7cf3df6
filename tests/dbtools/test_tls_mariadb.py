"""TLS to MariaDB: DATABASE_URL's TLS options reach Django's connection, our own MySQLdb
connections, mariadb-dump and mariadb (mcmanager/mariadb_tls.py maps them in one place).

The MariaDB server of the test machine runs without TLS (have_ssl=DISABLED): a required TLS
must make every connection and tool fail there, in one line, before anything is written.
"""

import subprocess
from io import BytesIO

import pytest
from django.db import connection

from mcmanager import mariadb_tls
from mcmanager.settings import database_from_url

BASE = "mysql://root@127.0.0.1:3306/db"
SQL_MODE = "SET sql_mode='STRICT_TRANS_TABLES,NO_ENGINE_SUBSTITUTION'"


@pytest.mark.parametrize(
    "query, mode, ssl, flags",
    [
        ("ssl_mode=REQUIRED", "REQUIRED", None, ["--ssl"]),
        ("ssl-mode=required", "REQUIRED", None, ["--ssl"]),
        ("sslmode=require", "REQUIRED", None, ["--ssl"]),
        ("ssl=true", "REQUIRED", None, ["--ssl"]),
        (
            "ssl_mode=VERIFY_CA&ssl-ca=/ca.pem",
            "VERIFY_CA",
            {"ca": "/ca.pem"},
            ["--ssl-ca=/ca.pem", "--ssl", "--ssl-verify-server-cert"],
        ),
        (
            "ssl_mode=VERIFY_IDENTITY&ssl_ca=/ca.pem&ssl-cert=/c.pem&ssl_key=/k.pem",
            "VERIFY_IDENTITY",
            {"ca": "/ca.pem", "cert": "/c.pem", "key": "/k.pem"},
            ["--ssl-ca=/ca.pem", "--ssl-cert=/c.pem", "--ssl-key=/k.pem", "--ssl", "--ssl-verify-server-cert"],
        ),
        ("sslmode=verify-full&ssl-ca=/ca.pem", "VERIFY_IDENTITY", {"ca": "/ca.pem"}, None),
        ("ssl-ca=/ca.pem", None, {"ca": "/ca.pem"}, ["--ssl-ca=/ca.pem", "--ssl"]),
        ("ssl_mode=DISABLED", "DISABLED", None, ["--skip-ssl"]),
        ("ssl=false", "DISABLED", None, ["--skip-ssl"]),
        ("", None, None, []),
    ],
)
def test_each_url_form_becomes_mysqlclient_options_and_tool_flags(query, mode, ssl, flags):
    options = database_from_url(f"{BASE}?{query}" if query else BASE)["OPTIONS"]
    assert options.get("ssl_mode") == mode
    assert options.get("ssl") == ssl
    # Nothing mysqlclient would refuse as a keyword is left (dj-database-url's "ssl-cert").
    assert not [key for key in options if key.startswith("ssl") and key not in ("ssl", "ssl_mode")]
    assert options["charset"] == "utf8mb4"
    assert options["init_command"].endswith(SQL_MODE)
    required = mode in ("REQUIRED", "VERIFY_CA", "VERIFY_IDENTITY")
    assert options["init_command"].startswith(mariadb_tls.REQUIRE_TLS_SQL) is required
    if flags is not None:
        assert mariadb_tls.client_flags(options) == flags


def test_the_urls_other_options_are_kept_and_ours_win_for_charset_and_init_command():
    options = database_from_url(f"{BASE}?connect_timeout=7&charset=latin1&init_command=SELECT+1")["OPTIONS"]
    assert options["connect_timeout"] == 7
    assert options["charset"] == "utf8mb4" and options["init_command"] == SQL_MODE


def test_mysqlclients_ssl_dict_and_an_unknown_mode():
    options = mariadb_tls.normalize({"ssl": {"ca": "/ca.pem", "cipher": "AES256-SHA"}, "ssl_mode": "verify_ca"})
    assert options == {"ssl": {"ca": "/ca.pem", "cipher": "AES256-SHA"}, "ssl_mode": "VERIFY_CA"}
    assert mariadb_tls.client_flags(options) == [
        "--ssl-ca=/ca.pem",
        "--ssl-cipher=AES256-SHA",
        "--ssl",
        "--ssl-verify-server-cert",
    ]
    # An unknown mode is kept for mysqlclient to refuse, and counts as TLS required.
    bogus = mariadb_tls.normalize({"ssl_mode": "sometimes"})
    assert bogus == {"ssl_mode": "SOMETIMES"} and mariadb_tls.requires_tls(bogus)


# --- against the real server (no TLS there) ----------------------------------------


@pytest.fixture
def tls_options(monkeypatch):
    """Set the test connection's OPTIONS as settings.py makes them from a URL query."""

    def use(query: str) -> None:
        options = database_from_url(f"{BASE}?{query}")["OPTIONS"]
        monkeypatch.setitem(connection.settings_dict, "OPTIONS", options)

    return use


@pytest.mark.engines("mysql")
def test_each_tools_argv_carries_the_flags(tls_options):
    from dbtools.engines import get_engine

    tls_options("ssl_mode=VERIFY_IDENTITY&ssl-ca=/ca.pem&ssl-cert=/c.pem&ssl-key=/k.pem")
    engine = get_engine()
    wanted = ["--ssl-ca=/ca.pem", "--ssl-cert=/c.pem", "--ssl-key=/k.pem", "--ssl", "--ssl-verify-server-cert"]
    dump, _ = engine._client_command("mariadb-dump")
    assert dump[-5:] == wanted and not [a for a in dump if a.startswith("--init-command")]
    loader, _ = engine._loader_command("somedb")
    assert all(flag in loader for flag in wanted)
    inits = [a for a in loader if a.startswith("--init-command=")]
    assert inits == [f"--init-command={mariadb_tls.REQUIRE_TLS_SQL}; SET SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO'"]
    tls_options("ssl_mode=DISABLED")
    loader, _ = engine._loader_command("somedb")
    assert "--skip-ssl" in loader and "--ssl" not in loader
    assert [a for a in loader if a.startswith("--init-command=")] == [
        "--init-command=SET SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO'"
    ]


@pytest.mark.engines("mysql")
def test_required_tls_makes_each_tool_and_connection_fail_on_a_clear_text_server(tls_options, transactional_db):
    from dbtools.engines import get_engine
    from dbtools.errors import DatabaseUnreachable

    name = connection.settings_dict["NAME"]
    tls_options("ssl_mode=REQUIRED")
    engine = get_engine()
    # mariadb (restore's loader): refused by the session check, the table not created.
    cmd, env = engine._loader_command(name)
    done = subprocess.run(cmd, input="CREATE TABLE tls_probe (x int);", env=env, capture_output=True, text=True)
    assert done.returncode != 0 and mariadb_tls.NOT_ENCRYPTED in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    # Our own MySQLdb connections, hence a backup's dump: refused before mariadb-dump starts.
    out = BytesIO()
    with pytest.raises(DatabaseUnreachable, match="not encrypted"):
        engine.write_dump(out, None)
    assert out.getvalue() == b""
    # mariadb-dump itself refuses a clear-text server when told to verify it.
    tls_options("ssl_mode=VERIFY_CA")
    cmd, env = engine._client_command("mariadb-dump")
    done = subprocess.run([*cmd, "--", name], env=env, capture_output=True, text=True)
    assert done.returncode != 0 and done.stdout == "" and "SSL is required" in done.stderr, done.stderr
    with connection.cursor() as cursor:
        cursor.execute("SHOW TABLES LIKE 'tls_probe'")
        assert cursor.fetchall() == ()


@pytest.mark.engines("mysql")
def test_required_tls_refuses_backup_restore_and_validate_in_one_line(manage_py, settings, transactional_db):
    from tests.conftest import database_url_for

    url = database_url_for()
    backups = settings.MCMANAGER_BACKUP_DIR
    made = manage_py("backup", env={"DATABASE_URL": url + "?ssl_mode=DISABLED"})
    assert made.returncode == 0, made.stderr
    files = sorted(p for p in backups.rglob("*") if p.is_file())
    assert files
    backup = next(p for p in files if ".sql" in p.name and not p.name.endswith(".json"))
    for args in (["backup"], ["restore", "--noinput", str(backup)], ["restore", "--check", str(backup)], ["validate"]):
        for mode in ("REQUIRED", "VERIFY_CA"):
            done = manage_py(*args, env={"DATABASE_URL": f"{url}?ssl_mode={mode}"})
            assert done.returncode != 0, (args, mode, done.stdout)
            lines = done.stderr.strip().splitlines()
            assert len(lines) == 1 and ("not encrypted" in lines[0] or "SSL is required" in lines[0]), (args, lines)
            assert "Traceback" not in done.stderr
    assert sorted(p for p in backups.rglob("*") if p.is_file()) == files
