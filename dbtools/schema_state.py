"""Where a database stands against the code's migrations: the one place that asks.

- ``known_migrations()``: every migration the code has, as (app, name);
- ``applied_migrations(alias)``: what a database's django_migrations table records;
- ``newer_migrations(applied)``: applied migrations of our apps the code does not have
  (a database or backup newer than the code);
- ``pending_migrations(alias)``: what ``migrate`` would apply, in order;
- ``migration_plan(alias, app_label, name)``: the steps of ``migrate [app [name]]``;
- ``migration_state(alias)``: the counts and names the health check and validation show;
- ``manifest_schema_state(applied)``: "current", "older than the code (...)", "newer ...".

Backup, restore, validation and monitoring use these instead of asking Django's migration
loader themselves, so they agree on what "current" means.
"""

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.recorder import MigrationRecorder


def known_migrations() -> set[tuple[str, str]]:
    """Every migration the code has, as (app, name)."""
    return set(MigrationLoader(None, ignore_no_migrations=True).disk_migrations)


def applied_migrations(alias: str = DEFAULT_DB_ALIAS) -> set[tuple[str, str]]:
    """The (app, name) pairs the database's django_migrations table records."""
    return set(MigrationRecorder(connections[alias]).applied_migrations())


def newer_migrations(applied, known: set[tuple[str, str]] | None = None) -> list[str]:
    """Applied migrations of our apps that the code does not have, as "app.name", sorted."""
    known = known_migrations() if known is None else known
    apps = {app for app, _ in known}
    return sorted(f"{app}.{name}" for app, name in applied if app in apps and (app, name) not in known)


def migration_plan(alias: str = DEFAULT_DB_ALIAS, app_label: str | None = None, migration_name: str | None = None):
    """The (migration, backwards) steps ``migrate [app_label [migration_name]]`` would run."""
    executor = MigrationExecutor(connections[alias])
    graph = executor.loader.graph
    if app_label and migration_name:
        if migration_name == "zero":
            targets = [(app_label, None)]
        else:
            targets = [(app_label, executor.loader.get_migration_by_prefix(app_label, migration_name).name)]
    elif app_label:
        targets = [node for node in graph.leaf_nodes() if node[0] == app_label]
    else:
        targets = graph.leaf_nodes()
    return executor.migration_plan(targets)


def pending_migrations(alias: str = DEFAULT_DB_ALIAS) -> list[str]:
    """Migrations of the code not applied in the database, as "app.name" in the order they would run."""
    return [f"{m.app_label}.{m.name}" for m, backwards in migration_plan(alias) if not backwards]


def migration_state(alias: str = DEFAULT_DB_ALIAS) -> dict:
    """Counts of applied, unapplied and unknown migrations, with the names of the latter two."""
    executor = MigrationExecutor(connections[alias])
    loader = executor.loader
    plan = executor.migration_plan(loader.graph.leaf_nodes())
    unapplied = [f"{m.app_label}.{m.name}" for m, backwards in plan if not backwards]
    known = set(loader.migrated_apps)
    unknown = sorted(
        f"{app}.{name}"
        for app, name in loader.applied_migrations
        if app in known and (app, name) not in loader.disk_migrations
    )
    return {
        "applied": len(loader.applied_migrations),
        "unapplied": len(unapplied),
        "unknown": len(unknown),
        "unapplied_names": unapplied,
        "unknown_names": unknown,
    }


def manifest_schema_state(applied, known: set[tuple[str, str]] | None) -> str:
    """A backup's migrations (its manifest's) against the code's: "current", "older than the
    code (n migrations to apply)", "newer than the code (n unknown migrations)"; "" without ``known``."""
    if known is None:
        return ""
    applied = set(applied)
    unknown = applied - known
    if unknown:
        return f"newer than the code ({len(unknown)} unknown migrations)"
    missing = known - applied
    if missing:
        return f"older than the code ({len(missing)} migrations to apply)"
    return "current"
