"""What every engine offers. Each vendor module subclasses ``Engine``.

Sections (each owned by one feature; edit only yours):
- identity: vendor, display name, server version, a description without secrets;
- backup: dump a consistent snapshot, check a dump's structure, load a dump into a
  scratch database (also used by ``--verify full`` and ``restore --check``);
- restore: replace the live database atomically with a dump's content;
- monitoring and validation: sizes, connections, the engine's own integrity checks.
- maintenance: the per-engine SQL of ``manage.py maintain`` and when it would pay.
"""

from django.db import connections


class Engine:
    vendor: str = ""  # Django's connection.vendor: "sqlite", "postgresql", "mysql"
    display_name: str = ""  # "SQLite", "PostgreSQL", "MariaDB"
    dump_extension: str = ""  # extension of an uncompressed dump: "sqlite3", "pgdump", "sql"

    def __init__(self, alias: str) -> None:
        self.alias = alias

    @property
    def connection(self):
        return connections[self.alias]

    @property
    def settings_dict(self) -> dict:
        return self.connection.settings_dict

    # --- identity ---------------------------------------------------------

    def describe(self) -> str:
        """Where the database is, for messages: never the password."""
        s = self.settings_dict
        if self.vendor == "sqlite":
            return f"{self.display_name} {s['NAME']}"
        host = s.get("HOST") or "localhost"
        port = f":{s['PORT']}" if s.get("PORT") else ""
        return f"{self.display_name} {s.get('USER') or ''}@{host}{port}/{s['NAME']}"

    def server_version(self) -> str:
        raise NotImplementedError

    # --- restore ----------------------------------------------------------

    # Whether the scratch stays readable, unchanged, while swap_in() runs (SQLite: the swap
    # only reads it). Then restore validates the scratch during the swap instead of the
    # live database after it. Not on PostgreSQL and MariaDB, whose swap moves the scratch.
    scratch_readable_during_swap = False

    def prepare_swap(self, scratch: str) -> None:
        """Whatever swap_in() would otherwise do to the scratch itself, done beforehand."""

    # --- maintenance --------------------------------------------------------

    def maintain(self, *, analyze: bool, vacuum: bool, reindex: bool, dry_run: bool) -> list[str]:
        """Run (or with ``dry_run`` only list) the housekeeping that pays on this engine; one
        line per step. The caller (dbtools.maintenance) holds the backup lock."""
        raise NotImplementedError

    def maintenance_advice(self) -> list[str]:
        """Lines recommending ``maintain``, only where a figure says it would pay; [] otherwise."""
        raise NotImplementedError
