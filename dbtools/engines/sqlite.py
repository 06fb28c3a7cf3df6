"""SQLite: everything vendor-specific about it."""

from .base import Engine


class SQLiteEngine(Engine):
    vendor = "sqlite"
    display_name = "SQLite"
    dump_extension = "sqlite3"

    # --- identity ---------------------------------------------------------

    # --- backup -----------------------------------------------------------

    # --- restore ----------------------------------------------------------

    # --- monitoring and validation ---------------------------------------
