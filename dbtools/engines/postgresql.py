"""PostgreSQL: everything vendor-specific about it."""

from .base import Engine


class PostgreSQLEngine(Engine):
    vendor = "postgresql"
    display_name = "PostgreSQL"
    dump_extension = "pgdump"

    # --- identity ---------------------------------------------------------

    # --- backup -----------------------------------------------------------

    # --- restore ----------------------------------------------------------

    # --- monitoring and validation ---------------------------------------
