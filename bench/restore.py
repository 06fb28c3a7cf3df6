"""Restore against the engine's own fastest tools doing the same steps (issue 16, part 4).

For each engine (SQLite always; PostgreSQL and MariaDB when they answer) it builds, or
reuses when the counts are right, a database of 100,000 users, 1,000,000 servers and
10,000 configuration entries times ``--scale``, takes one backup of it with our
``backup`` command, then, ``--runs`` times (default 3), alternating which goes first:

- ours: ``python manage.py restore BACKUP --noinput -v 2``, wall time, each progress line
  timestamped as it arrives, so each phase is visible (Python start-up, file checks, the
  load into the scratch, the checks of the loaded scratch, the safety backup, the swap,
  the validation of the restored database);
- the reference: the same two jobs with the engine's own tools: the safety copy of the
  live database through the engine's fastest path, then the load of the same backup file
  into a new database (one table row per engine below, ``SUITES``); for SQLite also the
  proof the other engines' loads give by themselves (``prove``, see below).

The ratio is ours / (safety copy + load + proof), taken per round; the median of the rounds
is reported, with the median of every phase, and for SQLite the ratio to the bare copies too.

Why SQLite's reference has a third step: pg_restore and the mariadb client build every
index from the rows and check every constraint as they load, so a database they loaded
is sound by construction. SQLite's load is a byte copy that proves nothing of what it
copied (a file whose index disagrees with its rows loads just as well), and a restore
must leave a live database that passes the engine's full integrity check (issue 14). The
same guarantee from SQLite's own tools is the copy followed by ``sqlite3 -readonly new
'PRAGMA integrity_check'`` (read-only: 4.1 s against 6.3 s without the flag at 1,000,000
servers here, so the reference takes the faster). The machine is shared: absolute seconds move
with its load, the ratios much less.

    python bench/restore.py                          # all reachable engines, 1,000,000 servers (the issue's size)
    python bench/restore.py --engines sqlite --scale 0.3
    python bench/restore.py --scale 0.1 --runs 1     # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
BASE_USERS, BASE_SERVERS, BASE_CONFIGS = 100_000, 1_000_000, 10_000
SEED = 1


# --------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Suite:
    """One engine: how to reach it and the reference's two steps, as shell command templates.

    Templates are formatted with ``live`` (the bench database: a file path for SQLite, a
    name otherwise), ``new`` (the reference's new database), ``backup`` (our backup file,
    zstd-compressed), ``safety`` (where the reference's safety copy goes), ``work`` (a
    scratch directory) and ``conn`` (the client's connection arguments), all shell-quoted.
    """

    display: str
    url_option: str | None  # the argparse option holding the server URL (None: SQLite, a file)
    sql: str  # run {statement} against {db}
    create: str  # create the database {db}
    drop: str  # drop the database {db}
    settle: str  # after the build: statistics, WAL folded in
    safety: str  # the reference's safety copy of {live} into {safety}
    load: str  # the reference's load of {backup} into {new} (created by this command)
    safety_name: str  # the suffix of the safety copy
    prove: str = ""  # what makes {new} as proven as the other engines' loads make theirs (SQLite)


SUITES: dict[str, Suite] = {
    "sqlite": Suite(
        display="SQLite",
        url_option=None,
        sql="sqlite3 {db} {statement}",
        create="true",
        drop="rm -f {db} {db}-wal {db}-shm {db}-journal",
        settle="sqlite3 {db} 'PRAGMA wal_checkpoint(TRUNCATE);' >/dev/null",
        safety="sqlite3 {live} '.backup {work}/safety.sqlite3' && zstd -q -3 -T2 --rm -f {work}/safety.sqlite3 -o {safety}",
        load="zstd -q -dc {backup} > {new}",
        safety_name="sqlite3.zst",
        prove="test \"$(sqlite3 -readonly {new} 'PRAGMA integrity_check')\" = ok",
    ),
    "postgresql": Suite(
        display="PostgreSQL",
        url_option="pg_url",
        sql="psql -X -q -At {conn} -d {db} -c {statement}",
        create="createdb {conn} {db}",
        drop="dropdb {conn} --if-exists --force {db}",
        settle="psql -X -q {conn} -d {db} -c 'VACUUM ANALYZE'",
        safety="pg_dump {conn} -Fc -Z0 -d {live} | zstd -q -3 -T2 -f -o {safety}",
        load="createdb {conn} {new} && zstd -q -dc {backup} | pg_restore {conn} --no-owner -d {new}",
        safety_name="pgdump.zst",
    ),
    "mariadb": Suite(
        display="MariaDB",
        url_option="mariadb_url",
        sql="mariadb {conn} -N -B {db} -e {statement}",
        create="mariadb {conn} -e 'CREATE DATABASE `'{db}'` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci'",
        drop="mariadb {conn} -e 'DROP DATABASE IF EXISTS `'{db}'`'",
        settle="mariadb {conn} {db} -e 'ANALYZE TABLE accounts_user, servers_server, servers_configuration' >/dev/null",
        safety="mariadb-dump {conn} --single-transaction {live} | zstd -q -3 -T2 -f -o {safety}",
        load=(
            "mariadb {conn} -e 'CREATE DATABASE `'{new}'` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci' && "
            "zstd -q -dc {backup} | mariadb {conn} {new}"
        ),
        safety_name="sql.zst",
    ),
}

# Our restore's progress lines (restore -v 2 prints "restore: <message>") that start a phase.
# A phase lasts until the next phase's line (or the end of the command); the safety backup,
# when it runs alongside the load, has a line of its own when it is done.
PHASES = (
    ("file checks", "checking the file"),
    ("load into scratch", "loading into a scratch database"),
    ("checks of the scratch", "checking the scratch database"),
    ("integrity check", "waiting for the integrity check"),
    ("safety backup", "taking a safety backup of the live database"),
    ("waiting for the safety backup", "waiting for the safety backup"),
    ("migrations", "applying "),
    ("log carried", "carrying the operations log over"),
    ("validation", "validating the scratch database"),
    ("swap", "swapping"),
    ("after swap", "swapped"),
    ("validation", "validating the restored database"),  # on SQLite: storing what ran during the swap
)
SAFETY_DONE = "safety backup taken"
SHOWN = (
    "start-up",
    "file checks",
    "load into scratch",
    "checks of the scratch",
    "integrity check",
    "safety backup",
    "waiting for the safety backup",
    "log carried",
    "swap",
    "validation",
    "validate alone",
)


# --------------------------------------------------------------------------- processes


def sh(cmd: str, env: dict) -> float:
    """Run a shell command that must succeed; its wall time."""
    started = time.perf_counter()
    done = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{cmd[:120]!r} failed: {(done.stderr or done.stdout).strip()[-300:]}")
    return seconds


def manage_timed(args: list[str], env: dict) -> tuple[float, list[tuple[float, str]], str]:
    """``manage.py ARGS``: wall time, its stdout lines each with the time it arrived, stderr."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [PYTHON, str(ROOT / "manage.py"), *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
    )
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.append(proc.stderr.read()))
    reader.start()
    lines = [(time.perf_counter() - started, line.rstrip("\n")) for line in proc.stdout]
    rc = proc.wait()
    seconds = time.perf_counter() - started
    reader.join()
    if rc != 0:
        raise RuntimeError(f"manage.py {' '.join(args[:2])} failed (exit {rc}): {''.join(err).strip()[-300:]}")
    return seconds, lines, "".join(err)


def phases_of(lines: list[tuple[float, str]], total: float) -> dict[str, float]:
    """Seconds per phase from restore's timestamped progress lines.

    The phases follow one another, except the safety backup when it runs on its own thread
    alongside the load: it lasts from its line to its "taken" line and does not end the load.
    """
    marks: list[tuple[float, str]] = []
    safety_start = safety_done = None
    for at, line in lines:
        message = line.removeprefix("restore: ")
        if message.startswith(SAFETY_DONE):
            safety_done = at
            continue
        for name, prefix in PHASES:
            if message.startswith(prefix):
                if name == "safety backup" and "alongside" in message:
                    safety_start = at
                else:
                    marks.append((at, name))
                break
    phases: dict[str, float] = {"start-up": marks[0][0] if marks else total}
    for i, (at, name) in enumerate(marks):
        end = marks[i + 1][0] if i + 1 < len(marks) else total
        phases[name] = phases.get(name, 0.0) + end - at
    if safety_start is not None:
        phases["safety backup"] = (safety_done if safety_done is not None else total) - safety_start
    # The swap's figure includes the integrity check and row counts right after it.
    phases["swap"] = phases.get("swap", 0.0) + phases.pop("after swap", 0.0)
    return phases


# --------------------------------------------------------------------------- one engine


@dataclass
class Target:
    name: str
    suite: Suite
    url: str
    workdir: Path
    env: dict
    samples: dict[str, list[float]] = field(default_factory=dict)
    ratios: list[float] = field(default_factory=list)
    bare_ratios: list[float] = field(default_factory=list)  # ours / (safety copy + load), without the proof
    error: str = ""

    def add(self, item: str, seconds: float) -> None:
        self.samples.setdefault(item, []).append(seconds)

    def median(self, item: str) -> float | None:
        values = self.samples.get(item)
        return statistics.median(values) if values else None

    @property
    def live(self) -> str:
        u = urlparse(self.url)
        return u.path if self.name == "sqlite" else u.path.lstrip("/")

    @property
    def conn(self) -> str:
        u = urlparse(self.url)
        if self.name == "postgresql":
            return f"-h {u.hostname or '127.0.0.1'} -p {u.port or 5432} -U {shlex.quote(u.username or 'root')}"
        if self.name == "mariadb":
            return f"-h {u.hostname or '127.0.0.1'} -P {u.port or 3306} -u {shlex.quote(u.username or 'root')}"
        return ""

    @property
    def client_env(self) -> dict:
        env = dict(self.env)
        password = urlparse(self.url).password
        if password:
            env["PGPASSWORD" if self.name == "postgresql" else "MYSQL_PWD"] = password
        return env

    def manage_env(self) -> dict:
        return {**self.env, "DATABASE_URL": self.url, "MCMANAGER_BACKUP_DIR": str(self.workdir / "backups")}

    def cmd(self, template: str, **values: str) -> str:
        quoted = {k: shlex.quote(v) for k, v in values.items()}
        return template.format(conn=self.conn, work=shlex.quote(str(self.workdir)), **quoted)

    def counts(self) -> tuple[int, ...] | None:
        statement = (
            "SELECT (SELECT COUNT(*) FROM accounts_user), (SELECT COUNT(*) FROM servers_server), "
            "(SELECT COUNT(*) FROM servers_configuration)"
        )
        done = subprocess.run(
            ["bash", "-c", self.cmd(self.suite.sql, db=self.live, statement=statement)],
            env=self.client_env,
            capture_output=True,
            text=True,
        )
        numbers = [int(x) for x in re.findall(r"\d+", done.stdout)] if done.returncode == 0 else []
        return tuple(numbers[:3]) if len(numbers) >= 3 else None


def build(t: Target, users: int, servers: int, configs: int, log: Callable[[str], None]) -> None:
    """Reuse the bench database when its counts are right; else create it and fill it."""
    if t.counts() == (users, servers, configs):
        log(f"{t.suite.display}: reusing {t.live}")
        return
    log(f"{t.suite.display}: building {users:,} users, {servers:,} servers, {configs:,} configs")
    sh(t.cmd(t.suite.drop, db=t.live), t.client_env)
    sh(t.cmd(t.suite.create, db=t.live), t.client_env)
    env = t.manage_env()
    manage_timed(["migrate", "--no-input", "-v", "0", "--no-backup"], env)
    counts = ["--users", str(users), "--servers", str(servers), "--configs", str(configs)]
    manage_timed(["generate_demo_data", *counts, "--seed", str(SEED)], env)
    sh(t.cmd(t.suite.settle, db=t.live), t.client_env)


def clear_backups(directory: Path, keep: Path) -> None:
    """Remove every backup but ``keep`` (and its manifest): the safety backups of earlier rounds."""
    for entry in directory.glob("db_backup_*"):
        if not entry.name.startswith(keep.name):
            entry.unlink(missing_ok=True)


def run_engine(t: Target, args, log: Callable[[str], None]) -> None:
    users, servers, configs = (int(n * args.scale) for n in (BASE_USERS, BASE_SERVERS, BASE_CONFIGS))
    t.workdir.mkdir(parents=True, exist_ok=True)
    build(t, users, servers, configs, log)
    backups = t.workdir / "backups"
    shutil.rmtree(backups, ignore_errors=True)
    manage_timed(["backup", "-v", "0"], t.manage_env())
    source = max(
        (p for p in backups.glob("db_backup_*") if not p.name.endswith(".json")), key=lambda p: p.stat().st_mtime
    )
    log(f"{t.suite.display}: our backup {source.name} ({source.stat().st_size / 2**20:.1f} MiB)")
    new = str(t.workdir / "reference.sqlite3") if t.name == "sqlite" else f"{t.live[:24]}_reference_{os.getpid()}"
    safety = str(t.workdir / f"safety.{t.suite.safety_name}")

    def ours() -> float:
        seconds, lines, _ = manage_timed(["restore", str(source), "--noinput", "-v", "2"], t.manage_env())
        for name, value in phases_of(lines, seconds).items():
            t.add(name, value)
        t.add("restore", seconds)
        clear_backups(backups, source)
        # The same validation alone, right after: what the restore's own validation should cost.
        alone, _, _ = manage_timed(["validate", "-v", "0"], t.manage_env())
        t.add("validate alone", alone - phases_of(lines, seconds)["start-up"])
        return seconds

    def reference() -> float:
        sh(t.cmd(t.suite.drop, db=new), t.client_env)
        copy = sh(t.cmd(t.suite.safety, live=t.live, safety=safety), t.client_env)
        load = sh(t.cmd(t.suite.load, backup=str(source), new=new), t.client_env)
        prove = sh(t.cmd(t.suite.prove, new=new), t.client_env) if t.suite.prove else 0.0
        t.add("reference: safety copy", copy)
        t.add("reference: load", load)
        t.add("reference: proof", prove)
        t.add("reference", copy + load + prove)
        t.add("reference: copy + load", copy + load)
        sh(t.cmd(t.suite.drop, db=new), t.client_env)
        Path(safety).unlink(missing_ok=True)
        return copy + load + prove

    try:
        for r in range(args.runs):
            order = (ours, reference) if r % 2 == 0 else (reference, ours)
            got = {f.__name__: f() for f in order}
            t.ratios.append(got["ours"] / got["reference"])
            t.bare_ratios.append(got["ours"] / t.samples["reference: copy + load"][-1])
            log(
                f"{t.suite.display} round {r + 1}/{args.runs}: ours {got['ours']:.2f} s, "
                f"reference {got['reference']:.2f} s, ratio {t.ratios[-1]:.2f}"
            )
    finally:
        subprocess.run(["bash", "-c", t.cmd(t.suite.drop, db=new)], env=t.client_env, capture_output=True)


# --------------------------------------------------------------------------- report


def fmt(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.2f}"


def report(targets: list[Target], args) -> str:
    users, servers = int(BASE_USERS * args.scale), int(BASE_SERVERS * args.scale)
    lines = [
        f"Restore against the engine's tools: {users:,} users, {servers:,} servers (--scale {args.scale}), "
        f"medians of {args.runs}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        "| engine | ours s | reference s (safety copy + load + proof) | ratio | ratio to copy + load alone | "
        + " | ".join(SHOWN)
        + " |",
        "|---|---|---|---|---|" + "---|" * len(SHOWN),
    ]
    for t in targets:
        if t.error:
            lines.append(f"| {t.suite.display} | failed: {t.error[:120]} |")
            continue
        ratio = statistics.median(t.ratios) if t.ratios else None
        reference = (
            f"{fmt(t.median('reference'))} ({fmt(t.median('reference: safety copy'))} + "
            f"{fmt(t.median('reference: load'))}"
            + (f" + {fmt(t.median('reference: proof'))}" if t.suite.prove else "")
            + ")"
        )
        bare = f"{statistics.median(t.bare_ratios):.2f}x" if t.suite.prove and t.bare_ratios else "same"
        lines.append(
            f"| {t.suite.display} | {fmt(t.median('restore'))} | {reference} | "
            f"{'-' if ratio is None else f'{ratio:.2f}x'} | {bare} | "
            + " | ".join(fmt(t.median(p)) for p in SHOWN)
            + " |"
        )
    lines += [
        "",
        "The proof (SQLite only) is `sqlite3 -readonly new 'PRAGMA integrity_check'` after the byte copy: what",
        "pg_restore and the mariadb client prove by building every index from the rows as they load.",
        "Phases of ours (seconds, medians): start-up is Python and Django's until the first progress line;",
        "the safety backup runs alongside the load (its figure overlaps the load's); waiting for the",
        "safety backup is the part of it the load did not cover; the load into the scratch includes",
        "SQLite's integrity check of the file (run during the swap instead when the file had to be",
        "rebuilt); the swap includes the validation of what is swapped in (SQLite) and the row counts",
        "of the restored database; validate alone is `manage.py validate` run",
        "right after the restore, less the restore's start-up (not part of ours). Ratios per round: "
        + "; ".join(f"{t.suite.display} {', '.join(f'{r:.2f}' for r in t.ratios)}" for t in targets if t.ratios),
    ]
    return "\n".join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--engines", default=",".join(SUITES), help=f"comma-separated subset of {', '.join(SUITES)}")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="1.0 = 100,000 users / 1,000,000 servers (the default)"
    )
    parser.add_argument("--runs", type=int, default=3, help="rounds, ours and the reference in each (default 3)")
    parser.add_argument(
        "--dir", default=os.path.join(tempfile.gettempdir(), "mcmanager-bench-restore"), help="work directory"
    )
    parser.add_argument(
        "--pg-url", default=os.environ.get("MCMANAGER_BENCH_PG_URL", "postgres://root@127.0.0.1:5432/postgres")
    )
    parser.add_argument(
        "--mariadb-url", default=os.environ.get("MCMANAGER_BENCH_MARIADB_URL", "mysql://root@127.0.0.1:3306/mysql")
    )
    parser.add_argument("--db-prefix", default="mcm_rbench", help="bench databases are <prefix>_<size>")
    parser.add_argument("--json", action="store_true", help="also print every sample as JSON")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)

    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    env = dict(os.environ)
    env.setdefault("DJANGO_SECRET_KEY", secrets.token_urlsafe(50))
    env.pop("DJANGO_DEBUG", None)
    env["DJANGO_SETTINGS_MODULE"] = "mcmanager.settings"
    servers = int(BASE_SERVERS * args.scale)
    tag = f"{servers // 1000}k" if servers >= 1000 else str(servers)
    workdir = Path(args.dir).resolve()
    targets = []
    for name in [e.strip() for e in args.engines.split(",") if e.strip()]:
        if name not in SUITES:
            print(f"unknown engine {name!r} ({', '.join(SUITES)})", file=sys.stderr)
            return 2
        suite = SUITES[name]
        if suite.url_option is None:
            url = f"sqlite:///{workdir / name / f'bench_{tag}.sqlite3'}"
        else:
            url = urlparse(getattr(args, suite.url_option))._replace(path=f"/{args.db_prefix}_{tag}").geturl()
        t = Target(name, suite, url, workdir / name, env)
        if name != "sqlite":
            reach = subprocess.run(
                ["bash", "-c", t.cmd(suite.sql, db=urlparse(getattr(args, suite.url_option)).path.lstrip("/"),
                                     statement="SELECT 1")],
                env=t.client_env, capture_output=True, text=True,
            )  # fmt: skip
            if reach.returncode != 0:
                log(f"{suite.display}: not reachable, skipped ({reach.stderr.strip()[-200:]})")
                continue
        targets.append(t)
    for t in targets:
        try:
            run_engine(t, args, log)
        except Exception as exc:  # noqa: BLE001 (one engine failing is a result; the others still run)
            t.error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            log(f"{t.suite.display}: FAILED {t.error}")
    print()
    print(report(targets, args))
    if args.json:
        print(json.dumps({t.name: {"samples": t.samples, "ratios": t.ratios} for t in targets}, indent=1))
    return 0 if all(not t.error for t in targets) else 1


if __name__ == "__main__":
    sys.exit(main())
