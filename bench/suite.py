"""The one suite of ``make bench``: each group of our commands against the engine's own tools.

Written once for every engine; what differs per engine (which tools, which files,
which targets) is its table in ``bench/tools.py``. Restore is not here: it is measured
by ``bench/restore.py``.
"""

import json
import re
import time
from collections.abc import Callable

from .databases import BenchDatabase
from .harness import Bench, clear, newest

# The bench's full size; --scale multiplies it.
BASE_USERS, BASE_SERVERS, BASE_CONFIGS = 100_000, 1_000_000, 10_000
SEED = 1


def counts(db: BenchDatabase) -> tuple[int, int, int] | None:
    try:
        out = db.sql(
            "SELECT (SELECT COUNT(*) FROM accounts_user), (SELECT COUNT(*) FROM servers_server), "
            "(SELECT COUNT(*) FROM servers_configuration)"
        )
    except Exception:  # noqa: BLE001 (missing database or tables: build it)
        return None
    numbers = [int(x) for x in re.findall(r"\d+", out)]
    return tuple(numbers[:3]) if len(numbers) >= 3 else None


def build(db: BenchDatabase, users: int, servers: int, configs: int, log: Callable[[str], None]) -> float | None:
    """Reuse the bench database when its counts are right; else (re)create it. Returns build seconds."""
    have = counts(db)
    if have == (users, servers, configs):
        log(f"{db.display}: reusing {db.dbname} ({have[0]:,} users, {have[1]:,} servers, {have[2]:,} configs)")
        return None
    log(f"{db.display}: building {users:,} users, {servers:,} servers, {configs:,} configs (had {have})")
    db.recreate()
    started = time.perf_counter()
    migrate = db.manage("migrate", "--no-input", "-v", "0", "--no-backup")
    if not migrate.ok:
        raise RuntimeError(f"migrate failed on {db.display}: {migrate.first_error()}")
    gen = db.manage(
        "generate_demo_data",
        *("--users", str(users), "--servers", str(servers), "--configs", str(configs)),
        *("--seed", str(SEED), "--json"),
    )
    if not gen.ok:
        raise RuntimeError(f"generate_demo_data failed on {db.display}: {gen.first_error()}")
    result = json.loads(gen.stdout)
    log(
        f"{db.display}: generated {result['rows']:,} rows in {result['duration_ms'] / 1000:.1f} s "
        f"({result['rows_per_second']:,} rows/s)"
    )
    # Settle the database the way an operator's would be: statistics, WAL folded in.
    db.sql(db.tools.settle)
    return time.perf_counter() - started


def generate_rate(db: BenchDatabase) -> float:
    """Rows per second of generate_demo_data into a fresh SQLite file (a tenth of the full bench size)."""
    fresh = BenchDatabase("sqlite", f"sqlite:///{db.workdir / 'generate.sqlite3'}", db.workdir, db.env)
    fresh.recreate()
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
        fresh.engine.drop_database()


def run_suite(bench: Bench, db: BenchDatabase, runs: int, groups: set[str]) -> None:
    """``runs`` rounds of every group of ``groups`` (backup, full, validate, stats, generate) on ``db``."""
    tools = db.tools
    ours_dir = db.workdir / "backups"
    for d in (ours_dir, db.workdir / "tools", db.workdir / "dbbackup"):
        clear(d)
    try:
        for r in range(runs):
            bench.log(f"{db.display} round {r + 1}/{runs}")
            if "backup" in groups:
                bench.pair(
                    db,
                    r,
                    [("backup", bench.ours(db, "backup", "backup", "-v", "0", rss_key="backup"))]
                    + [(c.label, db.action(c)) for c in tools.backup],
                    list(tools.backup_ratios),
                )
                for comparison in tools.after_backup:
                    bench.measure(db, comparison.label, db.action(comparison))
                clear(ours_dir, keep=newest(ours_dir))
            if "full" in groups:
                full = ("backup", "--verify", "full", "-v", "0")
                bench.pair(
                    db,
                    r,
                    [
                        (
                            "backup --verify full",
                            bench.ours(db, "backup --verify full", *full, rss_key="backup --verify full"),
                        ),
                        (tools.full.label, db.action(tools.full)),
                    ],
                    [("backup --verify full", tools.full.label)],
                )
                clear(ours_dir, keep=newest(ours_dir))
            if "validate" in groups:
                bench.pair(
                    db,
                    r,
                    [
                        ("validate", bench.ours(db, "validate", "validate", "-v", "0", rss_key="validate")),
                        (tools.validate.label, db.action(tools.validate)),
                    ],
                    [("validate", tools.validate.label)],
                )
            if "stats" in groups:
                bench.measure(
                    db, "dbstats (command)", bench.ours(db, "dbstats", "dbstats", "--json", rss_key="dbstats")
                )
            if "generate" in groups and tools.generate:
                bench.measure(db, "generate_demo_data (rows/s)", lambda: generate_rate(db))
    finally:
        db.drop_scratch()
