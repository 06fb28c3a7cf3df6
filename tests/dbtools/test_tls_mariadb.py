"""TLS to MariaDB: DATABASE_URL's TLS options reach Django's connection, our own MySQLdb
connections, mariadb-dump and mariadb (mcmanager/mariadb_tls.py maps them in one place).

The MariaDB server of the test machine runs without TLS (have_ssl=DISABLED): a required TLS
must make every connection and tool fail there, in one line, before anything is written.
Then a throwaway server of our own (mariadb-install-db, a self-signed certificate,
--require-secure-transport=ON) takes a backup and a restore over TLS.
"""

import os
import shutil
import socket
import subprocess
import tempfile
import time
from io import BytesIO
from pathlib import Path

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
def tls_options():
    """Set the test connection's OPTIONS as settings.py makes them from a URL query;
    ``tls_options.reset()`` (and the fixture's end) puts the test's own back.

    The connection is closed at each change: whichever query comes next connects with the
    options in force (a connection still open from before would hide them). A test that
    also uses the database lists ``transactional_db`` first, so its flush at the end runs
    after the reset, over a connection without the TLS options."""
    original = connection.settings_dict.get("OPTIONS")

    def use(query: str) -> None:
        connection.close()
        connection.settings_dict["OPTIONS"] = database_from_url(f"{BASE}?{query}")["OPTIONS"]

    def reset() -> None:
        connection.close()
        connection.settings_dict["OPTIONS"] = original

    use.reset = reset
    yield use
    reset()


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
def test_required_tls_makes_each_tool_and_connection_fail_on_a_clear_text_server(transactional_db, tls_options):
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
    # And Django's own connection: refused by the driver (verification asked for) or by the session check.
    from django.db.utils import OperationalError

    with pytest.raises(OperationalError, match="SSL is required|not encrypted"):
        connection.ensure_connection()
    tls_options.reset()
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


# --- a throwaway server that accepts TLS connections only ----------------------------


def _binary(name: str) -> str:
    found = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.path.exists(p)), None
    )
    if found:
        return found
    if os.environ.get("MCMANAGER_REQUIRE_ENGINES", "") not in ("", "0"):
        pytest.fail(f"{name} is not installed (Debian: mariadb-server), and MCMANAGER_REQUIRE_ENGINES is set")
    pytest.skip(f"{name} is not installed (Debian: mariadb-server); the TLS test starts a server of its own")


@pytest.fixture(scope="module")
def tls_mariadb():
    """(port, CA file) of a running MariaDB that refuses every connection without TLS."""
    install, server = _binary("mariadb-install-db"), _binary("mariadbd")
    base = Path(tempfile.mkdtemp(prefix="mcmanager-mariadb-tls-"))
    data = base / "data"
    as_root = ["--user=root"] if os.geteuid() == 0 else []
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(base / "key.pem"), "-out", str(base / "cert.pem")],
        capture_output=True, check=True,
    )  # fmt: skip
    done = subprocess.run(
        [install, "--no-defaults", f"--datadir={data}", "--auth-root-authentication-method=normal",
         "--skip-test-db", *as_root],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [server, "--no-defaults", f"--datadir={data}", *as_root, f"--port={port}", "--bind-address=127.0.0.1",
         f"--socket={base / 'sock'}", f"--pid-file={base / 'pid'}", f"--log-error={base / 'err.log'}",
         f"--ssl-cert={base / 'cert.pem'}", f"--ssl-key={base / 'key.pem'}", f"--ssl-ca={base / 'cert.pem'}",
         "--require-secure-transport=ON", "--skip-log-bin", "--innodb-buffer-pool-size=32M"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not (base / "sock").exists():
            log = (base / "err.log").read_text() if (base / "err.log").exists() else ""
            assert proc.poll() is None and time.monotonic() < deadline, f"mariadbd did not start: {log[-2000:]}"
            time.sleep(0.2)
        yield port, base / "cert.pem"
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.engines("mysql")
def test_backup_and_restore_over_tls(tls_mariadb, manage_py):
    import MySQLdb

    port, ca = tls_mariadb

    def connect(**kwargs):
        return MySQLdb.connect(host="127.0.0.1", port=port, user="root", ssl_mode="REQUIRED", **kwargs)

    conn = connect()
    conn.cursor().execute("CREATE DATABASE IF NOT EXISTS tlsdb CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci")
    conn.close()
    base = f"mysql://root@127.0.0.1:{port}/tlsdb"
    # The control: without TLS the server refuses (--require-secure-transport answers
    # "Access denied"; the same user gets in over TLS below), so what succeeds used TLS.
    refused = manage_py("backup", env={"DATABASE_URL": base + "?ssl_mode=DISABLED"})
    assert refused.returncode == 2 and "Access denied" in refused.stderr, refused.stderr
    required = {"DATABASE_URL": base + "?ssl_mode=REQUIRED"}
    verified = {"DATABASE_URL": f"{base}?ssl_mode=VERIFY_IDENTITY&ssl-ca={ca}"}
    for args, env in (
        (["migrate", "-v", "0"], required),
        (["generate_demo_data", "--users", "20", "--servers", "40", "--configs", "5", "--seed", "3"], required),
        (["backup", "--verify", "full"], verified),
        (["restore", "--check", "--latest"], required),
        (["restore", "--latest", "--noinput"], verified),
        (["validate"], required),
    ):
        done = manage_py(*args, env=env)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
    conn = connect(db="tlsdb")
    try:
        cursor = conn.cursor()
        cursor.execute("SELECT COUNT(*) FROM accounts_user")
        assert cursor.fetchone()[0] == 20
        cursor.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        assert cursor.fetchone()[1]
        cursor.execute("SELECT operation, outcome FROM dbtools_operationlog WHERE operation = 'restore'")
        assert cursor.fetchall() == (("restore", "success"),)
    finally:
        conn.close()
