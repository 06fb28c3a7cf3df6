"""One module per database vendor. Everything vendor-specific lives here and nowhere else.

``ENGINES`` is the one registry; ``get_engine(alias)`` returns the engine of a connection
alias, ``engine_class(vendor)`` the class for a vendor as manifests store it ("sqlite",
"postgresql", "mysql"), ``engine_for_dump(head)`` the class whose dump starts with those
bytes. Services call an engine's methods and never branch on the vendor themselves.

The contract is ``base.Engine`` (abstract: what each engine must implement); its result
types are in ``results``; each engine's lock in ``locking``.
"""

from django.db import DEFAULT_DB_ALIAS, connections

from ..errors import CouldNotRun
from .base import Engine
from .mysql import MySQLEngine
from .postgresql import PostgreSQLEngine
from .sqlite import SQLiteEngine

ENGINES: tuple[type[Engine], ...] = (SQLiteEngine, PostgreSQLEngine, MySQLEngine)


def engine_class(vendor: str | None) -> type[Engine] | None:
    """The engine class of a vendor name (case-insensitive), or None."""
    for cls in ENGINES:
        if cls.vendor == (vendor or "").lower():
            return cls
    return None


def display_name(vendor: str | None) -> str:
    """A vendor ("mysql", as manifests store it) as people say it ("MariaDB")."""
    cls = engine_class(vendor)
    return cls.display_name if cls else (vendor or "unknown")


def engine_for_dump(head: bytes) -> type[Engine] | None:
    """The engine class whose (decompressed) dump starts with ``head``, or None."""
    for cls in ENGINES:
        if cls.looks_like_dump(head):
            return cls
    return None


def get_engine(alias: str = DEFAULT_DB_ALIAS) -> Engine:
    """The engine of the connection ``alias``; CouldNotRun for a vendor mcmanager does not support."""
    vendor = connections[alias].vendor
    cls = engine_class(vendor)
    if cls is None:
        raise CouldNotRun(f"database '{alias}' uses {vendor}, which mcmanager does not support")
    return cls(alias)


__all__ = ["ENGINES", "Engine", "display_name", "engine_class", "engine_for_dump", "get_engine"]
