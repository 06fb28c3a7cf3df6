"""``make bench``: our commands against the database's own tools, at 1,000,000 servers.

For each engine (SQLite always; PostgreSQL and MariaDB when they answer) it builds, or
reuses when the counts are right, a database of 100,000 users, 1,000,000 servers and
10,000 configuration entries (``--scale`` multiplies the counts), then times, with
``--runs`` runs each (default 3), every one of our commands next to the same job done
with the engine's own tools. The members of a comparison run one after the other in
the same round (their order alternating between rounds), so each ratio is taken on
the same machine state; the ratio reported is the median of the per-round ratios.

Our commands run as subprocesses (``python manage.py ...``), as cron runs them: their
times include Python and Django's start-up, which is shown on its own line. Peak RSS
is read per command with ``os.wait4``. dbstats and the admin health page are also
timed in-process (server time, no start-up), in a helper subprocess per engine.

The targets of issue 8 are printed as a table with met / missed, and written to
BENCHMARKS.md between its ``bench:begin`` / ``bench:end`` markers (the analysis
around them is kept).

    python bench/run.py                       # all reachable engines, full size
    python bench/run.py --engines sqlite --scale 0.1 --runs 1 --no-write   # quick look
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import secrets
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
BASE_USERS, BASE_SERVERS, BASE_CONFIGS = 100_000, 1_000_000, 10_000
SEED = 1
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
RSS_LIMIT_MB = 150
# "Not growing": the larger database may cost this much more (allocator and import noise).
RSS_GROWTH_FACTOR, RSS_GROWTH_SLACK_MB = 1.15, 5


# --------------------------------------------------------------------------- processes


@dataclass
class Outcome:
    """One timed subprocess."""

    seconds: float
    rss_mb: float
    returncode: int
    stdout: str = ""
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def first_error(self) -> str:
        text = (self.stderr.strip() or self.stdout.strip() or f"exit {self.returncode}").splitlines()
        return text[-1][:160] if text else f"exit {self.returncode}"


def run_timed(argv: list[str] | str, env: dict | None = None, *, shell: bool = False, cwd=ROOT) -> Outcome:
    """Run a process to completion; wall time and its peak RSS (with its waited-for children)."""
    if shell:
        argv = ["bash", "-o", "pipefail", "-c", argv]
    started = time.perf_counter()
    proc = subprocess.Popen(
        argv,
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # communicate() would reap the child itself; read the pipes in threads, reap with wait4.
    import threading

    chunks: dict[str, str] = {}

    def drain(name, stream):
        chunks[name] = stream.read()

    readers = [
        threading.Thread(target=drain, args=("out", proc.stdout)),
        threading.Thread(target=drain, args=("err", proc.stderr)),
    ]
    for t in readers:
        t.start()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    for t in readers:
        t.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Outcome(seconds, usage.ru_maxrss / 1024, proc.returncode, chunks.get("out", ""), chunks.get("err", ""))


def quiet(cmd: str, env: dict | None = None) -> str:
    """A helper command that must succeed (setup and cleanup); returns its stdout."""
    done = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{cmd!r} failed: {(done.stderr or done.stdout).strip()[-300:]}")
    return done.stdout


# --------------------------------------------------------------------------- engines


@dataclass
class Engine:
    """One database engine under test: its bench database and the engine's own tools."""

    name: str  # sqlite, postgresql, mariadb
    url: str
    workdir: Path
    env: dict = field(default_factory=dict)

    @property
    def display(self) -> str:
        return {"sqlite": "SQLite", "postgresql": "PostgreSQL", "mariadb": "MariaDB"}[self.name]

    @property
    def path(self) -> Path:  # SQLite only
        return Path(urlparse(self.url).path)

    @property
    def dbname(self) -> str:
        return urlparse(self.url).path.lstrip("/")

    def manage_env(self, backup_dir: Path | None = None) -> dict:
        env = dict(self.env)
        env["DATABASE_URL"] = self.url
        env["MCMANAGER_BACKUP_DIR"] = str(backup_dir or self.workdir / "backups")
        return env

    def manage(self, *args: str, backup_dir: Path | None = None) -> Outcome:
        return run_timed([PYTHON, str(ROOT / "manage.py"), *args], self.manage_env(backup_dir))

    # client command lines ------------------------------------------------------
    def client_env(self) -> dict:
        env = dict(self.env)
        u = urlparse(self.url)
        if self.name == "postgresql":
            env.update(PGHOST=u.hostname or "127.0.0.1", PGPORT=str(u.port or 5432), PGUSER=u.username or "")
            if u.password:
                env["PGPASSWORD"] = u.password
        elif self.name == "mariadb" and u.password:
            env["MYSQL_PWD"] = u.password
        return env

    def mariadb_args(self) -> str:
        u = urlparse(self.url)
        return f"-h {u.hostname or '127.0.0.1'} -P {u.port or 3306} -u {shlex.quote(u.username or 'root')}"

    def sql(self, statement: str, database: str | None = None) -> str:
        """Run one statement with the engine's client; its output."""
        db = database or self.dbname
        if self.name == "sqlite":
            return quiet(f"sqlite3 {shlex.quote(str(self.path))} {shlex.quote(statement)}", self.env)
        if self.name == "postgresql":
            return quiet(f"psql -X -q -At -d {shlex.quote(db)} -c {shlex.quote(statement)}", self.client_env())
        return quiet(
            f"mariadb {self.mariadb_args()} -N -B {shlex.quote(db)} -e {shlex.quote(statement)}", self.client_env()
        )

    def server_sql(self, statement: str) -> str:
        """A statement outside the bench database (create/drop databases)."""
        if self.name == "postgresql":
            return quiet(f"psql -X -q -At -d postgres -c {shlex.quote(statement)}", self.client_env())
        return quiet(f"mariadb {self.mariadb_args()} -N -B -e {shlex.quote(statement)}", self.client_env())

    def reachable(self) -> str | None:
        try:
            if self.name == "postgresql":
                self.server_sql("SELECT 1")
            elif self.name == "mariadb":
                self.server_sql("SELECT 1")
        except Exception as exc:  # noqa: BLE001 (any failure means "not reachable")
            return str(exc).splitlines()[-1][:200]
        return None

    def version(self) -> str:
        try:
            if self.name == "sqlite":
                return "sqlite3 " + quiet("sqlite3 --version").split()[0]
            if self.name == "postgresql":
                return "PostgreSQL " + self.server_sql("SHOW server_version").strip()
            return "MariaDB " + self.server_sql("SELECT VERSION()").strip()
        except Exception:  # noqa: BLE001
            return "unknown"

    def drop_database(self, name: str) -> None:
        if self.name == "postgresql":
            self.server_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        elif self.name == "mariadb":
            self.server_sql(f"DROP DATABASE IF EXISTS `{name}`")

    def create_database(self, name: str) -> None:
        if self.name == "postgresql":
            self.server_sql(f'CREATE DATABASE "{name}"')
        elif self.name == "mariadb":
            self.server_sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci")


def engine_url(name: str, args, servers: int) -> str:
    tag = f"{servers // 1000}k" if servers >= 1000 else str(servers)
    if name == "sqlite":
        return f"sqlite:///{Path(args.dir).resolve() / f'bench_{tag}.sqlite3'}"
    base = args.pg_url if name == "postgresql" else args.mariadb_url
    u = urlparse(base)
    return u._replace(path=f"/{args.db_prefix}_{tag}").geturl()


# --------------------------------------------------------------------------- building


def counts(engine: Engine) -> tuple[int, int, int] | None:
    try:
        out = engine.sql(
            "SELECT (SELECT COUNT(*) FROM accounts_user), (SELECT COUNT(*) FROM servers_server), "
            "(SELECT COUNT(*) FROM servers_configuration)"
        )
    except Exception:  # noqa: BLE001 (missing database or tables: build it)
        return None
    numbers = [int(x) for x in re.findall(r"\d+", out)]
    return tuple(numbers[:3]) if len(numbers) >= 3 else None


def build(engine: Engine, users: int, servers: int, configs: int, log: Callable[[str], None]) -> float | None:
    """Reuse the bench database when its counts are right; else (re)create it. Returns build seconds."""
    if engine.name == "sqlite":
        engine.path.parent.mkdir(parents=True, exist_ok=True)
    have = counts(engine)
    if have == (users, servers, configs):
        log(f"{engine.display}: reusing {engine.dbname} ({have[0]:,} users, {have[1]:,} servers, {have[2]:,} configs)")
        return None
    log(f"{engine.display}: building {users:,} users, {servers:,} servers, {configs:,} configs (had {have})")
    if engine.name == "sqlite":
        for suffix in ("", "-wal", "-shm"):
            Path(str(engine.path) + suffix).unlink(missing_ok=True)
    else:
        engine.drop_database(engine.dbname)
        engine.create_database(engine.dbname)
    started = time.perf_counter()
    migrate = engine.manage("migrate", "--no-input", "-v", "0", "--no-backup")
    if not migrate.ok:
        raise RuntimeError(f"migrate failed on {engine.display}: {migrate.first_error()}")
    gen = engine.manage(
        "generate_demo_data",
        "--users",
        str(users),
        "--servers",
        str(servers),
        "--configs",
        str(configs),
        "--seed",
        str(SEED),
        "--json",
    )
    if not gen.ok:
        raise RuntimeError(f"generate_demo_data failed on {engine.display}: {gen.first_error()}")
    result = json.loads(gen.stdout)
    log(
        f"{engine.display}: generated {result['rows']:,} rows in {result['duration']:.1f} s "
        f"({result['rows_per_second']:,} rows/s)"
    )
    # Settle the database the way an operator's would be: statistics, WAL folded in.
    if engine.name == "sqlite":
        engine.sql("PRAGMA wal_checkpoint(TRUNCATE);")
    elif engine.name == "postgresql":
        quiet(f"psql -X -q -d {shlex.quote(engine.dbname)} -c 'VACUUM ANALYZE'", engine.client_env())
    else:
        engine.sql("ANALYZE TABLE accounts_user, servers_server, servers_configuration")
    return time.perf_counter() - started


# --------------------------------------------------------------------------- measuring


@dataclass
class Results:
    """Samples per (engine, item), per-round ratios, peak RSS per command, notes."""

    samples: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    failures: dict[tuple[str, str], str] = field(default_factory=dict)
    ratios: dict[tuple[str, str, str], list[float]] = field(default_factory=dict)
    rss: dict[tuple[str, str, int], list[float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    info: dict[str, str] = field(default_factory=dict)
    startup: float = 0.0

    def add(self, engine: str, item: str, seconds: float) -> None:
        self.samples.setdefault((engine, item), []).append(seconds)

    def median(self, engine: str, item: str) -> float | None:
        values = self.samples.get((engine, item))
        return statistics.median(values) if values else None


class Bench:
    def __init__(self, args, results: Results, log):
        self.args = args
        self.results = results
        self.log = log

    # one item ------------------------------------------------------------------
    def measure(self, engine: Engine, item: str, action: Callable[[], Outcome | float]) -> float | None:
        key = (engine.name, item)
        if key in self.results.failures:
            return None
        try:
            outcome = action()
        except Exception as exc:  # noqa: BLE001 (a failing tool is a result, not a crash)
            self.results.failures[key] = str(exc).splitlines()[-1][:200] if str(exc) else type(exc).__name__
            self.log(f"  {engine.display} {item}: FAILED {self.results.failures[key]}")
            return None
        if isinstance(outcome, Outcome):
            if not outcome.ok:
                self.results.failures[key] = outcome.first_error()
                self.log(f"  {engine.display} {item}: FAILED {outcome.first_error()}")
                return None
            seconds = outcome.seconds
        else:
            seconds = outcome
        self.results.add(engine.name, item, seconds)
        self.log(f"  {engine.display} {item}: {seconds:,.2f}{'' if item.endswith('(rows/s)') else ' s'}")
        return seconds

    def pair(self, engine: Engine, round_no: int, items: list[tuple[str, Callable]], ratios: list[tuple[str, str]]):
        """Run the members of one comparison back to back; order alternates between rounds."""
        order = items if round_no % 2 == 0 else list(reversed(items))
        got = {}
        for item, action in order:
            got[item] = self.measure(engine, item, action)
        for ours, theirs in ratios:
            if got.get(ours) and got.get(theirs):
                self.results.ratios.setdefault((engine.name, ours, theirs), []).append(got[ours] / got[theirs])

    def ours(self, engine: Engine, item: str, *args: str, backup_dir: Path | None = None, rss_key: str | None = None):
        """An action running one of our commands, recording its peak RSS."""

        def action():
            outcome = engine.manage(*args, backup_dir=backup_dir)
            if outcome.ok and rss_key:
                self.results.rss.setdefault((engine.name, rss_key, self.args.current_servers), []).append(
                    outcome.rss_mb
                )
            return outcome

        return action


def sh_action(cmd: str, env: dict) -> Callable[[], Outcome]:
    return lambda: run_timed(cmd, env, shell=True)


def newest(directory: Path, pattern: str = "db_backup_*") -> Path | None:
    files = [p for p in directory.glob(pattern) if not p.name.endswith(".json") and not p.name.startswith(".")]
    return max(files, key=lambda p: p.stat().st_mtime) if files else None


def clear(directory: Path, keep: Path | None = None) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for p in directory.iterdir():
        if keep is not None and (p == keep or p.name.startswith(keep.name)):
            continue
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


# --------------------------------------------------------------------------- validate as raw SQL

CAPTURE_SCRIPT = r"""
import json, os, sys
sys.path.insert(0, os.getcwd())
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mcmanager.settings")
import django
django.setup()
from django.db import connection
from dbtools.validation import run_validation

statements = []

def capture(execute, sql, params, many, context):
    result = execute(sql, params, many, context)
    head = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else ""
    if head in ("SELECT", "WITH", "PRAGMA", "SHOW", "EXPLAIN", "CHECK"):
        statements.append(connection.ops.last_executed_query(context["cursor"], sql, params))
    return result

# One worker: every statement on this connection, in order, as a client would run the script.
with connection.execute_wrapper(capture):
    report = run_validation(workers=1)
print(json.dumps({"ok": report.ok, "statements": statements}))
"""


def validate_sql_file(engine: Engine) -> Path:
    """The SQL that ``validate`` runs, captured from a real run, as a file for the engine's client."""
    done = run_timed([PYTHON, "-c", CAPTURE_SCRIPT], engine.manage_env())
    if not done.ok:
        raise RuntimeError(f"could not capture validate's SQL: {done.first_error()}")
    captured = json.loads(done.stdout.strip().splitlines()[-1])
    path = engine.workdir / "validate.sql"
    with path.open("w") as fh:
        for statement in captured["statements"]:
            fh.write(statement.rstrip().rstrip(";") + ";\n")
    return path


# --------------------------------------------------------------------------- in-process probe

PROBE_SCRIPT = r"""
import json, os, sys, time, statistics
sys.path.insert(0, os.getcwd())
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mcmanager.settings")
import django
django.setup()
from io import StringIO
from django.core.management import call_command
from django.test import Client
from accounts.models import User

runs = int(sys.argv[1])
out = {"dbstats": [], "health_page": [], "health_status": None}

# A year of daily backups in the backup directory (the dashboard charts the last 30 days,
# /health/ and dbstats list them all): one real backup, 364 hard links to it, each with a
# manifest of its own day, signed as ours.
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from dbtools.backups import create_backup
from dbtools.manifest import BackupManifest, manifest_path, write_manifest

real = create_backup(reason="bench").path
data = json.loads(manifest_path(real).read_text())
suffix = real.name[len("db_backup_20260101_000000"):]
now = datetime.now(UTC)
for day in range(1, 365):
    when = now - timedelta(days=day)
    name = f"db_backup_{when:%Y%m%d_%H%M%S}{suffix}"
    os.link(real, real.with_name(name))
    fields = dict(data, created_at=when.isoformat(), file=name, duration_ms=data["duration_ms"] + day)
    fields.pop("signature", None)
    write_manifest(real.with_name(name), BackupManifest.from_dict(fields))
out["backups_in_directory"] = 365

for _ in range(runs):
    t = time.perf_counter()
    call_command("dbstats", "--json", stdout=StringIO())
    out["dbstats"].append(time.perf_counter() - t)
admin, _ = User.objects.get_or_create(username="bench_admin_probe", defaults={"is_admin": True})
try:
    client = Client()
    client.force_login(admin)
    first = None
    for i in range(runs + 1):
        t = time.perf_counter()
        response = client.get("/admin/health/")
        elapsed = time.perf_counter() - t
        out["health_status"] = response.status_code
        if i == 0:
            out["health_first"] = elapsed  # cold: templates and imports loaded
        else:
            out["health_page"].append(elapsed)
finally:
    from django.contrib.sessions.models import Session
    Session.objects.all().delete()
    admin.delete()
print(json.dumps(out))
"""


# --------------------------------------------------------------------------- the suites


def sqlite_suite(bench: Bench, engine: Engine, runs: int, groups: set[str]) -> None:
    db = shlex.quote(str(engine.path))
    work = engine.workdir
    ours_dir, tools_dir, dbb_dir = work / "backups", work / "tools", work / "dbbackup"
    for d in (ours_dir, tools_dir, dbb_dir):
        clear(d)
    copy = shlex.quote(str(tools_dir / "copy.sqlite3"))
    env = engine.env
    # Every quick_check and integrity_check here opens its file read-write, as ours do on
    # a backup's copy: SQLite leaves a read-only database's CHECK constraints unparsed, and
    # its quick_check then checks the structure alone. Our restore checks the scratch's
    # structure and evaluates the CHECKs in the validation it runs.
    for r in range(runs):
        bench.log(f"{engine.display} round {r + 1}/{runs}")
        if "backup" in groups:
            bench.pair(
                engine,
                r,
                [
                    ("backup", bench.ours(engine, "backup", "backup", "-v", "0", rss_key="backup")),
                    (
                        ".backup + quick_check + sha256sum",
                        sh_action(
                            f"rm -f {copy}; sqlite3 {db} '.backup {copy}' && "
                            f"test \"$(sqlite3 {copy} 'PRAGMA quick_check')\" = ok && sha256sum {copy} >/dev/null",
                            env,
                        ),
                    ),
                    (
                        "dbbackup + quick_check",
                        sh_action(
                            f"rm -rf {dbb_dir}/*; {shlex.quote(PYTHON)} bench/dbbackup_tool.py --noinput -q "
                            f'-O {dbb_dir}/out.sqlite3 && test "$(sqlite3 {dbb_dir}/out.sqlite3 '
                            f"'PRAGMA quick_check')\" = ok",
                            engine.manage_env(dbb_dir),
                        ),
                    ),
                    ("sqlite3 .backup", sh_action(f"rm -f {copy}; sqlite3 {db} '.backup {copy}'", env)),
                    ("cp", sh_action(f"rm -f {copy}; cp {db} {copy}", env)),
                ],
                [
                    ("backup", ".backup + quick_check + sha256sum"),
                    ("backup", "dbbackup + quick_check"),
                    ("backup", "sqlite3 .backup"),
                    ("backup", "cp"),
                ],
            )
            clear(ours_dir, keep=newest(ours_dir))
        if "full" in groups:
            bench.pair(
                engine,
                r,
                [
                    (
                        "backup --verify full",
                        bench.ours(
                            engine,
                            "backup --verify full",
                            "backup",
                            "--verify",
                            "full",
                            "-v",
                            "0",
                            rss_key="backup --verify full",
                        ),
                    ),
                    (
                        ".backup + integrity_check + sha256sum",
                        sh_action(
                            f"rm -f {copy}; sqlite3 {db} '.backup {copy}' && "
                            f"test \"$(sqlite3 {copy} 'PRAGMA integrity_check')\" = ok && sha256sum {copy} >/dev/null",
                            env,
                        ),
                    ),
                ],
                [("backup --verify full", ".backup + integrity_check + sha256sum")],
            )
            clear(ours_dir, keep=newest(ours_dir))
        if "restore" in groups:
            source = newest(ours_dir)
            if source is None:
                made = engine.manage("backup", "-v", "0")
                source = newest(ours_dir) if made.ok else None
            if not (tools_dir / "copy.sqlite3").exists():
                quiet(f"sqlite3 {db} '.backup {copy}'", env)
            safety = shlex.quote(str(tools_dir / "safety.sqlite3"))
            bench.pair(
                engine,
                r,
                [
                    (
                        "restore",
                        (
                            bench.ours(
                                engine, "restore", "restore", str(source), "--noinput", "-v", "0", rss_key="restore"
                            )
                        )
                        if source
                        else (lambda: Outcome(0, 0, 1, stderr="no backup of ours to restore")),
                    ),
                    (
                        "sha256sum + quick_check + .backup + .restore",
                        sh_action(
                            f"sha256sum {copy} >/dev/null && test \"$(sqlite3 {copy} 'PRAGMA quick_check')\" = ok && "
                            f"rm -f {safety} && sqlite3 {db} '.backup {safety}' && sqlite3 {db} '.restore {copy}'",
                            env,
                        ),
                    ),
                ],
                [("restore", "sha256sum + quick_check + .backup + .restore")],
            )
            clear(ours_dir, keep=source)
        if "validate" in groups:
            sql_file = engine.workdir / "validate.sql"
            bench.pair(
                engine,
                r,
                [
                    ("validate", bench.ours(engine, "validate", "validate", "-v", "0", rss_key="validate")),
                    (
                        "validate's SQL in sqlite3",
                        sh_action(f"sqlite3 {db} < {shlex.quote(str(sql_file))} >/dev/null", env),
                    ),
                ],
                [("validate", "validate's SQL in sqlite3")],
            )
        if "stats" in groups:
            bench.measure(
                engine, "dbstats (command)", bench.ours(engine, "dbstats", "dbstats", "--json", rss_key="dbstats")
            )
        if "generate" in groups:
            bench.measure(engine, "generate_demo_data (rows/s)", lambda: generate_rate(engine))


def generate_rate(engine: Engine) -> float:
    """Rows per second of generate_demo_data into a fresh SQLite file (a tenth of the full bench size)."""
    target = engine.workdir / "generate.sqlite3"
    for suffix in ("", "-wal", "-shm"):
        Path(str(target) + suffix).unlink(missing_ok=True)
    fresh = Engine("sqlite", f"sqlite:///{target}", engine.workdir, engine.env)
    try:
        migrate = fresh.manage("migrate", "--no-input", "-v", "0", "--no-backup")
        if not migrate.ok:
            raise RuntimeError(migrate.first_error())
        # A tenth of the full size whatever --scale says: a smaller run measures start-up, not throughput.
        n_users, n_servers, n_configs = (n // 10 for n in (BASE_USERS, BASE_SERVERS, BASE_CONFIGS))
        done = fresh.manage(
            "generate_demo_data",
            *("--users", str(n_users), "--servers", str(n_servers), "--configs", str(n_configs)),
            *("--seed", str(SEED), "--json"),
        )
        if not done.ok:
            raise RuntimeError(done.first_error())
        return float(json.loads(done.stdout)["rows_per_second"])
    finally:
        for suffix in ("", "-wal", "-shm"):
            Path(str(target) + suffix).unlink(missing_ok=True)


def pg_suite(bench: Bench, engine: Engine, runs: int, groups: set[str]) -> None:
    env = engine.client_env()
    db = shlex.quote(engine.dbname)
    work = engine.workdir
    ours_dir, tools_dir, dbb_dir = work / "backups", work / "tools", work / "dbbackup"
    for d in (ours_dir, tools_dir, dbb_dir):
        clear(d)
    archive = shlex.quote(str(tools_dir / "dump.pgc"))
    zarchive = shlex.quote(str(tools_dir / "dump.pgc.zst"))
    scratch = f"{engine.dbname}_scratch_{os.getpid()}"
    qscratch = shlex.quote(scratch)

    def into_scratch(load: str) -> str:
        return f"dropdb --if-exists --force {qscratch} && createdb {qscratch} && {load}"

    try:
        for r in range(runs):
            bench.log(f"{engine.display} round {r + 1}/{runs}")
            if "backup" in groups:
                bench.pair(
                    engine,
                    r,
                    [
                        ("backup", bench.ours(engine, "backup", "backup", "-v", "0", rss_key="backup")),
                        ("pg_dump -Fc", sh_action(f"pg_dump -Fc -d {db} -f {archive}", env)),
                        (
                            "pg_dump -Fc -Z0 | zstd -3 -T2",
                            sh_action(f"pg_dump -Fc -Z0 -d {db} | zstd -q -3 -T2 -f -o {zarchive}", env),
                        ),
                        (
                            "dbbackup",
                            sh_action(
                                f"rm -rf {dbb_dir}/*; {shlex.quote(PYTHON)} bench/dbbackup_tool.py --noinput -q -O {dbb_dir}/out.psql.bin",
                                engine.manage_env(dbb_dir),
                            ),
                        ),
                    ],
                    [("backup", "pg_dump -Fc"), ("backup", "pg_dump -Fc -Z0 | zstd -3 -T2"), ("backup", "dbbackup")],
                )
                bench.measure(
                    engine,
                    "pg_restore -f /dev/null (read the archive)",
                    sh_action(f"pg_restore -f /dev/null {archive}", env),
                )
                clear(ours_dir, keep=newest(ours_dir))
            if "full" in groups:
                bench.pair(
                    engine,
                    r,
                    [
                        (
                            "backup --verify full",
                            bench.ours(
                                engine,
                                "backup --verify full",
                                "backup",
                                "--verify",
                                "full",
                                "-v",
                                "0",
                                rss_key="backup --verify full",
                            ),
                        ),
                        (
                            "pg_dump -Fc + pg_restore into scratch",
                            sh_action(
                                f"pg_dump -Fc -d {db} -f {archive} && "
                                + into_scratch(f"pg_restore -d {qscratch} {archive}")
                                + f" && dropdb --force {qscratch}",
                                env,
                            ),
                        ),
                    ],
                    [("backup --verify full", "pg_dump -Fc + pg_restore into scratch")],
                )
                clear(ours_dir, keep=newest(ours_dir))
            if "restore" in groups:
                source = newest(ours_dir)
                if source is None:
                    engine.manage("backup", "-v", "0")
                    source = newest(ours_dir)
                if not (tools_dir / "dump.pgc").exists():
                    quiet(f"pg_dump -Fc -d {db} -f {archive}", env)
                safety = shlex.quote(str(tools_dir / "safety.pgc"))
                bench.pair(
                    engine,
                    r,
                    [
                        (
                            "restore",
                            bench.ours(
                                engine, "restore", "restore", str(source), "--noinput", "-v", "0", rss_key="restore"
                            )
                            if source
                            else (lambda: Outcome(0, 0, 1, stderr="no backup of ours to restore")),
                        ),
                        (
                            "safety pg_dump -Fc + pg_restore",
                            sh_action(
                                f"pg_dump -Fc -d {db} -f {safety} && "
                                + into_scratch(f"pg_restore -d {qscratch} {archive}"),
                                env,
                            ),
                        ),
                    ],
                    [("restore", "safety pg_dump -Fc + pg_restore")],
                )
                with contextlib.suppress(Exception):
                    engine.drop_database(scratch)
                clear(ours_dir, keep=source)
            if "validate" in groups:
                sql_file = shlex.quote(str(engine.workdir / "validate.sql"))
                bench.pair(
                    engine,
                    r,
                    [
                        ("validate", bench.ours(engine, "validate", "validate", "-v", "0", rss_key="validate")),
                        ("validate's SQL in psql", sh_action(f"psql -X -q -d {db} -f {sql_file} -o /dev/null", env)),
                    ],
                    [("validate", "validate's SQL in psql")],
                )
            if "stats" in groups:
                bench.measure(
                    engine, "dbstats (command)", bench.ours(engine, "dbstats", "dbstats", "--json", rss_key="dbstats")
                )
    finally:
        with contextlib.suppress(Exception):
            engine.drop_database(scratch)


def mariadb_suite(bench: Bench, engine: Engine, runs: int, groups: set[str]) -> None:
    env = engine.client_env()
    db = shlex.quote(engine.dbname)
    conn = engine.mariadb_args()
    work = engine.workdir
    ours_dir, tools_dir, dbb_dir = work / "backups", work / "tools", work / "dbbackup"
    for d in (ours_dir, tools_dir, dbb_dir):
        clear(d)
    plain = shlex.quote(str(tools_dir / "dump.sql"))
    zdump = shlex.quote(str(tools_dir / "dump.sql.zst"))
    scratch = f"{engine.dbname}_scratch_{os.getpid()}"
    dump = f"mariadb-dump {conn} --single-transaction --quick --routines --no-create-db {db}"

    def into_scratch(load_from: str) -> str:
        return (
            f"mariadb {conn} -e 'DROP DATABASE IF EXISTS `{scratch}`; CREATE DATABASE `{scratch}`' && "
            f"zstd -q -dc {load_from} | mariadb {conn} {scratch}"
        )

    try:
        for r in range(runs):
            bench.log(f"{engine.display} round {r + 1}/{runs}")
            if "backup" in groups:
                bench.pair(
                    engine,
                    r,
                    [
                        ("backup", bench.ours(engine, "backup", "backup", "-v", "0", rss_key="backup")),
                        ("mariadb-dump --single-transaction", sh_action(f"{dump} > {plain}", env)),
                        (
                            "mariadb-dump | zstd -3 -T2 | sha256sum",
                            sh_action(f"{dump} | zstd -q -3 -T2 | tee {zdump} | sha256sum >/dev/null", env),
                        ),
                        (
                            "dbbackup",
                            sh_action(
                                f"rm -rf {dbb_dir}/*; {shlex.quote(PYTHON)} bench/dbbackup_tool.py --noinput -q -O {dbb_dir}/out.sql",
                                engine.manage_env(dbb_dir),
                            ),
                        ),
                    ],
                    [
                        ("backup", "mariadb-dump | zstd -3 -T2 | sha256sum"),
                        ("backup", "mariadb-dump --single-transaction"),
                        ("backup", "dbbackup"),
                    ],
                )
                clear(ours_dir, keep=newest(ours_dir))
            if "full" in groups:
                bench.pair(
                    engine,
                    r,
                    [
                        (
                            "backup --verify full",
                            bench.ours(
                                engine,
                                "backup --verify full",
                                "backup",
                                "--verify",
                                "full",
                                "-v",
                                "0",
                                rss_key="backup --verify full",
                            ),
                        ),
                        (
                            "dump | zstd + load into scratch",
                            sh_action(
                                f"{dump} | zstd -q -3 -T2 -f -o {zdump} && {into_scratch(zdump)} && "
                                f"mariadb {conn} -e 'DROP DATABASE `{scratch}`'",
                                env,
                            ),
                        ),
                    ],
                    [("backup --verify full", "dump | zstd + load into scratch")],
                )
                clear(ours_dir, keep=newest(ours_dir))
            if "restore" in groups:
                source = newest(ours_dir)
                if source is None:
                    engine.manage("backup", "-v", "0")
                    source = newest(ours_dir)
                if not (tools_dir / "dump.sql.zst").exists():
                    quiet(f"{dump} | zstd -q -3 -T2 -f -o {zdump}", env)
                safety = shlex.quote(str(tools_dir / "safety.sql.zst"))
                bench.pair(
                    engine,
                    r,
                    [
                        (
                            "restore",
                            bench.ours(
                                engine, "restore", "restore", str(source), "--noinput", "-v", "0", rss_key="restore"
                            )
                            if source
                            else (lambda: Outcome(0, 0, 1, stderr="no backup of ours to restore")),
                        ),
                        (
                            "safety dump | zstd + client loads the dump",
                            sh_action(f"{dump} | zstd -q -3 -T2 -f -o {safety} && {into_scratch(zdump)}", env),
                        ),
                    ],
                    [("restore", "safety dump | zstd + client loads the dump")],
                )
                with contextlib.suppress(Exception):
                    engine.drop_database(scratch)
                clear(ours_dir, keep=source)
            if "validate" in groups:
                sql_file = shlex.quote(str(engine.workdir / "validate.sql"))
                bench.pair(
                    engine,
                    r,
                    [
                        ("validate", bench.ours(engine, "validate", "validate", "-v", "0", rss_key="validate")),
                        ("validate's SQL in mariadb", sh_action(f"mariadb {conn} {db} < {sql_file} >/dev/null", env)),
                    ],
                    [("validate", "validate's SQL in mariadb")],
                )
            if "stats" in groups:
                bench.measure(
                    engine, "dbstats (command)", bench.ours(engine, "dbstats", "dbstats", "--json", rss_key="dbstats")
                )
    finally:
        with contextlib.suppress(Exception):
            engine.drop_database(scratch)


SUITES = {"sqlite": sqlite_suite, "postgresql": pg_suite, "mariadb": mariadb_suite}
GROUPS = ("backup", "full", "restore", "validate", "stats", "health", "generate", "memory")


# --------------------------------------------------------------------------- targets


@dataclass
class Target:
    engine: str
    label: str
    value: float | None
    limit: str
    met: bool | None
    detail: str = ""
    unit: str = "x"


def ratio_of(results: Results, engine: str, ours: str, theirs: str) -> float | None:
    values = results.ratios.get((engine, ours, theirs))
    return statistics.median(values) if values else None


def targets(results: Results, engines: list[str]) -> list[Target]:
    out: list[Target] = []

    def ratio_target(engine, label, ours, theirs, limit, aim=None, strict_below=False):
        value = ratio_of(results, engine, ours, theirs)
        missing = [i for i in (ours, theirs) if (engine, i) in results.failures]
        if value is None:
            why = "; ".join(f"{i}: {results.failures[(engine, i)]}" for i in missing) or "not measured"
            out.append(Target(engine, label, None, f"<= {limit}", None, "not available (" + why + ")"))
            return
        met = value < limit if strict_below else value <= limit
        ours_s, theirs_s = results.median(engine, ours), results.median(engine, theirs)
        detail = f"{ours_s:.2f} s vs {theirs_s:.2f} s"
        if results.startup and ours_s > results.startup:
            detail += f"; {(ours_s - results.startup) / theirs_s:.2f}x without Python start-up"
        if aim is not None:
            detail += f"; aim {aim}: {'reached' if value <= aim else 'not reached'}"
        out.append(Target(engine, label, value, ("< " if strict_below else "<= ") + f"{limit}x", met, detail))

    def seconds_target(engine, label, item, limit):
        value = results.median(engine, item)
        if value is None:
            why = results.failures.get((engine, item), "not measured")
            out.append(Target(engine, label, None, f"< {limit} s", None, f"not available ({why})", unit="s"))
            return
        out.append(
            Target(
                engine,
                label,
                value,
                f"< {limit} s",
                value < limit,
                f"median of {len(results.samples[(engine, item)])}",
                unit="s",
            )
        )

    for engine in engines:
        if engine == "sqlite":
            ratio_target(
                engine,
                "backup vs .backup + quick_check + sha256sum",
                "backup",
                ".backup + quick_check + sha256sum",
                1.3,
                aim=1.0,
            )
            ratio_target(
                engine,
                "backup --verify full vs .backup + integrity_check + sha256sum",
                "backup --verify full",
                ".backup + integrity_check + sha256sum",
                1.3,
            )
            ratio_target(
                engine,
                "backup vs dbbackup + quick_check",
                "backup",
                "dbbackup + quick_check",
                1.0,
                strict_below=True,
            )
            ratio_target(
                engine,
                "restore vs sha256sum + quick_check + .backup + .restore",
                "restore",
                "sha256sum + quick_check + .backup + .restore",
                1.3,
            )
            seconds_target(engine, "validate (command, wall)", "validate", 5.0)
            ratio_target(engine, "validate vs its SQL in sqlite3", "validate", "validate's SQL in sqlite3", 1.5)
            rate = results.median(engine, "generate_demo_data (rows/s)")
            why = results.failures.get((engine, "generate_demo_data (rows/s)"), "not measured")
            out.append(
                Target(
                    engine,
                    "generate_demo_data rows per second",
                    rate,
                    ">= 100000 rows/s",
                    None if rate is None else rate >= 100_000,
                    "110,000 rows into a fresh file, as the command reports it (no start-up)"
                    if rate is not None
                    else f"not available ({why})",
                    unit="rows/s",
                )
            )
        elif engine == "postgresql":
            ratio_target(engine, "backup vs pg_dump -Fc", "backup", "pg_dump -Fc", 0.6, aim=0.4)
            ratio_target(
                engine, "restore vs safety pg_dump + pg_restore", "restore", "safety pg_dump -Fc + pg_restore", 1.3
            )
            ratio_target(engine, "validate vs its SQL in psql", "validate", "validate's SQL in psql", 1.5)
        else:
            ratio_target(
                engine,
                "backup vs mariadb-dump | zstd -3 -T2 | sha256sum",
                "backup",
                "mariadb-dump | zstd -3 -T2 | sha256sum",
                1.3,
            )
            ratio_target(
                engine,
                "restore vs safety dump + client load",
                "restore",
                "safety dump | zstd + client loads the dump",
                1.3,
            )
            ratio_target(engine, "validate vs its SQL in mariadb", "validate", "validate's SQL in mariadb", 1.5)
        seconds_target(engine, "dbstats (in-process)", "dbstats (in-process)", 0.5)
        seconds_target(engine, "health page server time", "admin health page (server time)", 0.3)
        for command in ("backup", "restore", "validate"):
            keys = sorted(k for k in results.rss if k[0] == engine and k[1] == command)
            if not keys:
                out.append(
                    Target(
                        engine, f"peak RSS {command}", None, f"< {RSS_LIMIT_MB} MB", None, "not available", unit="MB"
                    )
                )
                continue
            peak = max(max(results.rss[k]) for k in keys)
            by_size = {k[2]: max(results.rss[k]) for k in keys}
            detail = ", ".join(f"{size:,} servers: {mb:.0f} MB" for size, mb in sorted(by_size.items()))
            out.append(
                Target(
                    engine, f"peak RSS {command}", peak, f"< {RSS_LIMIT_MB} MB", peak < RSS_LIMIT_MB, detail, unit="MB"
                )
            )
            if len(by_size) >= 2:
                sizes = sorted(by_size)
                small, big = by_size[sizes[0]], by_size[sizes[-1]]
                grows = big > small * RSS_GROWTH_FACTOR + RSS_GROWTH_SLACK_MB
                out.append(
                    Target(
                        engine,
                        f"peak RSS {command} flat with {sizes[-1] // sizes[0]}x the data",
                        big / small if small else None,
                        f"<= {RSS_GROWTH_FACTOR}x + {RSS_GROWTH_SLACK_MB} MB",
                        not grows,
                        f"{small:.0f} MB -> {big:.0f} MB",
                    )
                )
    return out


# --------------------------------------------------------------------------- report


def cell(text: str) -> str:
    """Text for a Markdown table cell (shell pipes would end the cell)."""
    return str(text).replace("|", "\\|")


def fmt(value: float | None, unit: str = "s") -> str:
    if value is None:
        return "n/a"
    if unit == "s":
        return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "rows/s":
        return f"{value:,.0f} rows/s"
    return f"{value:.0f} MB"


def machine(engines: list[Engine]) -> list[str]:
    lines = []
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "unknown"
    with contextlib.suppress(OSError):
        kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
        mem = f"{kb / 1024 / 1024:.1f} GiB"
    import sqlite3

    import django

    lines.append(f"- CPU: {os.cpu_count()} cores ({cpu}); memory {mem}; {platform.platform()}")
    lines.append(
        f"- Python {platform.python_version()}, Django {django.get_version()}, Python's SQLite {sqlite3.sqlite_version}"
    )
    versions = [e.version() for e in engines]
    for tool in ("pg_dump --version", "mariadb-dump --version", "zstd --version"):
        with contextlib.suppress(Exception):
            versions.append(quiet(tool).strip().splitlines()[0])
    lines.append("- " + "; ".join(versions))
    with contextlib.suppress(Exception):
        lines.append("- code: commit " + quiet(f"git -C {shlex.quote(str(ROOT))} rev-parse --short HEAD").strip())
    with contextlib.suppress(OSError):
        lines.append(f"- load average at the end: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    return lines


def report(args, engines: list[Engine], results: Results, tgs: list[Target], started: float) -> str:
    out = []
    out.append(
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {args.runs} runs each, medians; "
        f"{int(BASE_SERVERS * args.scale):,} servers, {int(BASE_USERS * args.scale):,} users, "
        f"{int(BASE_CONFIGS * args.scale):,} configuration entries; total bench time "
        f"{(time.perf_counter() - started) / 60:.0f} min."
    )
    out.append("")
    out.append("Reproduce: `" + args.reproduce + "`")
    out.append("")
    out += machine(engines)
    out.append("")
    out.append("### Targets")
    out.append("")
    out.append("| engine | target | measured | limit | result | detail |")
    out.append("|---|---|---|---|---|---|")
    for t in tgs:
        unit = t.unit
        result = "not available" if t.met is None else ("met" if t.met else "**missed**")
        display = next(e.display for e in engines if e.name == t.engine)
        out.append(f"| {display} | {cell(t.label)} | {fmt(t.value, unit)} | {t.limit} | {result} | {cell(t.detail)} |")
    for engine in engines:
        out.append("")
        out.append(f"### {engine.display}: all timings")
        out.append("")
        out.append("| what | median | min | max | runs |")
        out.append("|---|---|---|---|---|")
        items = [k[1] for k in results.samples if k[0] == engine.name]
        for item in items:
            values = results.samples[(engine.name, item)]
            unit = "rows/s" if item.endswith("(rows/s)") else "s"
            out.append(
                f"| {cell(item)} | {fmt(statistics.median(values), unit)} | {fmt(min(values), unit)} "
                f"| {fmt(max(values), unit)} | {len(values)} |"
            )
        for (name, item), why in results.failures.items():
            if name == engine.name:
                out.append(f"| {cell(item)} | not available: {cell(why)} | | | |")
        ratio_rows = [(k, v) for k, v in results.ratios.items() if k[0] == engine.name]
        if ratio_rows:
            out.append("")
            out.append("| ratio (same round) | median | per round |")
            out.append("|---|---|---|")
            for (_, ours, theirs), values in ratio_rows:
                per_round = ", ".join(f"{v:.2f}" for v in values)
                out.append(f"| {cell(ours)} / {cell(theirs)} | {statistics.median(values):.2f} | {per_round} |")
        rss_rows = sorted((k, v) for k, v in results.rss.items() if k[0] == engine.name)
        if rss_rows:
            out.append("")
            out.append("| peak RSS | servers | MB (max of runs) |")
            out.append("|---|---|---|")
            for (_, command, size), values in rss_rows:
                out.append(f"| {cell(command)} | {size:,} | {max(values):.0f} |")
    if results.notes:
        out.append("")
        out.append("Notes from this run:")
        out.append("")
        out += [f"- {n}" for n in results.notes]
    return "\n".join(out) + "\n"


def write_benchmarks(path: Path, body: str) -> None:
    block = f"{BEGIN}\n{body}{END}"
    if path.exists():
        text = path.read_text()
        if BEGIN in text and END in text:
            text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END) :]
        else:
            text = text.rstrip() + "\n\n" + block + "\n"
    else:
        text = "# Benchmarks\n\n" + block + "\n"
    path.write_text(text)


# --------------------------------------------------------------------------- main


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--engines", default="sqlite,postgresql,mariadb", help="comma-separated subset (default: all reachable)"
    )
    parser.add_argument("--runs", type=int, default=3, help="runs of each measurement (default 3)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies 100k users / 1M servers / 10k configs")
    parser.add_argument(
        "--only",
        default=",".join(GROUPS),
        help=f"comma-separated groups among {', '.join(GROUPS)} (default: all)",
    )
    parser.add_argument(
        "--memory-scale",
        type=float,
        default=None,
        help="the smaller database of the memory check, as a scale (default: half of --scale)",
    )
    parser.add_argument("--memory-engines", default=None, help="engines for the memory check (default: --engines)")
    parser.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "mcmanager-bench"), help="work directory")
    parser.add_argument(
        "--pg-url", default=os.environ.get("MCMANAGER_BENCH_PG_URL", "postgres://root@127.0.0.1:5432/postgres")
    )
    parser.add_argument(
        "--mariadb-url", default=os.environ.get("MCMANAGER_BENCH_MARIADB_URL", "mysql://root@127.0.0.1:3306/mysql")
    )
    parser.add_argument(
        "--db-prefix", default="mcm_bench", help="bench databases are <prefix>_<size> (default mcm_bench)"
    )
    parser.add_argument("--output", default=str(ROOT / "BENCHMARKS.md"))
    parser.add_argument("--no-write", action="store_true", help="print the report, do not write BENCHMARKS.md")
    args = parser.parse_args(argv)
    # Where files go is not part of the result: the reproduce line leaves --dir/--output out.
    shown, skip = [], False
    for arg in argv if argv is not None else sys.argv[1:]:
        if skip:
            skip = False
            continue
        if arg in ("--dir", "--output"):
            skip = True
            continue
        if arg.startswith(("--dir=", "--output=")):
            continue
        shown.append(arg)
    args.reproduce = "make bench" + (f' ARGS="{" ".join(shlex.quote(a) for a in shown)}"' if shown else "")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    groups = {g.strip() for g in args.only.split(",") if g.strip()}
    base_env = dict(os.environ)
    base_env.setdefault("DJANGO_SECRET_KEY", secrets.token_urlsafe(50))
    base_env.pop("DJANGO_DEBUG", None)
    base_env["DJANGO_SETTINGS_MODULE"] = "mcmanager.settings"
    # The health probe's test client calls itself "testserver".
    base_env["DJANGO_ALLOWED_HOSTS"] = "localhost,127.0.0.1,testserver"
    users, servers, configs = (int(n * args.scale) for n in (BASE_USERS, BASE_SERVERS, BASE_CONFIGS))
    results = Results()
    workdir = Path(args.dir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)

    engines: list[Engine] = []
    for name in [e.strip() for e in args.engines.split(",") if e.strip()]:
        if name not in SUITES:
            print(f"unknown engine {name!r} (sqlite, postgresql, mariadb)", file=sys.stderr)
            return 2
        engine = Engine(name, engine_url(name, args, servers), workdir / name, base_env)
        why = engine.reachable()
        if why:
            log(f"{engine.display}: not reachable, skipped ({why})")
            results.notes.append(f"{engine.display} was not reachable: {why}")
            continue
        engines.append(engine)

    # Python + Django start-up: part of every command's wall time below.
    startup = [
        run_timed(
            [
                PYTHON,
                "-c",
                "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'mcmanager.settings'); django.setup()",
            ],
            base_env | {"DATABASE_URL": "sqlite:///:memory:"},
        )
        for _ in range(3)
    ]
    results.startup = statistics.median(o.seconds for o in startup)
    results.notes.append(
        f"Python + Django start-up (included in every command's wall time): {results.startup * 1000:.0f} ms median"
    )

    for engine in engines:
        engine.workdir.mkdir(parents=True, exist_ok=True)
        args.current_servers = servers
        try:
            built = build(engine, users, servers, configs, log)
        except Exception as exc:  # noqa: BLE001
            log(f"{engine.display}: could not build the bench database: {exc}")
            results.notes.append(f"{engine.display}: could not build the bench database: {exc}")
            continue
        if built is not None:
            results.notes.append(f"{engine.display}: bench database built in {built:.0f} s")
        bench = Bench(args, results, log)
        if "validate" in groups:
            try:
                validate_sql_file(engine)
            except Exception as exc:  # noqa: BLE001
                results.failures[
                    (
                        engine.name,
                        f"validate's SQL in {'sqlite3' if engine.name == 'sqlite' else ('psql' if engine.name == 'postgresql' else 'mariadb')}",
                    )
                ] = str(exc)[:200]
        SUITES[engine.name](bench, engine, args.runs, groups)
        if groups & {"stats", "health"}:
            # A directory of its own: the probe fills it with a year of backups.
            year = engine.workdir / "year-of-backups"
            shutil.rmtree(year, ignore_errors=True)
            try:
                probe = run_timed([PYTHON, "-c", PROBE_SCRIPT, str(max(args.runs, 3))], engine.manage_env(year))
            finally:
                shutil.rmtree(year, ignore_errors=True)
            if probe.ok:
                data = json.loads(probe.stdout.strip().splitlines()[-1])
                for v in data["dbstats"]:
                    results.add(engine.name, "dbstats (in-process)", v)
                if data.get("health_status") == 200:
                    for v in data["health_page"]:
                        results.add(engine.name, "admin health page (server time)", v)
                    results.add(engine.name, "admin health page, first view (cold)", data["health_first"])
                else:
                    results.failures[(engine.name, "admin health page (server time)")] = (
                        f"HTTP {data.get('health_status')}"
                    )
            else:
                for item in ("dbstats (in-process)", "admin health page (server time)"):
                    results.failures[(engine.name, item)] = probe.first_error()
        log(f"{engine.display}: done")

    # Memory: the same commands on a database half as large (peak RSS must not grow).
    memory_engines = {e.strip() for e in (args.memory_engines or args.engines).split(",")}
    if "memory" in groups:
        small_scale = args.memory_scale if args.memory_scale is not None else args.scale / 2
        su, ss, sc = (int(n * small_scale) for n in (BASE_USERS, BASE_SERVERS, BASE_CONFIGS))
        for engine in engines:
            if engine.name not in memory_engines:
                continue
            small = Engine(engine.name, engine_url(engine.name, args, ss), workdir / f"{engine.name}-small", base_env)
            small.workdir.mkdir(parents=True, exist_ok=True)
            args.current_servers = ss
            try:
                build(small, su, ss, sc, log)
            except Exception as exc:  # noqa: BLE001
                results.notes.append(
                    f"{engine.display}: memory check skipped, could not build the small database: {exc}"
                )
                continue
            bench = Bench(args, results, log)
            clear(small.workdir / "backups")
            for key, cmd in (
                ("backup", ["backup", "-v", "0"]),
                ("backup --verify full", ["backup", "--verify", "full", "-v", "0"]),
                ("validate", ["validate", "-v", "0"]),
            ):
                bench.measure(small, f"{key} (small db)", bench.ours(small, key, *cmd, rss_key=key))
            source = newest(small.workdir / "backups")
            if source:
                bench.measure(
                    small,
                    "restore (small db)",
                    bench.ours(small, "restore", "restore", str(source), "--noinput", "-v", "0", rss_key="restore"),
                )
            clear(small.workdir / "backups")
            # The small database's timings are not part of the report's tables.
            for key in [k for k in results.samples if k[1].endswith("(small db)")]:
                del results.samples[key]

    tgs = targets(results, [e.name for e in engines])
    body = report(args, engines, results, tgs, started)
    print()
    print(body)
    if not args.no_write:
        write_benchmarks(Path(args.output), body)
        log(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
