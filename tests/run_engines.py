"""Run the test suite once per database engine: SQLite always, PostgreSQL and MariaDB when reachable.

Used by ``make test``. With MCMANAGER_REQUIRE_ENGINES=1 (CI), an unreachable PostgreSQL
or MariaDB is a failure instead of a skip. Extra arguments go to pytest.
"""

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get("MCMANAGER_TEST_PG_URL", "postgres://root@127.0.0.1:5432/test")
MARIADB_URL = os.environ.get("MCMANAGER_TEST_MARIADB_URL", "mysql://root@127.0.0.1:3306/test")
SQLITE_URL = os.environ.get(
    "MCMANAGER_TEST_SQLITE_URL",
    "sqlite:///" + str(ROOT / "instance" / "mcmanager.sqlite3"),
)


def required() -> bool:
    return os.environ.get("MCMANAGER_REQUIRE_ENGINES", "") not in ("", "0")


def postgres_reason() -> str | None:
    """None when PostgreSQL answers, else why not."""
    try:
        import psycopg
    except ImportError as exc:
        return f"psycopg is not installed ({exc})"
    import dj_database_url

    cfg = dj_database_url.parse(PG_URL)
    try:
        psycopg.connect(
            host=cfg["HOST"],
            port=cfg["PORT"] or 5432,
            user=cfg["USER"],
            password=cfg["PASSWORD"] or None,
            # The server, not the named database: the tests create test_<name> themselves.
            dbname="postgres",
            connect_timeout=3,
        ).close()
    except Exception as exc:
        return f"PostgreSQL at {cfg['HOST']}:{cfg['PORT']} is not reachable ({str(exc).splitlines()[0]})"
    return None


def mariadb_reason() -> str | None:
    """None when MariaDB answers (installing its driver first if need be), else why not."""
    try:
        import MySQLdb  # noqa: F401
    except ImportError:
        print("== installing the MariaDB driver (requirements-mysql.txt)", flush=True)
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "-q",
                "-r",
                str(ROOT / "requirements-mysql.txt"),
            ],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            return "the mysqlclient driver could not be installed (needs libmariadb-dev and pkg-config)"
    probe = (
        "import MySQLdb, dj_database_url, sys\n"
        "c = dj_database_url.parse(sys.argv[1])\n"
        "MySQLdb.connect(host=c['HOST'], port=int(c['PORT'] or 3306), user=c['USER'], "
        "passwd=c['PASSWORD'] or '', connect_timeout=3).close()\n"
    )
    done = subprocess.run([sys.executable, "-c", probe, MARIADB_URL], capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no answer"])[-1]
        return f"MariaDB is not reachable ({last})"
    return None


def run_pass(name: str, url: str, args: list[str]) -> tuple[int, dict]:
    print(
        f"\n== {name}: pytest with DATABASE_URL={re.sub(r':[^:@/]*@', ':***@', url)}",
        flush=True,
    )
    env = dict(os.environ, DATABASE_URL=url)
    env.setdefault("DJANGO_SECRET_KEY", secrets.token_urlsafe(50))
    env.pop("DJANGO_DEBUG", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    counts = {"passed": 0, "failed": 0, "skipped": 0, "error": 0}
    last = ""
    for line in proc.stdout:
        sys.stdout.write(line)
        if line.strip():
            last = line
    proc.wait()
    for number, word in re.findall(r"(\d+) (passed|failed|skipped|errors?)", last):
        counts["error" if word.startswith("error") else word] += int(number)
    return proc.returncode, counts


def main() -> int:
    args = sys.argv[1:]
    passes = [("SQLite", SQLITE_URL)]
    problems = []
    for name, url, reason in (
        ("PostgreSQL", PG_URL, postgres_reason()),
        ("MariaDB", MARIADB_URL, mariadb_reason()),
    ):
        if reason is None:
            passes.append((name, url))
        elif required():
            problems.append(f"{name} is required (MCMANAGER_REQUIRE_ENGINES) but {reason}")
        else:
            print(f"== skipping the {name} pass: {reason}", flush=True)
    for problem in problems:
        print(f"== ERROR: {problem}", flush=True)

    totals = {"passed": 0, "failed": 0, "skipped": 0, "error": 0}
    results = []
    for name, url in passes:
        code, counts = run_pass(name, url, args)
        results.append((name, code, counts))
        for key in totals:
            totals[key] += counts[key]

    print("\n== summary")
    for name, code, counts in results:
        status = "ok" if code == 0 else f"FAILED (pytest exit {code})"
        print(
            f"   {name:<11} {counts['passed']} passed, {counts['failed']} failed, "
            f"{counts['skipped']} skipped, {counts['error']} errors: {status}"
        )
    failed = totals["failed"] + totals["error"]
    print(f"total: {totals['passed']} passed, {failed} failed, {totals['skipped']} skipped")
    if problems or any(code != 0 for _, code, _ in results):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
