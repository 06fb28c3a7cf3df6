"""TLS to PostgreSQL: DATABASE_URL's ?sslmode=require reaches every connection and every tool.

A throwaway cluster (initdb, a self-signed certificate) whose pg_hba.conf rejects every
connection that is not TLS: a backup, a restore check and a restore that succeed against
it are the proof that pg_dump, pg_restore and our own connections all used TLS.
"""

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def _bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        pytest.fail("initdb is not installed (Debian: postgresql); the TLS test starts a cluster of its own")
    return Path(found[-1]).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    """Run a server program as the postgres user when we are root (PostgreSQL refuses root)."""
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kwargs)


@pytest.fixture(scope="module")
def tls_server():
    """(port, directory) of a running cluster that accepts TLS connections only."""
    bindir = _bindir()
    base = Path(tempfile.mkdtemp(prefix="mcmanager-tls-"))
    base.chmod(0o755)
    data = base / "data"
    data.mkdir()
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
        shutil.chown(data, "postgres")
    user = os.environ.get("USER") or "root"
    done = _as_postgres([str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", user, "--no-sync"])
    assert done.returncode == 0, done.stderr
    subprocess.run(
        ["openssl", "req", "-new", "-x509", "-days", "1", "-nodes", "-subj", "/CN=127.0.0.1",
         "-keyout", str(data / "server.key"), "-out", str(data / "server.crt")],
        capture_output=True, check=True,
    )  # fmt: skip
    (data / "server.key").chmod(0o600)
    if os.geteuid() == 0:
        for name in ("server.key", "server.crt"):
            shutil.chown(data / name, "postgres")
    port = _free_port()
    with open(data / "postgresql.conf", "a") as conf:
        conf.write(
            f"\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{data}'\n"
            "ssl = on\nfsync = off\n"
        )
    (data / "pg_hba.conf").write_text(
        "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 0.0.0.0/0 reject\n"
    )
    done = _as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(base / "log"), "-w", "start"])
    assert done.returncode == 0, done.stdout + done.stderr
    try:
        yield port, user
    finally:
        _as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"])
        shutil.rmtree(base, ignore_errors=True)


def _manage(url: str, *args: str, tmp: Path) -> subprocess.CompletedProcess:
    import secrets

    from tests.conftest import signing_env

    env = dict(
        os.environ,
        DATABASE_URL=url,
        MCMANAGER_BACKUP_DIR=str(tmp / "backups"),
        MCMANAGER_INSTANCE_DIR=str(tmp / "instance"),
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        **signing_env(),
    )
    env.pop("DJANGO_DEBUG", None)
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.engines("postgresql")
def test_every_tool_and_connection_uses_tls(tls_server, tmp_path):
    import psycopg

    port, user = tls_server
    with psycopg.connect(
        host="127.0.0.1", port=port, user=user, dbname="postgres", sslmode="require", autocommit=True
    ) as conn:
        conn.execute("CREATE DATABASE tlsdb")
    base = f"postgres://{user}@127.0.0.1:{port}/tlsdb"
    url = base + "?sslmode=require"
    # The control: without TLS the server refuses, so what succeeds below used TLS.
    refused = _manage(base + "?sslmode=disable", "backup", tmp=tmp_path)
    assert refused.returncode == 2 and "no encryption" in refused.stderr, refused.stderr
    for args in (
        ["migrate", "-v", "0"],
        ["generate_demo_data", "--users", "20", "--servers", "40", "--configs", "5", "--seed", "3"],
        ["backup", "--verify", "full"],
        ["restore", "--check", "--latest"],
        ["restore", "--latest", "--noinput"],
        ["validate"],
    ):
        done = _manage(url, *args, tmp=tmp_path)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
    with psycopg.connect(host="127.0.0.1", port=port, user=user, dbname="tlsdb", sslmode="require") as conn:
        assert conn.execute("SELECT count(*) FROM accounts_user").fetchone()[0] == 20
        assert conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()[0] is True


@pytest.mark.engines("mysql")
def test_mariadb_tools_get_the_tls_options_of_the_url(settings):
    """The MariaDB server here runs without TLS, so this checks the arguments the tools get."""
    from dbtools.engines.mysql import MySQLEngine

    engine = MySQLEngine("default")
    options = engine.settings_dict.setdefault("OPTIONS", {})
    saved = dict(options)
    try:
        options.update(ssl={"ca": "/etc/ssl/ca.pem", "cert": "/etc/ssl/c.pem", "key": "/etc/ssl/k.pem"})
        options["ssl_mode"] = "VERIFY_IDENTITY"
        args, _ = engine._client_command("mariadb-dump")
        assert args[-5:] == [
            "--ssl-ca=/etc/ssl/ca.pem",
            "--ssl-cert=/etc/ssl/c.pem",
            "--ssl-key=/etc/ssl/k.pem",
            "--ssl",
            "--ssl-verify-server-cert",
        ]
        options.clear()
        options["ssl_mode"] = "DISABLED"
        assert engine._client_command("mariadb")[0][-1] == "--skip-ssl"
        options.clear()
        assert not any(a.startswith("--ssl") or a == "--skip-ssl" for a in engine._client_command("mariadb")[0])
    finally:
        options.clear()
        options.update(saved)
