"""The runner: every rule counted with set-based SQL, side by side on their own connections.

Every rule is one query that counts the rows breaking it (the row-by-row rules of a
table, its CHECKs and timestamps, share one scan), plus one ``LIMIT 10`` query for
sample ids when there are any: no Python loop over rows, so memory does not grow with
the tables and a million servers take seconds.

``run_validation`` resolves the database alias to its Engine once and passes it down;
``validate_database`` runs it, logs the run and stores the report.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, models, transaction
from django.db.models import BooleanField, Count, ExpressionWrapper, Q
from django.utils import timezone
from django.utils.connection import ConnectionDoesNotExist

from ..engines import Engine, get_engine
from ..errors import CouldNotRun, DatabaseUnreachable
from ..formatting import first_line, to_ms
from ..oplog import record_operation
from .report import Problem, ValidationReport, store_report
from .rules import SAMPLE_SIZE, Rule, checked_models, data_rules
from .schema import engine_problems, foreign_object_problems, migration_problems, structure_problems

MAX_WORKERS = 4
# Tables with more rows than this have their row scan split among the workers.
SPLIT_SCAN_ROWS = 100_000


def ensure_reachable(database: str) -> None:
    """CouldNotRun for an alias that names no database; DatabaseUnreachable (exit 2) when it does not answer."""
    try:
        # DATABASES, or a connection made at run time in this thread (restore's scratch).
        connection = connections[database]
    except ConnectionDoesNotExist:
        raise CouldNotRun(
            f"there is no database '{database}' (DATABASES has {', '.join(settings.DATABASES)})"
        ) from None
    try:
        connection.ensure_connection()
    except DatabaseError as exc:
        raise DatabaseUnreachable(f"cannot reach {get_engine(database).describe()}: {first_line(exc)}") from None


def reading(database: str):
    """The context for a read-only query: a savepoint inside the caller's transaction, else none.

    Inside a transaction, a failing query must not poison it (PostgreSQL aborts it).
    Outside, no transaction at all: on SQLite Django begins them IMMEDIATE, which takes
    the write lock, so a read wrapped in atomic() would block the panel's writes and
    serialise parallel readers.
    """
    if connections[database].in_atomic_block:
        return transaction.atomic(using=database, savepoint=True)
    return nullcontext()


# --- counting ----------------------------------------------------------------------------


def _problem(rule: Rule, count: int) -> Problem:
    samples = list(rule.queryset().order_by("pk").values_list("pk", flat=True)[:SAMPLE_SIZE])
    return Problem(
        category=rule.category,
        table=rule.table,
        rule=rule.name,
        count=count,
        sample_ids=samples,
        message=f"{count} {'row' if count == 1 else 'rows'}: {rule.message}",
        fix=rule.fix,
    )


def _run_rule(rule: Rule, engine: Engine) -> Problem | None:
    with reading(engine.alias):
        count = rule.count() if rule.count is not None else rule.queryset().count()
        return _problem(rule, count) if count else None


def _count_row_rules(rules: list[Rule], engine: Engine, pk_range: tuple[int, int] | None = None) -> list[int]:
    """Count the rows failing each of these rules (all on one table) in a single scan.

    A row fails where its rule's condition is FALSE (NULL passes, as a CHECK does).
    ``pk_range`` (first, last) limits the scan to a slice of the table, so that a big
    table's scan can be shared among workers.
    """
    queryset = rules[0].model._base_manager.using(engine.alias)
    if pk_range is not None:
        queryset = queryset.filter(pk__gte=pk_range[0], pk__lte=pk_range[1])
    counts = {}
    for i, rule in enumerate(rules):
        queryset = queryset.alias(**{f"_dbtools_ok{i}": ExpressionWrapper(rule.condition, output_field=BooleanField())})
        counts[f"_dbtools_n{i}"] = Count("pk", filter=Q(**{f"_dbtools_ok{i}": False}))
    with reading(engine.alias):
        found = queryset.aggregate(**counts)
    return [found[f"_dbtools_n{i}"] or 0 for i in range(len(rules))]


def _pk_slices(model, engine: Engine, parts: int) -> list[tuple[int, int]] | None:
    """``parts`` contiguous ranges covering the table's integer primary keys, or None when not worth it."""
    if parts < 2 or not isinstance(model._meta.pk, models.AutoField | models.BigAutoField | models.IntegerField):
        return None
    with reading(engine.alias):
        bounds = model._base_manager.using(engine.alias).aggregate(lo=models.Min("pk"), hi=models.Max("pk"))
    lo, hi = bounds["lo"], bounds["hi"]
    if lo is None or hi - lo < SPLIT_SCAN_ROWS:
        return None
    step = (hi - lo) // parts + 1
    return [(start, min(start + step - 1, hi)) for start in range(lo, hi + 1, step)]


# --- running side by side -------------------------------------------------------------------


def _worker_count(engine: Engine, workers: int | None) -> int:
    if workers is not None:
        return max(1, workers)
    if engine.connection.in_atomic_block:
        # Rows written in this transaction are invisible to any other connection.
        return 1
    if not engine.shared_between_connections():
        return 1
    return max(1, min(MAX_WORKERS, os.cpu_count() or 1))


def _run_tasks(tasks: list[Callable[[], list]], engine: Engine, workers: int | None) -> list[list]:
    """Run the tasks; their results in the tasks' order.

    In parallel, each worker thread has its own connection (Django's connections are per
    thread), closed after each task so none outlives the run. The database does the
    work: the threads only wait on it, and the second core (or the server's) does the rest.
    """
    count = min(_worker_count(engine, workers), len(tasks))
    if count <= 1:
        return [task() for task in tasks]
    database = engine.alias
    # An alias created at run time (restore's scratch) exists only in the thread that made it.
    dynamic = database not in connections.settings
    main = connections[database]

    def in_worker(task):
        if dynamic:
            connections[database] = main.__class__(main.settings_dict, alias=database)
        try:
            return task()
        finally:
            connections[database].close()
            if dynamic:
                del connections[database]

    with ThreadPoolExecutor(max_workers=count, thread_name_prefix="validate") as pool:
        return list(pool.map(in_worker, tasks))


# --- the service ---------------------------------------------------------------------


def run_validation(
    database: str = DEFAULT_DB_ALIAS,
    *,
    data: bool = True,
    schema: bool = True,
    deep: bool = False,
    engine_check: bool = True,
    workers: int | None = None,
    built_by_load: bool = False,
) -> ValidationReport:
    """Validate without storing anything. Raises DatabaseUnreachable (exit 2) when it cannot run.

    ``deep`` runs the engine's slowest integrity check too (SQLite: integrity_check
    instead of quick_check). ``workers``: queries run at once (default: one per core, up
    to four; one inside a transaction, whose uncommitted rows other connections cannot see).
    ``built_by_load``: the database is a scratch a restore has just loaded; a rule whose
    constraint the load built from the rows (Engine.constraints_built_by_load: PostgreSQL's
    unique indexes and foreign keys) is proven by it and not run again (still counted).
    """
    ensure_reachable(database)
    engine = get_engine(database)
    report = ValidationReport(
        database=database,
        engine=engine.display_name,
        started_at=timezone.now(),
        data_checked=data,
        schema_checked=schema,
    )
    t0 = time.monotonic()
    model_list = checked_models(database)
    # The structure is always looked at: data rules only run on tables that exist whole.
    structure, usable = structure_problems(engine, model_list)
    if schema:
        report.problems += structure
        report.problems += migration_problems(engine)
        report.problems += foreign_object_problems(engine)
        report.rules_run += len(model_list) + 2
    elif structure:
        report.problems += [p for p in structure if p.category in ("missing_tables", "missing_columns")]
    runnable = [m for m in model_list if m._meta.db_table in usable]
    # Each task is one query (or one scan) returning its problems; they are independent,
    # so they run side by side on their own connections when that is safe.
    tasks: list[Callable[[], list]] = []
    checks_covered: dict[str, set[str]] = {}
    if data:
        rules = data_rules(engine, runnable)
        report.rules_run += len(rules)
        if built_by_load:
            proven = engine.constraints_built_by_load()
            rules = [r for r in rules if r.enforced_by is None or (r.table, *r.enforced_by) not in proven]
        row_rules: dict[str, list[Rule]] = {}
        for rule in rules:
            if rule.check is not None:
                checks_covered.setdefault(rule.table, set()).add(rule.check)
            if rule.condition is not None:
                row_rules.setdefault(rule.table, []).append(rule)
            else:
                tasks.append(lambda rule=rule: [p for p in [_run_rule(rule, engine)] if p is not None])
        # The row scans take longest: they start first, a big table's split by primary key
        # among the workers; their counts are added up (and samples fetched) at the end.
        parts = _worker_count(engine, workers)
        scans: list[Callable[[], list]] = []
        for table_rules in row_rules.values():
            slices = _pk_slices(table_rules[0].model, engine, parts) or [None]
            for pk_range in slices:
                scans.append(
                    lambda rs=table_rules, r=pk_range: list(zip(rs, _count_row_rules(rs, engine, r), strict=True))
                )
        tasks[:0] = scans
    if schema and engine_check:
        # Rows of the model tables are the data rules' business (with ids and a fix);
        # the engine's check covers the file's structure and the tables Django does not know.
        covered = {m._meta.db_table for m in runnable}
        tasks.insert(0, lambda: engine_problems(engine, covered, deep=deep, checks_covered=checks_covered))
        report.rules_run += 1
    found = _run_tasks(tasks, engine, workers)
    # The report lists the data rules first, then the engine's check, whatever ran first.
    if schema and engine_check:
        found = found[1:] + found[:1]
    failing: dict[int, tuple[Rule, int]] = {}  # the row rules' counts, summed over slices
    others: list[Problem] = []
    for results in found:
        for item in results:
            if isinstance(item, Problem):
                others.append(item)
            elif item[1]:
                rule, count = item
                failing[id(rule)] = (rule, failing.get(id(rule), (rule, 0))[1] + count)
    with reading(database):
        report.problems += [_problem(rule, count) for rule, count in failing.values()]
    report.problems += others
    report.duration_ms = to_ms(time.monotonic() - t0)
    return report


def validate_database(
    database: str = DEFAULT_DB_ALIAS,
    *,
    data: bool = True,
    schema: bool = True,
    store: bool = True,
    actor: str | None = None,
    deep: bool = False,
    engine_check: bool = True,
    report: ValidationReport | None = None,
) -> ValidationReport:
    """Validate the database; store the report (for /health/ and the dashboard) and log the run.

    ``engine_check=False`` leaves out the engine's own file/index check, for a caller that
    has just run it on the same content (restore checks the scratch before swapping it in).
    ``report``: a validation already run on exactly this content (restore validates the
    scratch while it is copied in), to store and log as this database's.
    """
    # Unreachable: nothing to log into either, so say so (exit 2) before logging.
    ensure_reachable(database)
    with record_operation("validate", database=database, actor=actor) as record:
        if report is None:
            report = run_validation(database, data=data, schema=schema, deep=deep, engine_check=engine_check)
        else:
            report.database = database
            record.details["ran_on"] = "the restored content, on the scratch the swap put in place"
        record.outcome = "success" if report.ok else "failure"
        record.message = "no problems found" if report.ok else f"found {report.summary}"
        record.details = {
            **record.details,
            "ok": report.ok,
            "problem_count": report.problem_count,
            "categories": sorted({p.category for p in report.problems}),
            "data": data,
            "schema": schema,
            "deep": deep,
        }
        if store:
            store_report(
                report, kind="validation" if data and schema else "validation:" + ("data" if data else "schema")
            )
    return report
