"""``import_legacy`` against ``generate_demo_data`` writing the same number of rows (issue 19).

Builds a Flask-era mcServerManager SQLite file (tables user, server, configuration,
alembic_version, every row valid by our rules) of the given size, then on each engine,
into a freshly migrated database each time, times ``manage.py generate_demo_data`` with
the same counts and ``manage.py import_legacy`` of the file, as subprocesses (the way an
operator runs them), and prints a table. The target: the import takes at most twice
the generator's time.

    python bench/import_legacy.py                                   # 100,000 users, 1,000,000 servers
    python bench/import_legacy.py --users 10000 --servers 100000 --engines sqlite
"""

import argparse
import hashlib
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):  # run as a script (python bench/import_legacy.py): the project root on the path
    sys.path.insert(0, str(ROOT))

from bench.databases import engine_for_url, setup_django  # noqa: E402
from dbtools.engines.legacy import write_sqlite_source  # noqa: E402

TARGET_RATIO = 2.0
BENCH_KEY = secrets.token_urlsafe(50)  # the settings' checks refuse a short key
DEFAULT_URLS = {
    "postgresql": "postgres://root@127.0.0.1:5432/mcm_bench_import",
    "mariadb": "mysql://root@127.0.0.1:3306/mcm_bench_import",
}

FLASK_SCHEMA = """
CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY);
CREATE TABLE user (id INTEGER NOT NULL PRIMARY KEY, username VARCHAR(80) NOT NULL UNIQUE,
    password_hash VARCHAR(128), is_admin BOOLEAN, email VARCHAR(120) UNIQUE, created_at DATETIME,
    last_login DATETIME, is_active BOOLEAN);
CREATE TABLE server (id INTEGER NOT NULL PRIMARY KEY, server_name VARCHAR(150) NOT NULL UNIQUE,
    version VARCHAR(20) NOT NULL, port INTEGER NOT NULL, status VARCHAR(20), pid INTEGER,
    level_seed VARCHAR(100), gamemode VARCHAR(20), difficulty VARCHAR(20), hardcore BOOLEAN, pvp BOOLEAN,
    spawn_monsters BOOLEAN, motd VARCHAR(150), memory_mb INTEGER, owner_id INTEGER NOT NULL REFERENCES user (id));
CREATE TABLE configuration (id INTEGER NOT NULL PRIMARY KEY, "key" VARCHAR(100) NOT NULL UNIQUE,
    value TEXT NOT NULL, updated_at DATETIME, updated_by INTEGER REFERENCES user (id));
"""
GAMEMODES = ("survival", "creative", "adventure", "spectator")
DIFFICULTIES = ("peaceful", "easy", "normal", "hard")
MEMORY = (1024, 2048, 4096, 8192)


def build_flask_file(path: Path, users: int, servers: int, configs: int) -> None:
    """A valid Flask-era database: one real pbkdf2:sha256:600000 hash shared by every user (hashing
    100,000 passwords would take hours and measures nothing of the import)."""
    salt = "BenchSalt0123456"
    digest = hashlib.pbkdf2_hmac("sha256", b"bench-password", salt.encode(), 600_000).hex()
    password_hash = f"pbkdf2:sha256:600000${salt}${digest}"
    running = min(servers // 20, 65535 - 1024 + 1)
    write_sqlite_source(
        path,
        FLASK_SCHEMA + "INSERT INTO alembic_version VALUES ('bench0000001');",
        {
            "user": (
                (i, f"player_{i}", password_hash, int(i == 1), f"player{i}@example.com",
                 "2023-01-01 12:00:00.000000", None if i % 3 else "2024-06-01 08:00:00", int(i % 50 != 0))
                for i in range(1, users + 1)
            ),
            # One Running server per port from 1024 up (as many as there are ports), the rest Stopped.
            "server": (
                (i, f"world-{i}", "1.20.1", 1023 + i if i <= running else 25565, "Running" if i <= running else "Stopped",
                 None, str(i * 7919), GAMEMODES[i % 4], DIFFICULTIES[i % 4], i % 7 == 0, i % 5 != 0, 1,
                 "A Minecraft Server", MEMORY[i % 4], 1 + i % users)
                for i in range(1, servers + 1)
            ),
            "configuration": (
                (i, f"panel.setting_{i}", f"value {i}", "2024-01-01 00:00:00", 1 + i % users)
                for i in range(1, configs + 1)
            ),
        },
    )  # fmt: skip


def manage(*args: str, url: str, backup_dir: Path) -> tuple[float, float]:
    """Run ``manage.py`` on the database at ``url``: its wall time and peak RSS (MB), or exit with its error."""
    env = dict(os.environ, DATABASE_URL=url, MCMANAGER_BACKUP_DIR=str(backup_dir), DJANGO_SECRET_KEY=BENCH_KEY)
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err
        )
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - started
        if process.returncode != 0:
            err.seek(0)
            sys.exit(f"manage.py {args[0]} failed on {url.split('@')[-1]}: {err.read().strip()[-300:]}")
    return seconds, usage.ru_maxrss / 1024


def fresh_database(url: str) -> str:
    """An empty database at ``url`` (dropped first if it was there), through its dbtools engine; the URL.
    Migrated afterwards by the caller."""
    engine = engine_for_url(url)
    engine.drop_database()
    engine.create_database()
    return url


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--servers", type=int, default=1_000_000)
    parser.add_argument("--configs", type=int, default=10_000)
    parser.add_argument("--engines", default="sqlite,postgresql,mariadb")
    parser.add_argument("--pg-url", default=DEFAULT_URLS["postgresql"], help="a database this script may drop")
    parser.add_argument("--mariadb-url", default=DEFAULT_URLS["mariadb"], help="a database this script may drop")
    args = parser.parse_args(argv)
    setup_django({"DJANGO_SECRET_KEY": BENCH_KEY})
    rows = []
    with tempfile.TemporaryDirectory(prefix="mcm-bench-import-") as tmp:
        workdir = Path(tmp)
        urls = {
            "sqlite": f"sqlite:///{workdir / 'target.sqlite3'}",
            "postgresql": args.pg_url,
            "mariadb": args.mariadb_url,
        }
        source = workdir / "mcserver.db"
        started = time.perf_counter()
        build_flask_file(source, args.users, args.servers, args.configs)
        print(f"Flask-era file: {args.users:,} users, {args.servers:,} servers, {args.configs:,} configuration "
              f"entries, {source.stat().st_size / 1e6:.0f} MB, built in {time.perf_counter() - started:.1f} s")  # fmt: skip
        for engine in [e.strip() for e in args.engines.split(",") if e.strip()]:
            url = fresh_database(urls[engine])
            manage("migrate", "--no-input", "--no-backup", url=url, backup_dir=workdir / "b1")
            generate, generate_rss = manage(
                "generate_demo_data", "--users", str(args.users), "--servers", str(args.servers),
                "--configs", str(args.configs), url=url, backup_dir=workdir / "b1",
            )  # fmt: skip
            url = fresh_database(urls[engine])
            manage("migrate", "--no-input", "--no-backup", url=url, backup_dir=workdir / "b2")
            imported, imported_rss = manage("import_legacy", str(source), url=url, backup_dir=workdir / "b2")
            rows.append((engine, generate, imported, imported / generate, generate_rss, imported_rss))
            engine_for_url(url).drop_database()  # a million rows left on a shared server help nobody
            print(f"{engine}: generate_demo_data {generate:.1f} s, import_legacy {imported:.1f} s", flush=True)
    print()
    print(
        f"{'engine':<11} {'generate_demo_data':>18} {'import_legacy':>14} {'ratio':>6}  {'target <= ' + str(TARGET_RATIO):<15}"
        f" peak RSS generate / import"
    )
    for engine, generate, imported, ratio, generate_rss, imported_rss in rows:
        verdict = "met" if ratio <= TARGET_RATIO else "MISSED"
        print(
            f"{engine:<11} {generate:>16.1f} s {imported:>12.1f} s {ratio:>6.2f}  {verdict:<15}"
            f" {generate_rss:.0f} MB / {imported_rss:.0f} MB"
        )
    return 0 if all(r[3] <= TARGET_RATIO for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
