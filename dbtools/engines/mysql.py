"""MariaDB: everything vendor-specific about it."""

from .base import Engine


class MySQLEngine(Engine):
    vendor = "mysql"
    display_name = "MariaDB"
    dump_extension = "sql"

    # --- identity ---------------------------------------------------------

    # --- backup -----------------------------------------------------------

    # --- restore ----------------------------------------------------------

    # --- monitoring and validation ---------------------------------------
