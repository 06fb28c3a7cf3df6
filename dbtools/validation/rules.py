"""The rule catalogue: the problem categories, and each data rule as a query with its message and fix.

The data rules come from the models themselves (foreign keys, ``Meta.constraints``,
``unique`` fields), so a new constraint is validated without new code; a few rules the
schema cannot express (ports, case, clocks) are written out in ``inconsistency_rules``.
A rule is never evaluated here: the runner counts its rows (dbtools.validation.runner).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from django.apps import apps
from django.db import models, router
from django.db.models import BooleanField, Count, ExpressionWrapper, F, Q, Sum
from django.db.models.expressions import RawSQL
from django.db.models.functions import Lower
from django.utils import timezone

from accounts.models import User
from servers.models import Server, ServerStatus

from ..engines import Engine

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
    # The database constraint that forbids what this rule finds, when there is exactly one:
    # ("unique", sorted columns, "") or ("foreign_key", (column,), referenced table).
    # Engine.constraints_proven_by_load matches it (restore's scratch on PostgreSQL).
    enforced_by: tuple[str, tuple[str, ...], str] | None = None

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


def label(model) -> str:
    """``app.Model``, as messages name a model."""
    return f"{model._meta.app_label}.{model.__name__}"


# --- data rules ------------------------------------------------------------------


def foreign_key_rules(engine: Engine, model_list) -> list[Rule]:
    """Rows whose foreign key names a row that does not exist.

    A required reference (a server's owner) makes the row an orphan; an optional one
    (a configuration's updated_by) is a dangling foreign key that SET NULL would have
    cleared.
    """
    database = engine.alias
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
                    message=f"{label(model)}.{f.name} points at a missing {label(target)} row",
                    fix=fix,
                    enforced_by=("foreign_key", (column,), parent) if f.db_constraint else None,
                )
            )
    return rules


def _check_violations(model, constraint, database: str):
    # The rows where the condition is FALSE. A CHECK passes on NULL (unknown), which
    # ``exclude()`` would count as a violation; comparing the condition with FALSE
    # keeps exactly the database's semantics.
    condition = ExpressionWrapper(constraint.condition, output_field=BooleanField())
    return model._base_manager.using(database).alias(_dbtools_ok=condition).filter(_dbtools_ok=False)


def _duplicate_count(model, engine: Engine, keys: dict, condition: Q | None = None, nulls_distinct: bool = True) -> int:
    """How many rows share their key with another row: the sizes of the groups of two or more, added up.

    The same number as ``_duplicate_rows(...).count()`` in one grouped pass with no join
    back to the table; COUNT(*) needs no other column, so an index on the key (the unique
    index, when it is there) answers it alone.
    """
    base = model._base_manager.using(engine.alias)
    if condition is not None:
        base = base.filter(condition)
    keyed = base.annotate(**keys)
    if nulls_distinct:
        keyed = keyed.filter(**{f"{name}__isnull": False for name in keys})
    groups = keyed.values(*keys).annotate(_dbtools_n=Count("*")).filter(_dbtools_n__gt=1)
    if all(isinstance(e, F) for e in keys.values()):
        # Plain columns of a unique field or constraint: their index gives the rows in key
        # order, and the engine may group them in that order (engine.grouping_in_key_order).
        with engine.grouping_in_key_order():
            return groups.aggregate(_dbtools_total=Sum("_dbtools_n"))["_dbtools_total"] or 0
    return groups.aggregate(_dbtools_total=Sum("_dbtools_n"))["_dbtools_total"] or 0


def _duplicate_rows(model, engine: Engine, keys: dict, condition: Q | None = None, nulls_distinct: bool = True):
    """Rows sharing the same values of ``keys`` (name -> expression) with another row."""
    base = model._base_manager.using(engine.alias)
    if condition is not None:
        base = base.filter(condition)
    names = list(keys)
    keyed = base.alias(**keys)
    if nulls_distinct:
        # SQL unique indexes treat NULLs as distinct: rows with a NULL never collide.
        keyed = keyed.filter(**{f"{name}__isnull": False for name in names})
    plain_columns = all(isinstance(e, F) for e in keys.values())
    if len(names) == 1 and not (plain_columns and engine.duplicates_by_index_probe):
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


def constraint_rules(engine: Engine, model_list) -> list[Rule]:
    """Every CheckConstraint, UniqueConstraint and unique field of every model, as a query."""
    database = engine.alias
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
                        message=f"{label(model)} rows break the check {constraint.name}"
                        + (f" ({message})" if message else ""),
                        fix=f"Correct or delete those {table} rows; the rule is {label(model)}.Meta.constraints['{constraint.name}'].",
                        check=constraint.name,
                    )
                )
            elif isinstance(constraint, models.UniqueConstraint):
                if constraint.expressions:
                    keys = {f"_dbtools_k{i}": e for i, e in enumerate(constraint.expressions)}
                else:
                    keys = {f"_dbtools_k{i}": F(name) for i, name in enumerate(constraint.fields)}
                nulls_distinct = constraint.nulls_distinct is not False
                plain = not constraint.expressions and constraint.condition is None and nulls_distinct
                columns = tuple(sorted(model._meta.get_field(name).column for name in constraint.fields))
                rules.append(
                    Rule(
                        category="constraint_violations",
                        model=model,
                        name=constraint.name,
                        queryset=lambda m=model, k=keys, c=constraint, nd=nulls_distinct: _duplicate_rows(
                            m, engine, k, c.condition, nd
                        ),
                        count=lambda m=model, k=keys, c=constraint, nd=nulls_distinct: _duplicate_count(
                            m, engine, k, c.condition, nd
                        ),
                        message=f"{label(model)} rows share values that {constraint.name} says are unique"
                        + (f" ({message})" if message else ""),
                        fix=f"Rename or delete the duplicates in {table} so each value appears once.",
                        enforced_by=("unique", columns, "") if plain else None,
                    )
                )
        for f in model._meta.concrete_fields:
            # The column's own CHECK (a Positive*Field's ">= 0", a JSONField's JSON_VALID on
            # SQLite), exactly as the database declares it: then every CHECK of the table is
            # a rule here, and the engine's file check need not evaluate them again.
            check = column_check(f, engine.connection)
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
                        message=f"{label(model)}.{f.name} values break the column's check ({check_sql})",
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
                        queryset=lambda m=model, f=f: _duplicate_rows(m, engine, {"_dbtools_k0": F(f.attname)}),
                        count=lambda m=model, f=f: _duplicate_count(m, engine, {"_dbtools_k0": F(f.attname)}),
                        message=f"{label(model)}.{f.name} values that must be unique appear more than once",
                        fix=f"Rename or delete the duplicates in {table}.{f.column}.",
                        enforced_by=("unique", (f.column,), ""),
                    )
                )
        for fields in model._meta.unique_together:
            keys = {f"_dbtools_k{i}": F(model._meta.get_field(name).attname) for i, name in enumerate(fields)}
            rules.append(
                Rule(
                    category="constraint_violations",
                    model=model,
                    name=f"{'_'.join(fields)}_unique_together",
                    queryset=lambda m=model, k=keys: _duplicate_rows(m, engine, k),
                    count=lambda m=model, k=keys: _duplicate_count(m, engine, k),
                    message=f"{label(model)} rows repeat ({', '.join(fields)}), which must be unique together",
                    fix=f"Delete or change the duplicate ({', '.join(fields)}) rows in {table}.",
                    enforced_by=("unique", tuple(sorted(model._meta.get_field(n).column for n in fields)), ""),
                )
            )
    return rules


def inconsistency_rules(engine: Engine, model_list) -> list[Rule]:
    """What the schema cannot say: shared ports, names equal but for case, times in the future."""
    database = engine.alias
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
                    Server, engine, {"_dbtools_k0": F("port")}, Q(status__in=active, status__in_exact=active)
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
                queryset=lambda: _duplicate_rows(User, engine, {"_dbtools_k0": Lower("username")}),
                count=lambda: _duplicate_count(User, engine, {"_dbtools_k0": Lower("username")}),
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
                        message=f"{label(model)}.{f.name} is in the future",
                        fix=f"Check the clock of whatever wrote them, then set {f.column} to a true time (e.g. now).",
                    )
                )
    return rules


def data_rules(engine: Engine, model_list) -> list[Rule]:
    """Every data rule of these models: foreign keys, constraints, then what the schema cannot say."""
    return (
        foreign_key_rules(engine, model_list)
        + constraint_rules(engine, model_list)
        + inconsistency_rules(engine, model_list)
    )
