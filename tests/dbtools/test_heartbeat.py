"""Heartbeats: a real HTTP server on 127.0.0.1 hears /start, success and /fail, from the real commands."""

import http.server
import logging
import socket
import threading

import pytest
from django.core.checks import run_checks

from dbtools.heartbeat import heartbeat, ping

from .backup_support import closed_port_url
from .restore_helpers import make_data


class _Recorder(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's name)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode()
        self.server.heard.append((self.path, body))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, *args):  # quiet
        pass


@pytest.fixture
def ping_server():
    """A heartbeat server; yields (base URL, the list of (path, body) it heard)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.heard = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/ping/abc", server.heard
    finally:
        server.shutdown()
        server.server_close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_success_pings_start_then_the_url(settings, ping_server):
    url, heard = ping_server
    settings.MCMANAGER_BACKUP_PING_URL = url
    with heartbeat("backup"):
        assert heard == [("/ping/abc/start", "backup")]
    assert heard == [("/ping/abc/start", "backup"), ("/ping/abc", "backup: ok")]


def test_failure_pings_fail_with_the_reason_and_the_error_goes_on(settings, ping_server):
    url, heard = ping_server
    settings.MCMANAGER_BACKUP_PING_URL = url + "/"
    with pytest.raises(RuntimeError, match="disk full"):
        with heartbeat("backup"):
            raise RuntimeError("disk full\nmore detail")
    assert heard == [("/ping/abc/start", "backup"), ("/ping/abc/fail", "backup: disk full")]


def test_no_url_no_ping(settings, ping_server):
    _, heard = ping_server
    settings.MCMANAGER_BACKUP_PING_URL = ""
    with heartbeat("backup"):
        pass
    assert heard == []


def test_an_unreachable_monitor_never_fails_the_job(settings, caplog, monkeypatch):
    monkeypatch.setattr("dbtools.heartbeat.RETRY_PAUSE_SECONDS", 0.01)
    settings.MCMANAGER_BACKUP_PING_URL = f"http://127.0.0.1:{_closed_port()}/secret-uuid"
    ran = []
    with caplog.at_level(logging.WARNING, logger="dbtools.heartbeat"):
        with heartbeat("backup"):
            ran.append(True)
    assert ran == [True]
    warnings = [r.getMessage() for r in caplog.records if r.name == "dbtools.heartbeat"]
    assert len(warnings) == 2 and all("not delivered" in w for w in warnings)
    # The ping URL's path is its secret: not in the log.
    assert not any("secret-uuid" in w for w in warnings)


def test_ping_retries_once(monkeypatch, ping_server):
    url, heard = ping_server
    monkeypatch.setattr("dbtools.heartbeat.RETRY_PAUSE_SECONDS", 0.01)
    assert ping(url, "x") is True
    assert ping(f"http://127.0.0.1:{_closed_port()}/", "x") is False


def test_a_ping_url_that_is_not_http_is_a_system_check_error(settings):
    settings.MCMANAGER_BACKUP_PING_URL = "ftp://example.invalid/x"
    assert "dbtools.E010" in [e.id for e in run_checks(tags=["dbtools"])]
    settings.MCMANAGER_BACKUP_PING_URL = "https://hc-ping.example/uuid"
    assert "dbtools.E010" not in [e.id for e in run_checks(tags=["dbtools"])]


# --- the commands, as cron runs them ------------------------------------------------


def _paths(heard) -> list[str]:
    return [path for path, _ in heard]


@pytest.mark.django_db(transaction=True)
def test_backup_prune_and_restore_check_ping_start_and_success(manage_py, ping_server):
    url, heard = ping_server
    make_data("hb")
    done = manage_py("backup", "-v", "0", env={"MCMANAGER_BACKUP_PING_URL": url})
    assert done.returncode == 0, done.stderr
    assert heard == [("/ping/abc/start", "backup"), ("/ping/abc", "backup: ok")]
    heard.clear()
    done = manage_py("backup", "--prune", "--keep-last", "1", env={"MCMANAGER_BACKUP_PING_URL": url})
    assert done.returncode == 0, done.stderr
    assert _paths(heard) == ["/ping/abc/start", "/ping/abc"]
    heard.clear()
    done = manage_py("restore", "--check", "--latest", "-v", "0", env={"MCMANAGER_BACKUP_PING_URL": url})
    assert done.returncode == 0, done.stderr
    assert heard == [("/ping/abc/start", "restore --check"), ("/ping/abc", "restore --check: ok")]
    heard.clear()
    # Listing is no cron job of its own: no heartbeat.
    assert manage_py("backup", "--list", env={"MCMANAGER_BACKUP_PING_URL": url}).returncode == 0
    assert heard == []


@pytest.mark.django_db(transaction=True)
def test_a_backup_of_an_unreachable_database_pings_fail_with_the_reason(manage_py, ping_server, tmp_path):
    url, heard = ping_server
    done = manage_py(
        "backup",
        env={"MCMANAGER_BACKUP_PING_URL": url, "DATABASE_URL": closed_port_url("s3cret-pw", tmp_path)},
    )
    assert done.returncode == 2, done.stderr
    assert _paths(heard) == ["/ping/abc/start", "/ping/abc/fail"]
    assert heard[1][1].startswith("backup: ") and len(heard[1][1].splitlines()) == 1
    assert "s3cret-pw" not in heard[1][1]


@pytest.mark.django_db(transaction=True)
def test_a_refused_restore_check_pings_fail(manage_py, ping_server, tmp_path):
    url, heard = ping_server
    bogus = tmp_path / "db_backup_20260101_000000.sqlite3"
    bogus.write_text("not a backup")
    done = manage_py("restore", "--check", str(bogus), env={"MCMANAGER_BACKUP_PING_URL": url})
    assert done.returncode == 1, done.stderr
    assert _paths(heard) == ["/ping/abc/start", "/ping/abc/fail"]
    assert "restore --check: " in heard[1][1]


@pytest.mark.django_db(transaction=True)
def test_an_unreachable_monitor_never_fails_the_backup(manage_py):
    done = manage_py("backup", "-v", "0", env={"MCMANAGER_BACKUP_PING_URL": f"http://127.0.0.1:{_closed_port()}/x"})
    assert done.returncode == 0, done.stderr
