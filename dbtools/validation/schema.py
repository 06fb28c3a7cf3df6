"""The schema checks: the database's structure and migrations against the code's models.

Missing tables, columns, indexes and named constraints (``structure_problems``, which
also says which tables are whole enough for the data rules); migrations applied or not
(``migration_problems``, through dbtools.schema_state); triggers, views and routines our
migrations did not create (``foreign_object_problems``); and the engine's own integrity
check of the file or server (``engine_problems``). Each takes the run's Engine.
"""

from __future__ import annotations

from django.db import models

from ..engines import Engine
from ..schema_state import migration_state
from .report import Problem
from .rules import SAMPLE_SIZE, label


def migration_problems(engine: Engine) -> list[Problem]:
    """Migrations the code has and the database lacks, and the reverse (database newer than code)."""
    state = migration_state(engine.alias)
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


def structure_problems(engine: Engine, model_list) -> tuple[list[Problem], set[str]]:
    """Missing tables, columns, indexes and named constraints; returns them and the usable tables."""
    connection = engine.connection
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
                        message=f"table {table} of {label(model)} is missing",
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
            problems += _index_and_constraint_problems(engine, model)
    return problems, usable


def _index_and_constraint_problems(engine: Engine, model) -> list[Problem]:
    table = model._meta.db_table
    column_sets, found_names = engine.indexes_and_constraints(table)
    names = {name.lower() for name in found_names}
    features = engine.connection.features
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


def foreign_object_problems(engine: Engine) -> list[Problem]:
    """Triggers, views, functions, procedures and the like that mcmanager's migrations did not create."""
    problems = []
    for found in engine.foreign_schema_objects():
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
    engine: Engine, covered_fk_tables: set[str], deep: bool = False, checks_covered: dict[str, set[str]] | None = None
) -> list[Problem]:
    """The engine's own check of the file (or server); the model tables' rows are the data rules' business."""
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
        for p in engine.integrity_problems(covered_fk_tables, deep=deep, checks_covered=checks_covered)
    ]
