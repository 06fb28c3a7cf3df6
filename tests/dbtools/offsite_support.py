"""A real S3-compatible server for the offsite tests: moto's server mode on 127.0.0.1."""

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class S3Server:
    """``moto_server`` in a subprocess; ``stop()`` and ``start()`` to play an outage."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def _binary(self) -> str:
        here = Path(sys.executable).with_name("moto_server")
        found = str(here) if here.exists() else shutil.which("moto_server")
        if not found:
            pytest.fail("moto_server is not installed (pip install -r requirements-dev.txt)")
        return found

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self._binary(), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        pytest.fail("moto_server did not start within 30 s")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


@pytest.fixture
def s3_server(monkeypatch):
    """A running S3 server with the AWS_* environment pointing at it and a bucket 'backups'."""
    server = S3Server()
    server.start()
    env = {
        "AWS_ACCESS_KEY_ID": "test-access-key",
        "AWS_SECRET_ACCESS_KEY": "test-secret-key",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": server.url,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    import boto3

    boto3.client("s3").create_bucket(Bucket="backups")
    try:
        yield server
    finally:
        server.stop()


def s3_env(server: S3Server) -> dict:
    """The environment a subprocess needs to reach ``server``."""
    return dict(
        os.environ,
        AWS_ACCESS_KEY_ID="test-access-key",
        AWS_SECRET_ACCESS_KEY="test-secret-key",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=server.url,
    )
