"""The cache of SQLite's empty migrated schema: the file our migrations make for a set of
migrations, kept so a restore copies it instead of running the migrations into an empty
file each time (sqlite_restore.py's _migrate_new_file).
"""

import hashlib
import logging
import os
import shutil
import sqlite3
import sys
from pathlib import Path

import django
from django.conf import settings

from ..streams import private_directory, unique_suffix

logger = logging.getLogger("dbtools.backup")


def schema_template(plan) -> Path | None:
    """Where the empty file that ``plan``'s migrations make is cached; None without a private cache.

    ``<instance>/cache/sqlite-schema/<key>.sqlite3``; the key is a sha256 of Django's and
    SQLite's versions and, for each migration of the plan in order, its app, name and
    source file's bytes: a migration edited in place gets a new template. The directory
    is created 0700 and must be this user's, like the lock directory; a template is
    written whole under a temporary name and renamed into place.
    """
    directory = Path(settings.INSTANCE_DIR) / "cache" / "sqlite-schema"
    if private_directory(directory.parent) is None or private_directory(directory) is None:
        return None
    digest = hashlib.sha256(f"django {django.__version__}; sqlite {sqlite3.sqlite_version}".encode())
    for migration, backwards in plan:
        source = getattr(sys.modules.get(migration.__module__), "__file__", None)
        if backwards or source is None:
            return None
        digest.update(f"\0{migration.app_label}.{migration.name}\0".encode())
        try:
            digest.update(Path(source).read_bytes())
        except OSError:
            return None
    return directory / f"{digest.hexdigest()}.sqlite3"


def store_template(path: Path, template: Path) -> None:
    """Keep a copy of the freshly migrated ``path`` (closed: its WAL folded in) as ``template``.

    Best effort: a failure costs the next restore its speed only."""
    tmp = template.with_name(f".{template.name}.{unique_suffix()}")
    try:
        if any(Path(f"{path}{side}").exists() for side in ("-wal", "-journal")):
            return  # not a closed, whole file
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with open(path, "rb") as src, os.fdopen(fd, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        os.replace(tmp, template)
    except OSError as exc:
        logger.info("could not cache the migrated schema in %s: %s", template.parent, exc)
    finally:
        tmp.unlink(missing_ok=True)
