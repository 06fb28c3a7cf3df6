"""One module per database vendor. Everything vendor-specific lives here and nowhere else.

``get_engine(alias)`` returns the engine for a connection alias; services call its
methods and never branch on the vendor themselves.
"""

from django.db import DEFAULT_DB_ALIAS, connections

from .base import Engine


def get_engine(alias: str = DEFAULT_DB_ALIAS) -> Engine:
    from .mysql import MySQLEngine
    from .postgresql import PostgreSQLEngine
    from .sqlite import SQLiteEngine

    vendor = connections[alias].vendor
    for engine_class in (SQLiteEngine, PostgreSQLEngine, MySQLEngine):
        if engine_class.vendor == vendor:
            return engine_class(alias)
    from ..errors import CouldNotRun

    raise CouldNotRun(f"database '{alias}' uses {vendor}, which mcmanager does not support")


__all__ = ["Engine", "get_engine"]
