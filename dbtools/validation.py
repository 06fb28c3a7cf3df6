"""Data and schema validation: what the constraints missed, found with set-based SQL.

Every rule is one query that counts the rows breaking it (the row-by-row rules of a
table, its CHECKs and timestamps, share one scan), plus one ``LIMIT 10`` query for
sample ids when there are any: no Python loop over rows, so memory does not grow with
the tables and a million servers take seconds.

The data rules come from the models themselves (foreign keys, ``Meta.constraints``,
``unique`` fields), so a new constraint is validated without new code; a few rules the
schema cannot express (ports, case, clocks) are written out below.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.apps import apps
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, models, router, transaction
from django.db.models import BooleanField, Count, ExpressionWrapper, F, Q, Sum
from django.db.models.expressions import RawSQL
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.connection import ConnectionDoesNotExist

from .errors import CouldNotRun, DatabaseUnreachable

DATA_CATEGORIES = (
    "foreign_key_violations",
    "constraint_violations",
    "data_inconsistencies",
    "orphaned_records",
)
SCHEMA_CATEGORIES = (
    "missing_tables",
    "missing_columns",
    "missing_indexes",
    "missing_constraints",
    "unapplied_migrations",
    "unknown_migrations",
    "schema_inconsistencies",
)
CATEGORIES = DATA_CATEGORIES + SCHEMA_CATEGORIES

# Apps whose timestamps record the past; Django's own tables hold future times by design
# (session expiry).
TIMESTAMP_APPS = ("accounts", "servers", "dbtools")
# Clocks drift: a timestamp this far ahead is still believable.
FUTURE_TOLERANCE = timedelta(minutes=5)
SAMPLE_SIZE = 10
REPORTS_KEPT = 50


@dataclass
class Problem:
    """One broken rule: where, which rule, how many rows, a few of them, and how to fix it."""

    category: str
    table: str
    rule: str
    count: int
    message: str
    fix: str
    sample_ids: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "category": self.category,
            "table": self.table,
            "rule": self.rule,
            "count": self.count,
            "sample_ids": list(self.sample_ids),
            "message": self.message,
            "fix": self.fix,
        }


@dataclass
class ValidationReport:
    """The outcome of one validation run; ``ok`` when no rule found anything."""

    database: str
    engine: str
    started_at: datetime
    duration_ms: int = 0
    data_checked: bool = True
    schema_checked: bool = True
    rules_run: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def problem_count(self) -> int:
        return len(self.problems)

    @property
    def summary(self) -> str:
        """ "no problems" or "2 problems (13 rows or items)"."""
        if self.ok:
            return "no problems"
        rows = sum(p.count for p in self.problems)
        noun = "problem" if self.problem_count == 1 else "problems"
        return f"{self.problem_count} {noun} ({rows} {'row or item' if rows == 1 else 'rows or items'})"

    def by_category(self, categories: Iterable[str] = CATEGORIES) -> dict[str, list[dict]]:
        grouped: dict[str, list[dict]] = {c: [] for c in categories}
        for problem in self.problems:
            if problem.category in grouped:
                grouped[problem.category].append(problem.as_dict())
        return grouped

    def as_dict(self) -> dict:
        categories = (DATA_CATEGORIES if self.data_checked else ()) + (SCHEMA_CATEGORIES if self.schema_checked else ())
        return {
            "ok": self.ok,
            "database": self.database,
            "engine": self.engine,
            "started_at": self.started_at.isoformat(),
            "duration_ms": self.duration_ms,
            "data_checked": self.data_checked,
            "schema_checked": self.schema_checked,
            "rules_run": self.rules_run,
            "problem_count": self.problem_count,
            "problems": self.by_category(categories),
        }


@dataclass
class Rule:
    """A data rule: the rows breaking it, as a queryset (never evaluated row by row)."""

    category: str
    model: type[models.Model]
    name: str
    queryset: Callable[[], models.QuerySet]
    message: str
    fix: str
    # For row-by-row rules (a CHECK, a timestamp): the condition a good row meets. Such
    # rules of one table are counted together in one scan; each still gets its own count.
    condition: Q | None = None
    # For a rule that evaluates one of the table's CHECK constraints: its name, or for a
    # column's unnamed check its SQL. The engine's file check can then skip that CHECK.
    check: str | None = None
    # A faster way to the same number as ``queryset().count()`` (samples still come from the queryset).
    count: Callable[[], int] | None = None

    @property
    def table(self) -> str:
        return self.model._meta.db_table


# --- which models ---------------------------------------------------------------


def checked_models(database: str) -> list[type[models.Model]]:
    """Concrete, managed models whose tables live in this database."""
    return [
        model
        for model in apps.get_models(include_auto_created=True)
        if model._meta.managed and not model._meta.proxy and router.allow_migrate_model(database, model)
    ]


def _label(model) -> str:
    return f"{model._meta.app_label}.{model.__name__}"


# --- data rules ------------------------------------------------------------------


def foreign_key_rules(database: str, model_list) -> list[Rule]:
    """Rows whose foreign key names a row that does not exist.

    A required reference (a server's owner) makes the row an orphan; an optional one
    (a configuration's updated_by) is a dangling foreign key that SET NULL would have
    cleared.
    """
    rules = []
    for model in model_list:
        for f in model._meta.concrete_fields:
            if not f.is_relation or not f.many_to_one or not getattr(f, "db_constraint", True):
                continue
            target = f.related_model
            target_field = f.target_field.attname

            def query(model=model, f=f, target=target, target_field=target_field):
                present = target._base_manager.using(database).filter(**{target_field: models.OuterRef(f.attname)})
                return (
                    model._base_manager.using(database)
                    .filter(**{f"{f.attname}__isnull": False})
                    .exclude(models.Exists(present))
                )

            table, column = model._meta.db_table, f.column
            parent = target._meta.db_table
            if f.null:
                category = "foreign_key_violations"
                fix = f"Set {column} to NULL on those rows (UPDATE {table} SET {column} = NULL WHERE id IN (...)), or restore the missing {parent} rows."
            else:
                category = "orphaned_records"
                fix = f"Restore the missing {parent} rows, point {column} at an existing row, or delete the orphaned {table} rows."
            rules.append(
                Rule(
                    category=category,
                    model=model,
                    name=f"{column}_exists",
                    queryset=query,
                    message=f"{_label(model)}.{f.name} points at a missing {_label(target)} row",
                    fix=fix,
                )
            )
    return rules


def _check_violations(model, constraint, database):
    # The rows where the condition is FALSE. A CHECK passes on NULL (unknown), which
    # ``exclude()`` would count as a violation; comparing the condition with FALSE
    # keeps exactly the database's semantics.
    condition = ExpressionWrapper(constraint.condition, output_field=BooleanField())
    return model._base_manager.using(database).alias(_dbtools_ok=condition).filter(_dbtools_ok=False)


def _duplicate_count(model, database, keys: dict, condition: Q | None = None, nulls_distinct: bool = True) -> int:
    """How many rows share their key with another row: the sizes of the groups of two or more, added up.

    The same number as ``_duplicate_rows(...).count()`` in one grouped pass with no join
    back to the table; COUNT(*) needs no other column, so an index on the key (the unique
    index, when it is there) answers it alone.
    """
    base = model._base_manager.using(database)
    if condition is not None:
        base = base.filter(condition)
    keyed = base.annotate(**keys)
    if nulls_distinct:
        keyed = keyed.filter(**{f"{name}__isnull": False for name in keys})
    groups = keyed.values(*keys).annotate(_dbtools_n=Count("*")).filter(_dbtools_n__gt=1)
    return groups.aggregate(_dbtools_total=Sum("_dbtools_n"))["_dbtools_total"] or 0


def _duplicate_rows(model, database, keys: dict, condition: Q | None = None, nulls_distinct: bool = True):
    """Rows sharing the same values of ``keys`` (name -> expression) with another row."""
    base = model._base_manager.using(database)
    if condition is not None:
        base = base.filter(condition)
    names = list(keys)
    keyed = base.alias(**keys)
    if nulls_distinct:
        # SQL unique indexes treat NULLs as distinct: rows with a NULL never collide.
        keyed = keyed.filter(**{f"{name}__isnull": False for name in names})
    from .engines import get_engine

    plain_columns = all(isinstance(e, F) for e in keys.values())
    if len(names) == 1 and not (plain_columns and get_engine(database).duplicates_by_index_probe):
        groups = base.annotate(**keys).values(*names).annotate(_dbtools_n=Count("pk")).filter(_dbtools_n__gt=1)
        return keyed.filter(**{f"{names[0]}__in": groups.values(*names)})
    # Several columns (or an engine faster at index probes than at sorting): a correlated
    # EXISTS on the same key finds the rows of each group.
    other = (
        base.alias(**keys).filter(**{name: models.OuterRef(name) for name in names}).exclude(pk=models.OuterRef("pk"))
    )
    return keyed.filter(models.Exists(other))


def column_check(field, connection) -> tuple[str, ExpressionWrapper] | None:
    """The column's own CHECK (a Positive*Field's ">= 0", a JSONField's JSON_VALID on SQLite),
    exactly as the database declares it: (its SQL, it as a boolean expression), or None."""
    check_sql = field.db_check(connection)
    if not check_sql:
        return None
    return check_sql, ExpressionWrapper(RawSQL(check_sql, ()), output_field=BooleanField())


def constraint_rules(database: str, model_list) -> list[Rule]:
    """Every CheckConstraint, UniqueConstraint and unique field of every model, as a query."""
    rules = []
    for model in model_list:
        table = model._meta.db_table
        for constraint in model._meta.constraints:
            message = str(getattr(constraint, "violation_error_message", "") or "")
            if isinstance(constraint, models.CheckConstraint):
                rules.append(
                    Rule(
                        category="constraint_violations",
                        model=model,
                        name=constraint.name,
                        queryset=lambda m=model, c=constraint: _check_violations(m, c, database),
                        condition=constraint.condition,
                        message=f"{_label(model)} rows break the check {constraint.name}"
                        + (f" ({message})" if message else ""),
                        fix=f"Correct or delete those {table} rows; the rule is {_label(model)}.Meta.constraints['{constraint.name}'].",
                        check=constraint.name,
                    )
                )
            elif isinstance(constraint, models.UniqueConstraint):
                if constraint.expressions:
                    keys = {f"_dbtools_k{i}": e for i, e in enumerate(constraint.expressions)}
                else:
                    keys = {f"_dbtools_k{i}": F(name) for i, name in enumerate(constraint.fields)}
                nulls_distinct = constraint.nulls_distinct is not False
                rules.append(
                    Rule(
                        category="constraint_violations",
                        model=model,
                        name=constraint.name,
                        queryset=lambda m=model, k=keys, c=constraint, nd=nulls_distinct: _duplicate_rows(
                            m, database, k, c.condition, nd
                        ),
                        count=lambda m=model, k=keys, c=constraint, nd=nulls_distinct: _duplicate_count(
                            m, database, k, c.condition, nd
                        ),
                        message=f"{_label(model)} rows share values that {constraint.name} says are unique"
                        + (f" ({message})" if message else ""),
                        fix=f"Rename or delete the duplicates in {table} so each value appears once.",
                    )
                )
        connection = connections[database]
        for f in model._meta.concrete_fields:
            # The column's own CHECK (a Positive*Field's ">= 0", a JSONField's JSON_VALID on
            # SQLite), exactly as the database declares it: then every CHECK of the table is
            # a rule here, and the engine's file check need not evaluate them again.
            check = column_check(f, connection)
            if check is not None:
                check_sql, condition = check
                rules.append(
                    Rule(
                        category="constraint_violations",
                        model=model,
                        name=f"{f.column}_check",
                        queryset=lambda m=model, c=condition: (
                            m._base_manager.using(database).alias(_dbtools_ok=c).filter(_dbtools_ok=False)
                        ),
                        condition=condition,
                        message=f"{_label(model)}.{f.name} values break the column's check ({check_sql})",
                        fix=f"Correct or delete those {table} rows.",
                        check=check_sql,
                    )
                )
        for f in model._meta.concrete_fields:
            if f.unique and not f.primary_key:
                rules.append(
                    Rule(
                        category="constraint_violations",
                        model=model,
                        name=f"{f.column}_unique",
                        queryset=lambda m=model, f=f: _duplicate_rows(m, database, {"_dbtools_k0": F(f.attname)}),
                        count=lambda m=model, f=f: _duplicate_count(m, database, {"_dbtools_k0": F(f.attname)}),
                        message=f"{_label(model)}.{f.name} values that must be unique appear more than once",
                        fix=f"Rename or delete the duplicates in {table}.{f.column}.",
                    )
                )
        for fields in model._meta.unique_together:
            keys = {f"_dbtools_k{i}": F(model._meta.get_field(name).attname) for i, name in enumerate(fields)}
            rules.append(
                Rule(
                    category="constraint_violations",
                    model=model,
                    name=f"{'_'.join(fields)}_unique_together",
                    queryset=lambda m=model, k=keys: _duplicate_rows(m, database, k),
                    count=lambda m=model, k=keys: _duplicate_count(m, database, k),
                    message=f"{_label(model)} rows repeat ({', '.join(fields)}), which must be unique together",
                    fix=f"Delete or change the duplicate ({', '.join(fields)}) rows in {table}.",
                )
            )
    return rules


def inconsistency_rules(database: str, model_list) -> list[Rule]:
    """What the schema cannot say: shared ports, names equal but for case, times in the future."""
    from accounts.models import User
    from servers.models import Server, ServerStatus

    rules = []
    present = set(model_list)
    if Server in present:
        active = [ServerStatus.RUNNING, ServerStatus.STARTING]

        def port_clash():
            # Stopped servers may share a port; two running (or starting) ones cannot both bind it.
            # The plain IN lets MariaDB use the status index (its collation ignores case);
            # in_exact then keeps exactly these values on every engine.
            live = Server._base_manager.using(database).filter(status__in=active, status__in_exact=active)
            clashing = live.values("port").annotate(n=Count("pk")).filter(n__gt=1).values("port")
            return live.filter(port__in=clashing)

        rules.append(
            Rule(
                category="data_inconsistencies",
                model=Server,
                name="active_port_unique",
                queryset=port_clash,
                count=lambda: _duplicate_count(
                    Server, database, {"_dbtools_k0": F("port")}, Q(status__in=active, status__in_exact=active)
                ),
                message="servers Running or Starting on the same port: only one of them can bind it",
                fix="Stop all but one server on each port, or move the others to free ports.",
            )
        )
    if User in present:
        rules.append(
            Rule(
                category="data_inconsistencies",
                model=User,
                name="username_unique_ignoring_case",
                queryset=lambda: _duplicate_rows(User, database, {"_dbtools_k0": Lower("username")}),
                count=lambda: _duplicate_count(User, database, {"_dbtools_k0": Lower("username")}),
                message="usernames equal when case is ignored: people (and MariaDB) cannot tell them apart",
                fix="Rename all but one of each group of accounts.",
            )
        )
    now = timezone.now() + FUTURE_TOLERANCE
    for model in model_list:
        if model._meta.app_label not in TIMESTAMP_APPS:
            continue
        for f in model._meta.concrete_fields:
            if isinstance(f, models.DateTimeField):
                rules.append(
                    Rule(
                        category="data_inconsistencies",
                        model=model,
                        name=f"{f.column}_not_in_future",
                        queryset=lambda m=model, f=f: m._base_manager.using(database).filter(
                            **{f"{f.attname}__gt": now}
                        ),
                        condition=Q(**{f"{f.attname}__lte": now}),
                        message=f"{_label(model)}.{f.name} is in the future",
                        fix=f"Check the clock of whatever wrote them, then set {f.column} to a true time (e.g. now).",
                    )
                )
    return rules


def data_rules(database: str, model_list) -> list[Rule]:
    return (
        foreign_key_rules(database, model_list)
        + constraint_rules(database, model_list)
        + inconsistency_rules(database, model_list)
    )


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


def _run_rule(rule: Rule, database: str) -> Problem | None:
    with reading(database):
        count = rule.count() if rule.count is not None else rule.queryset().count()
        return _problem(rule, count) if count else None


def _count_row_rules(rules: list[Rule], database: str, pk_range: tuple[int, int] | None = None) -> list[int]:
    """Count the rows failing each of these rules (all on one table) in a single scan.

    A row fails where its rule's condition is FALSE (NULL passes, as a CHECK does).
    ``pk_range`` (first, last) limits the scan to a slice of the table, so that a big
    table's scan can be shared among workers.
    """
    queryset = rules[0].model._base_manager.using(database)
    if pk_range is not None:
        queryset = queryset.filter(pk__gte=pk_range[0], pk__lte=pk_range[1])
    counts = {}
    for i, rule in enumerate(rules):
        queryset = queryset.alias(**{f"_dbtools_ok{i}": ExpressionWrapper(rule.condition, output_field=BooleanField())})
        counts[f"_dbtools_n{i}"] = Count("pk", filter=Q(**{f"_dbtools_ok{i}": False}))
    with reading(database):
        found = queryset.aggregate(**counts)
    return [found[f"_dbtools_n{i}"] or 0 for i in range(len(rules))]


# Tables with more rows than this have their row scan split among the workers.
SPLIT_SCAN_ROWS = 100_000


def _pk_slices(model, database: str, parts: int) -> list[tuple[int, int]] | None:
    """``parts`` contiguous ranges covering the table's integer primary keys, or None when not worth it."""
    if parts < 2 or not isinstance(model._meta.pk, models.AutoField | models.BigAutoField | models.IntegerField):
        return None
    with reading(database):
        bounds = model._base_manager.using(database).aggregate(lo=models.Min("pk"), hi=models.Max("pk"))
    lo, hi = bounds["lo"], bounds["hi"]
    if lo is None or hi - lo < SPLIT_SCAN_ROWS:
        return None
    step = (hi - lo) // parts + 1
    return [(start, min(start + step - 1, hi)) for start in range(lo, hi + 1, step)]


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


# --- schema ------------------------------------------------------------------------


def migration_problems(database: str) -> list[Problem]:
    """Migrations the code has and the database lacks, and the reverse (database newer than code)."""
    from .schema_state import migration_state

    state = migration_state(database)
    unapplied, unknown = state["unapplied_names"], state["unknown_names"]
    problems = []
    if unapplied:
        problems.append(
            Problem(
                category="unapplied_migrations",
                table="django_migrations",
                rule="all_migrations_applied",
                count=len(unapplied),
                sample_ids=unapplied[:SAMPLE_SIZE],
                message=f"{len(unapplied)} migrations of the code are not applied: {', '.join(unapplied[:5])}",
                fix="Run python manage.py migrate (it takes a backup first).",
            )
        )
    if unknown:
        problems.append(
            Problem(
                category="unknown_migrations",
                table="django_migrations",
                rule="no_unknown_migrations",
                count=len(unknown),
                sample_ids=unknown[:SAMPLE_SIZE],
                message=f"{len(unknown)} migrations are recorded in the database but unknown to the code "
                f"(the database is newer than the code): {', '.join(unknown[:5])}",
                fix="Deploy the code that made them, or restore a backup taken with this code's schema.",
            )
        )
    return problems


def structure_problems(database: str, model_list) -> tuple[list[Problem], set[str]]:
    """Missing tables, columns, indexes and named constraints; returns them and the usable tables."""
    connection = connections[database]
    problems: list[Problem] = []
    usable: set[str] = set()
    with connection.cursor() as cursor:
        existing = set(connection.introspection.table_names(cursor))
        for model in model_list:
            table = model._meta.db_table
            if table not in existing:
                problems.append(
                    Problem(
                        category="missing_tables",
                        table=table,
                        rule="table_exists",
                        count=1,
                        message=f"table {table} of {_label(model)} is missing",
                        fix="Run python manage.py migrate; if the migration is recorded as applied, "
                        "restore a backup or recreate the table.",
                    )
                )
                continue
            # The cursor's description, not introspection: Django's SQLite introspection
            # trips over CHECK constraints written on several lines.
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)} WHERE 1 = 0")
            columns = {column[0] for column in cursor.description}
            missing = [f.column for f in model._meta.concrete_fields if f.column not in columns]
            if missing:
                problems.append(
                    Problem(
                        category="missing_columns",
                        table=table,
                        rule="columns_exist",
                        count=len(missing),
                        sample_ids=missing[:SAMPLE_SIZE],
                        message=f"{table} lacks columns {', '.join(missing)}",
                        fix="Run python manage.py migrate, or restore a backup with the full schema.",
                    )
                )
                continue
            usable.add(table)
            problems += _index_and_constraint_problems(database, model)
    return problems, usable


def _index_and_constraint_problems(database: str, model) -> list[Problem]:
    from .engines import get_engine

    table = model._meta.db_table
    column_sets, found_names = get_engine(database).indexes_and_constraints(table)
    names = {name.lower() for name in found_names}
    features = connections[database].features
    missing_indexes, missing_constraints = [], []
    for f in model._meta.concrete_fields:
        wants_index = f.db_index or f.unique or (f.is_relation and f.many_to_one and f.db_constraint)
        if wants_index and not f.primary_key and not any(cols and cols[0] == f.column for cols in column_sets):
            missing_indexes.append(f.column)
    for index in model._meta.indexes:
        if index.name and index.name.lower() not in names:
            missing_indexes.append(index.name)
    for constraint in model._meta.constraints:
        if isinstance(constraint, models.CheckConstraint) and not features.supports_table_check_constraints:
            continue
        if isinstance(constraint, models.UniqueConstraint) and constraint.expressions:
            # MariaDB has no expression indexes (models.W044); its collation does the job there.
            if not features.supports_expression_indexes:
                continue
        if constraint.name.lower() not in names:
            missing_constraints.append(constraint.name)
    problems = []
    if missing_indexes:
        problems.append(
            Problem(
                category="missing_indexes",
                table=table,
                rule="indexes_exist",
                count=len(missing_indexes),
                sample_ids=missing_indexes[:SAMPLE_SIZE],
                message=f"{table} lacks indexes on {', '.join(missing_indexes)}: lookups there scan the whole table",
                fix="Recreate them: python manage.py sqlmigrate shows the CREATE INDEX statements of the migration.",
            )
        )
    if missing_constraints:
        problems.append(
            Problem(
                category="missing_constraints",
                table=table,
                rule="constraints_exist",
                count=len(missing_constraints),
                sample_ids=missing_constraints[:SAMPLE_SIZE],
                message=f"{table} lacks constraints {', '.join(missing_constraints)}: the database no longer enforces them",
                fix="Fix the rows validate reports, then recreate the constraints "
                "(python manage.py sqlmigrate shows their SQL).",
            )
        )
    return problems


def foreign_object_problems(database: str) -> list[Problem]:
    """Triggers, views, functions, procedures and the like that mcmanager's migrations did not create."""
    from .engines import get_engine

    problems = []
    for found in get_engine(database).foreign_schema_objects():
        where = f" on {found['table']}" if found["table"] else ""
        problems.append(
            Problem(
                category="schema_inconsistencies",
                table=found["table"],
                rule="foreign_schema_object",
                count=1,
                sample_ids=[found["name"]],
                message=f"{found['kind']} {found['name']}{where} was not created by mcmanager's migrations: "
                "it runs with the application's rights",
                fix=f"{found['drop']} after checking who created it and why",
            )
        )
    return problems


def engine_problems(
    database: str, covered_fk_tables: set[str], deep: bool = False, checks_covered: dict[str, set[str]] | None = None
) -> list[Problem]:
    from .engines import get_engine

    return [
        Problem(
            category="schema_inconsistencies",
            table=p["table"],
            rule=p["rule"],
            count=p["count"],
            sample_ids=list(p["samples"])[:SAMPLE_SIZE],
            message=p["message"],
            fix=p["fix"],
        )
        for p in get_engine(database).integrity_problems(covered_fk_tables, deep=deep, checks_covered=checks_covered)
    ]


# --- the service ---------------------------------------------------------------------


def _ensure_reachable(database: str) -> None:
    from django.conf import settings

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
        from .engines import get_engine

        first = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
        raise DatabaseUnreachable(f"cannot reach {get_engine(database).describe()}: {first}") from None


# The public names monitoring uses (dbtools.monitoring imports them; the validation package
# that replaces this module exports them under these names).
ensure_reachable = _ensure_reachable


MAX_WORKERS = 4


def _worker_count(database: str, workers: int | None) -> int:
    if workers is not None:
        return max(1, workers)
    connection = connections[database]
    if connection.in_atomic_block:
        # Rows written in this transaction are invisible to any other connection.
        return 1
    if connection.vendor == "sqlite" and connection.is_in_memory_db():
        return 1
    return max(1, min(MAX_WORKERS, os.cpu_count() or 1))


def _run_tasks(tasks: list[Callable[[], list[Problem]]], database: str, workers: int | None) -> list[list[Problem]]:
    """Run the tasks; their results in the tasks' order.

    In parallel, each worker thread has its own connection (Django's connections are per
    thread), closed after each task so none outlives the run. The database does the
    work: the threads only wait on it, and the second core (or the server's) does the rest.
    """
    count = min(_worker_count(database, workers), len(tasks))
    if count <= 1:
        return [task() for task in tasks]
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


def run_validation(
    database: str = DEFAULT_DB_ALIAS,
    *,
    data: bool = True,
    schema: bool = True,
    deep: bool = False,
    engine_check: bool = True,
    workers: int | None = None,
) -> ValidationReport:
    """Validate without storing anything. Raises DatabaseUnreachable (exit 2) when it cannot run.

    ``deep`` runs the engine's slowest integrity check too (SQLite: integrity_check
    instead of quick_check). ``workers``: queries run at once (default: one per core, up
    to four; one inside a transaction, whose uncommitted rows other connections cannot see).
    """
    from .engines import get_engine

    _ensure_reachable(database)
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
    structure, usable = structure_problems(database, model_list)
    if schema:
        report.problems += structure
        report.problems += migration_problems(database)
        report.problems += foreign_object_problems(database)
        report.rules_run += len(model_list) + 2
    elif structure:
        report.problems += [p for p in structure if p.category in ("missing_tables", "missing_columns")]
    runnable = [m for m in model_list if m._meta.db_table in usable]
    # Each task is one query (or one scan) returning its problems; they are independent,
    # so they run side by side on their own connections when that is safe.
    tasks: list[Callable[[], list[Problem]]] = []
    checks_covered: dict[str, set[str]] = {}
    if data:
        rules = data_rules(database, runnable)
        report.rules_run += len(rules)
        row_rules: dict[str, list[Rule]] = {}
        for rule in rules:
            if rule.check is not None:
                checks_covered.setdefault(rule.table, set()).add(rule.check)
            if rule.condition is not None:
                row_rules.setdefault(rule.table, []).append(rule)
            else:
                tasks.append(lambda rule=rule: [p for p in [_run_rule(rule, database)] if p is not None])
        # The row scans take longest: they start first, a big table's split by primary key
        # among the workers; their counts are added up (and samples fetched) at the end.
        parts = _worker_count(database, workers)
        scans: list[Callable[[], list]] = []
        for table_rules in row_rules.values():
            slices = _pk_slices(table_rules[0].model, database, parts) or [None]
            for pk_range in slices:
                scans.append(
                    lambda rs=table_rules, r=pk_range: list(zip(rs, _count_row_rules(rs, database, r), strict=True))
                )
        tasks[:0] = scans
    if schema and engine_check:
        # Rows of the model tables are the data rules' business (with ids and a fix);
        # the engine's check covers the file's structure and the tables Django does not know.
        covered = {m._meta.db_table for m in runnable}
        tasks.insert(0, lambda: engine_problems(database, covered, deep=deep, checks_covered=checks_covered))
        report.rules_run += 1
    found = _run_tasks(tasks, database, workers)
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
    report.duration_ms = int((time.monotonic() - t0) * 1000)
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
    from .oplog import record_operation

    # Unreachable: nothing to log into either, so say so (exit 2) before logging.
    _ensure_reachable(database)
    with record_operation("validate", database=database, actor=actor) as record:
        if report is None:
            report = run_validation(database, data=data, schema=schema, deep=deep, engine_check=engine_check)
        else:
            report.database = database
            record.details["ran_on"] = "the restored content, while it was copied in"
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


def store_report(report: ValidationReport, kind: str = "validation") -> None:
    """Keep the report as the last one of its kind; old ones beyond REPORTS_KEPT are removed.

    A full run is kind "validation"; a --data-only or --schema-only run is kept apart
    so it never passes for a full one.
    """
    from .models import StoredReport

    try:
        StoredReport.objects.using(report.database).create(
            kind=kind,
            database=report.database,
            created_at=report.started_at,
            ok=report.ok,
            problem_count=report.problem_count,
            duration_ms=report.duration_ms,
            report=report.as_dict(),
        )
        keep = (
            StoredReport.objects.using(report.database)
            .filter(kind=kind)
            .order_by("-created_at", "-id")
            .values_list("pk", flat=True)[:REPORTS_KEPT]
        )
        StoredReport.objects.using(report.database).filter(kind=kind).exclude(pk__in=list(keep)).delete()
    except DatabaseError:
        # The dbtools tables may be missing (that is a finding of the report itself).
        pass


def last_report(database: str = DEFAULT_DB_ALIAS):
    """The newest stored full validation report (a StoredReport), or None."""
    from .models import StoredReport

    try:
        return StoredReport.objects.using(database).filter(kind="validation").order_by("-created_at", "-id").first()
    except DatabaseError:
        return None
