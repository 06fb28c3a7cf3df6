"""One backup or restore per database at a time.

``database_lock(database, purpose)`` takes the lock or raises ``LockHeld`` at once, naming
the holder. How a lock is held is the engine's (``Engine.lock``, implemented in
dbtools/engines/locking.py): it dies with its holder and is keyed on what is locked,
never on how the connection settings spell it. This module adds what is the same for
every engine: the holder's description ("backup pid 123 since ...") and the private
directory (``<instance>/locks``, 0700) where an engine that has no per-connection label
others can read (MariaDB) leaves that description.
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS
from django.utils import timezone

from . import streams
from .engines import Engine, get_engine


def holder_text(purpose: str) -> str:
    """How this process describes itself to whoever meets its lock."""
    since = timezone.now().strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{purpose} pid {os.getpid()} since {since}"


def private_directory() -> Path | None:
    """``<instance>/locks``: created 0700, this user's, not a symlink; None when it cannot be had."""
    return streams.private_directory(Path(settings.INSTANCE_DIR) / "locks")


@contextmanager
def database_lock(database: str | Engine = DEFAULT_DB_ALIAS, purpose: str = "backup") -> Iterator[str]:
    """Hold the backup/restore lock of ``database`` (an alias or its Engine) for the block;
    LockHeld at once if taken. Yields the holder's description."""
    engine = database if isinstance(database, Engine) else get_engine(database)
    with engine.lock(holder_text(purpose), private_directory) as holder:
        yield holder
