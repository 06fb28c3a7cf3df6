"""Memory of offsite uploads and downloads: flat with the size of the backup.

Starts moto's S3 server on 127.0.0.1, writes backups of two sizes (random bytes, so
nothing compresses), and runs ``OffsiteStore.upload`` (multipart, read back) and
``OffsiteStore.fetch`` (streamed, size and sha256 checked) of each in a subprocess of
its own, reading its peak RSS with ``os.wait4``. A baseline subprocess that only
creates the client shows what Python, Django's settings module and boto3 cost alone.

    python bench/offsite.py                 # 50 MB and 400 MB
    python bench/offsite.py --sizes 10 100  # other sizes, in MB
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
URL = "s3://bench/offsite"

CHILD = """
import sys
sys.path.insert(0, {root!r})
from dbtools.backups import OffsiteStore
store = OffsiteStore({url!r})
action, path, sha256, size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
if action == "client":
    store.client
elif action == "upload":
    store.upload(path, path + ".json", sha256)
else:
    import pathlib
    store.fetch(pathlib.Path(path).name, sys.argv[5], size, sha256)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_moto(port: int) -> subprocess.Popen:
    binary = Path(sys.executable).with_name("moto_server")
    found = str(binary) if binary.exists() else shutil.which("moto_server")
    if not found:
        sys.exit("moto_server is not installed (pip install -r requirements-dev.txt)")
    proc = subprocess.Popen(
        [found, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    sys.exit("moto_server did not start")


def write_backup(directory: Path, megabytes: int) -> tuple[Path, str]:
    """A file of random bytes (1 MiB at a time) and a stand-in manifest; returns (path, sha256)."""
    path = directory / f"db_backup_20260101_0000{megabytes % 60:02d}_{megabytes}.sqlite3.zst"
    digest = hashlib.sha256()
    with open(path, "wb") as out:
        for _ in range(megabytes):
            chunk = os.urandom(1 << 20)
            digest.update(chunk)
            out.write(chunk)
    (directory / (path.name + ".json")).write_text("{}")
    return path, digest.hexdigest()


def measure(env: dict, *args: str) -> tuple[float, float]:
    """(peak RSS in MB, seconds) of one child run."""
    code = CHILD.format(root=str(ROOT), url=URL)
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-c", code, *args], env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.monotonic() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"the child failed: {args[0]}")
    return usage.ru_maxrss / 1024, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 400], help="Backup sizes in MB.")
    args = parser.parse_args()
    port = free_port()
    env = dict(
        os.environ,
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
        DJANGO_SETTINGS_MODULE="",
    )
    server = start_moto(port)
    try:
        import boto3

        os.environ.update({k: env[k] for k in env if k.startswith("AWS_")})
        boto3.client("s3").create_bucket(Bucket="bench")
        with tempfile.TemporaryDirectory(prefix="bench-offsite-") as tmp:
            tmp = Path(tmp)
            base, _ = measure(env, "client", "-", "-", "0")
            rows = []
            for megabytes in args.sizes:
                path, sha256 = write_backup(tmp, megabytes)
                up_rss, up_s = measure(env, "upload", str(path), sha256, str(megabytes << 20))
                down = tmp / "down"
                down.mkdir()
                down_rss, down_s = measure(env, "fetch", str(path), sha256, str(megabytes << 20), str(down))
                rows.append((megabytes, up_rss, up_s, down_rss, down_s))
                shutil.rmtree(down)
                path.unlink()
        print(f"Baseline (Python, boto3, the client): peak RSS {base:.0f} MB\n")
        print("| backup | upload (multipart, read back): peak RSS | time | download (checked): peak RSS | time |")
        print("|---:|---:|---:|---:|---:|")
        for megabytes, up_rss, up_s, down_rss, down_s in rows:
            print(f"| {megabytes} MB | {up_rss:.0f} MB | {up_s:.1f} s | {down_rss:.0f} MB | {down_s:.1f} s |")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
