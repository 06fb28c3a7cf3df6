"""The refusal checks of a restore: what makes a backup one this database may be replaced with.

On the file alone (``check_file``): readable, a manifest (or ``--force``), its signature,
the engine, applied migrations not newer than the code; a file without a manifest must at
least be a sound dump of this engine. On the loaded scratch (``check_loaded``): an mcmanager
database (not a Flask-era file, not another application's), migrations known to the code,
row counts equal to the manifest's. Each check passed or failed is kept in ``Checks``, which
``restore --check`` shows; the first failure raises (RestoreRefused unless said otherwise).
"""

from __future__ import annotations

import os
from pathlib import Path

from django.db import connections

from .. import backups, signing
from ..engines import ENGINES, Engine, display_name
from ..errors import DbtoolsError, ForeignContent, RestoreRefused, VerificationFailed
from ..formatting import first_line
from ..schema_state import applied_migrations, newer_migrations, pending_migrations
from ..streams import Check, NotRegularFile, open_regular
from .source import dump_vendor

# A mcmanager database of this version has these, whatever its age (created by the
# first migrations of each app).
REQUIRED_TABLES = ("django_migrations", "accounts_user", "servers_server", "servers_configuration")
# The Flask application this project replaced kept its data in these tables.
FLASK_TABLES = frozenset({"user", "server", "configuration"})
FLASK_MESSAGE = (
    "{name} is a Flask-era mcmanager database (tables user, server, configuration), "
    "not a backup of this version; bring it in with: python manage.py import_legacy {name} --dry-run"
)


class Checks:
    """The checks done so far; ``refuse`` records the failing one and raises."""

    def __init__(self) -> None:
        self.items: list[Check] = []

    def passed(self, name: str, detail: str = "") -> None:
        self.items.append(Check(name, True, detail))

    def refuse(self, name: str, message: str, error: type[DbtoolsError] = RestoreRefused):
        self.items.append(Check(name, False, message))
        raise error(message)


def manifest_field(manifest, name: str, default=None):
    """A field of the manifest, or ``default`` for a file restored without one (--force)."""
    return default if manifest is None else getattr(manifest, name, default)


def isoformat(value) -> str | None:
    if value is None:
        return None
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def looks_like_flask(path: Path) -> bool:
    """A Flask-era mcmanager database: a database file with tables user, server, configuration
    and no django_migrations (whichever engine's file format it is in: SQLite's, in practice)."""
    for cls in ENGINES:
        tables = cls.tables_in_file(path)
        if tables is not None:
            return FLASK_TABLES <= tables and "django_migrations" not in tables
    return False


def _manifest_migrations(manifest) -> list[tuple[str, str]]:
    migrations = manifest_field(manifest, "migrations") or {}
    return [(app, name) for app, names in migrations.items() for name in names]


def check_file(path: Path, engine: Engine, force: bool, checks: Checks):
    """The checks that need only the file. Returns its manifest (None when forced without one)."""
    name = path.name
    try:
        with open_regular(path) as fh:
            size = os.fstat(fh.fileno()).st_size
            fh.read(1)
    except NotRegularFile as exc:
        checks.refuse("readable", str(exc))
    except OSError as exc:
        checks.refuse("readable", f"cannot read {path}: {exc.strerror or exc}")
    if size == 0:
        checks.refuse("readable", f"{name} is empty (0 bytes)")
    checks.passed("readable", f"{size} bytes")

    try:
        manifest = backups.read_manifest(path)
    except VerificationFailed as exc:
        if looks_like_flask(path):
            checks.refuse("mcmanager database", FLASK_MESSAGE.format(name=name))
        if not force:
            checks.refuse(
                "manifest",
                f"{exc}; a copy made by hand is restored only with --force",
            )
        checks.passed("manifest", f"none ({exc}); going on because of --force")
        manifest = None
    else:
        checks.passed(
            "manifest",
            f"{manifest_field(manifest, 'reason')} backup of {display_name(manifest_field(manifest, 'engine'))}",
        )
        _check_signature(manifest, name, force, checks)

    if manifest is not None:
        _check_manifest(manifest, name, engine, force, checks)
    else:
        _check_unvouched_dump(path, engine, checks)
    return manifest


def _check_manifest(manifest, name: str, engine: Engine, force: bool, checks: Checks) -> None:
    """The manifest's engine is the database's; its migrations are not newer than the code."""
    backup_engine = (manifest_field(manifest, "engine") or "").lower()
    if backup_engine != engine.vendor:
        checks.refuse(
            "engine",
            f"{name} is a {display_name(backup_engine)} backup; database '{engine.alias}' is {engine.display_name}",
        )
    checks.passed("engine", engine.display_name)
    newer = newer_migrations(_manifest_migrations(manifest))
    if newer:
        message = (
            f"{name} was made by a newer version: migrations {', '.join(newer[:5])}"
            f"{' ...' if len(newer) > 5 else ''} are unknown to this code"
        )
        if not force:
            checks.refuse("migrations", message + " (use --force to restore it anyway)")
        checks.passed("migrations", message + "; going on because of --force")
    else:
        checks.passed("migrations", "none newer than the code")


def _check_unvouched_dump(path: Path, engine: Engine, checks: Checks) -> None:
    """No manifest: at least the file must be a sound dump of this engine."""
    name = path.name
    kind = dump_vendor(path)
    if kind is None:
        checks.refuse("structure", f"{name} is not a database dump of any engine mcmanager knows")
    if kind != engine.vendor:
        checks.refuse(
            "engine",
            f"{name} is a {display_name(kind)} dump; database '{engine.alias}' is {engine.display_name}",
        )
    checks.passed("engine", engine.display_name)
    # The structural checks of backup verification (SQLite header and quick_check,
    # the whole pg_dump archive parses, the MariaDB dump is complete).
    try:
        with backups.open_dump(path) as stream:
            found, _ = engine.check_dump(stream, level="quick")
    except ForeignContent as exc:
        checks.refuse("content", f"{name} {exc}")
    except Exception as exc:
        found = [Check("structure", False, first_line(exc))]
    failed = [c for c in found if not c.ok]
    if failed:
        checks.refuse("structure", f"{name} is not a sound dump: {failed[0].name}: {failed[0].detail}")
    checks.passed("structure", ", ".join(c.name for c in found))


def _check_signature(manifest, name: str, force: bool, checks: Checks) -> None:
    """A backup is ours only when its manifest is signed by this installation's key; else --force."""
    authenticity = manifest.authenticity
    if manifest.signed:
        checks.passed("signature", authenticity.detail)
    elif not force:
        checks.refuse("signature", signing.refusal(name, authenticity))
    else:
        checks.passed("signature", f"{authenticity.detail}; going on because of --force")


def check_loaded(alias: str, scratch, path: Path, manifest, force: bool, checks: Checks):
    """Checks on the scratch loaded under the connection ``alias``: ours, migrations known,
    row counts as in the manifest. Returns its row counts and its pending migrations."""
    name = path.name
    connection = connections[alias]
    tables = set(connection.introspection.table_names())
    if FLASK_TABLES <= tables and "django_migrations" not in tables:
        checks.refuse("mcmanager database", FLASK_MESSAGE.format(name=name))
    missing = [t for t in REQUIRED_TABLES if t not in tables]
    if missing:
        checks.refuse(
            "mcmanager database",
            f"{name} is not a mcmanager database: table{'s' if len(missing) > 1 else ''} {', '.join(missing)} missing",
        )
    checks.passed("mcmanager database", f"{len(tables)} tables")

    newer = newer_migrations(applied_migrations(alias))
    if newer and not force:
        checks.refuse(
            "migrations",
            f"{name} has migrations this code does not have: {', '.join(newer[:5])} (use --force to restore it anyway)",
        )

    counts = dict(scratch.row_counts)
    expected = manifest_field(manifest, "row_counts")
    if manifest is not None:  # read_manifest proved row_counts an object of counts
        wrong = [
            f"{table} {counts.get(table)} (manifest {n})"
            for table, n in sorted(expected.items())
            if counts.get(table) != n
        ]
        if wrong:
            checks.refuse("row counts", f"{name} does not load as its manifest says: {', '.join(wrong[:5])}")
        checks.passed("row counts", f"{len(expected)} tables as in the manifest")
    return counts, pending_migrations(alias)
