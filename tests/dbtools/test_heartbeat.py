"""Heartbeats: a real HTTP server on 127.0.0.1 hears /start, success and /fail."""

import http.server
import logging
import socket
import threading

import pytest
from django.core.checks import run_checks

from dbtools.heartbeat import heartbeat, ping


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
