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

Restore is measured by ``bench/restore.py`` (``make bench`` runs it after this one).

The targets of issue 8 are printed as a table with met / missed, and written to
BENCHMARKS.md between its ``bench:begin`` / ``bench:end`` markers (the analysis
around them is kept).

    python bench/run.py                       # all reachable engines, full size
    python bench/run.py --engines sqlite --scale 0.1 --runs 1 --no-write   # quick look

The modules: ``suite`` (the one suite, written once), ``tools`` (per engine, its tools
and targets), ``databases`` (the bench databases, through dbtools' engines), ``harness``
(timing processes), ``probes`` (scripts run in a Django process), ``report``.
"""

import argparse
import os
import secrets
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script (python bench/run.py): the project root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.databases import BenchDatabase, bench_url, setup_django  # noqa: E402
from bench.harness import PYTHON, ROOT, Bench, Results, clear, newest, run_timed  # noqa: E402
from bench.probes import run_probe, validate_sql_file  # noqa: E402
from bench.report import RESTORE_NOTE, report, targets, write_benchmarks  # noqa: E402
from bench.suite import BASE_CONFIGS, BASE_SERVERS, BASE_USERS, build, run_suite  # noqa: E402
from bench.tools import TOOLS  # noqa: E402

GROUPS = ("backup", "full", "validate", "stats", "health", "generate", "memory")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=RESTORE_NOTE,
    )
    parser.add_argument(
        "--engines", default="sqlite,postgresql,mariadb", help="comma-separated subset (default: all reachable)"
    )
    parser.add_argument("--runs", type=int, default=3, help="runs of each measurement (default 3)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies 100k users / 1M servers / 10k configs")
    parser.add_argument(
        "--only",
        default=",".join(GROUPS),
        help=f"comma-separated groups among {', '.join(GROUPS)} (default: all; restore: see bench/restore.py)",
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


def startup_seconds(env: dict) -> float:
    """Python + Django start-up, the median of three: part of every command's wall time."""
    setup = "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'mcmanager.settings'); django.setup()"
    runs = [run_timed([PYTHON, "-c", setup], env | {"DATABASE_URL": "sqlite:///:memory:"}) for _ in range(3)]
    return statistics.median(o.seconds for o in runs)


def memory_check(args, dbs: list[BenchDatabase], results: Results, workdir: Path, base_env: dict, log) -> None:
    """The same commands on a database half as large (by default): their peak RSS must not grow with the data."""
    memory_engines = {e.strip() for e in (args.memory_engines or args.engines).split(",")}
    small_scale = args.memory_scale if args.memory_scale is not None else args.scale / 2
    su, ss, sc = (int(n * small_scale) for n in (BASE_USERS, BASE_SERVERS, BASE_CONFIGS))
    for db in dbs:
        if db.name not in memory_engines:
            continue
        # Restore's peak RSS at full size (its timings are bench/restore.py's).
        args.current_servers = int(BASE_SERVERS * args.scale)
        bench = Bench(args, results, log)
        restore_peak_rss(bench, db, "restore (peak RSS)")
        small = BenchDatabase(db.name, bench_url(db.name, args, ss), workdir / f"{db.name}-small", base_env)
        small.workdir.mkdir(parents=True, exist_ok=True)
        args.current_servers = ss
        try:
            build(small, su, ss, sc, log)
        except Exception as exc:  # noqa: BLE001
            results.notes.append(f"{db.display}: memory check skipped, could not build the small database: {exc}")
            continue
        clear(small.workdir / "backups")
        for key, cmd in (
            ("backup", ["backup", "-v", "0"]),
            ("backup --verify full", ["backup", "--verify", "full", "-v", "0"]),
            ("validate", ["validate", "-v", "0"]),
        ):
            bench.measure(small, f"{key} (small db)", bench.ours(small, key, *cmd, rss_key=key))
        restore_peak_rss(bench, small, "restore (small db)")
        clear(small.workdir / "backups")
    # The memory check's timings are not part of the report's tables.
    for key in [k for k in results.samples if k[1].endswith(("(small db)", "(peak RSS)"))]:
        del results.samples[key]


def restore_peak_rss(bench: Bench, db: BenchDatabase, item: str) -> None:
    """One restore of the newest backup of ours (made if there is none), for its peak RSS only."""
    backups = db.workdir / "backups"
    source = newest(backups)
    if source is None:
        db.manage("backup", "-v", "0")
        source = newest(backups)
    if source:
        restore = ("restore", str(source), "--noinput", "-v", "0")
        bench.measure(db, item, bench.ours(db, "restore", *restore, rss_key="restore"))
    clear(backups, keep=source)


def main(argv=None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    groups = {g.strip() for g in args.only.split(",") if g.strip()}
    if "restore" in groups:
        log(RESTORE_NOTE)
    base_env = dict(os.environ)
    base_env.setdefault("DJANGO_SECRET_KEY", secrets.token_urlsafe(50))
    base_env.pop("DJANGO_DEBUG", None)
    base_env["DJANGO_SETTINGS_MODULE"] = "mcmanager.settings"
    # The health probe's test client calls itself "testserver".
    base_env["DJANGO_ALLOWED_HOSTS"] = "localhost,127.0.0.1,testserver"
    setup_django(base_env)
    users, servers, configs = (int(n * args.scale) for n in (BASE_USERS, BASE_SERVERS, BASE_CONFIGS))
    results = Results()
    workdir = Path(args.dir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)

    dbs: list[BenchDatabase] = []
    for name in [e.strip() for e in args.engines.split(",") if e.strip()]:
        if name not in TOOLS:
            print(f"unknown engine {name!r} ({', '.join(TOOLS)})", file=sys.stderr)
            return 2
        db = BenchDatabase(name, bench_url(name, args, servers), workdir / name, base_env)
        why = db.reachable()
        if why:
            log(f"{db.display}: not reachable, skipped ({why})")
            results.notes.append(f"{db.display} was not reachable: {why}")
            continue
        dbs.append(db)

    results.startup = startup_seconds(base_env)
    results.notes.append(
        f"Python + Django start-up (included in every command's wall time): {results.startup * 1000:.0f} ms median"
    )

    for db in dbs:
        db.workdir.mkdir(parents=True, exist_ok=True)
        args.current_servers = servers
        try:
            built = build(db, users, servers, configs, log)
        except Exception as exc:  # noqa: BLE001
            log(f"{db.display}: could not build the bench database: {exc}")
            results.notes.append(f"{db.display}: could not build the bench database: {exc}")
            continue
        if built is not None:
            results.notes.append(f"{db.display}: bench database built in {built:.0f} s")
        bench = Bench(args, results, log)
        if "validate" in groups:
            try:
                validate_sql_file(db)
            except Exception as exc:  # noqa: BLE001
                results.failures[(db.name, db.tools.validate.label)] = str(exc)[:200]
        run_suite(bench, db, args.runs, groups)
        if groups & {"stats", "health"}:
            run_probe(db, results, max(args.runs, 3))
        log(f"{db.display}: done")

    if "memory" in groups:
        memory_check(args, dbs, results, workdir, base_env, log)

    tgs = targets(results, [db.name for db in dbs])
    body = report(args, dbs, results, tgs, started)
    print()
    print(body)
    if not args.no_write:
        write_benchmarks(Path(args.output), body)
        log(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
