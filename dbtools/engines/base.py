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

    def check_connection(self) -> None:
        """DatabaseUnreachable (exit 2), in one line without the password, unless the database answers."""
        from ..errors import DatabaseUnreachable

        try:
            self.connection.ensure_connection()
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
            password = self.settings_dict.get("PASSWORD")
            if password:
                first = first.replace(str(password), "***")
            raise DatabaseUnreachable(f"database '{self.alias}' is unreachable ({self.describe()}): {first}") from None

    def check_live_database(self) -> str | None:
        """Before a restore or a check: can the live database take a restore? Touches nothing.

        Raises DatabaseUnreachable (exit 2) when it cannot; returns a note for the operator
        when the restore would create it, else None. PostgreSQL and MariaDB: it must
        answer (a missing database is reported by the server, and is created empty
        before a restore).
        """
        self.check_connection()
        return None

    # --- restore ----------------------------------------------------------

    # Whether the scratch stays readable, unchanged, while swap_in() runs (SQLite: the swap
    # only reads it). Then restore validates the scratch during the swap instead of the
    # live database after it. Not on PostgreSQL and MariaDB, whose swap moves the scratch.
    scratch_readable_during_swap = False

    def drop_scratch_leftovers(self) -> list[str]:
        """Remove scratch databases (or files) of this database whose creating process is gone.

        A scratch is named ``..._scratch_<pid>_<random>`` by the process that made it; one
        whose pid no longer runs on this machine (and, on a server, that nobody is
        connected to) is the leftover of a killed run. Returns the names removed.
        """
        return []

    def backup_identity(self) -> str:
        """Which database a backup's manifest says it is of (``database_name``), so health,
        --latest and retention count a backup only for its database, whatever alias or URL
        spelling reached it: the database's name on its server."""
        return str(self.settings_dict["NAME"])

    def plaintext_workdir(self, backup_directory):
        """Where write_dump may put a plain snapshot of the database while an encrypted backup
        is written: never the backup directory. Engines that stream (no snapshot file) ignore it."""
        return backup_directory

    def prepare_swap(self, scratch: str) -> None:
        """Whatever swap_in() would otherwise do to the scratch itself, done beforehand."""

    def integrity_after_swap(self) -> list[str]:
        """The engine's full integrity check of the live database, run after a restore's swap.

        The lines reporting damage; none when the database is sound (or the engine has no
        such check beyond what loading the scratch proved).
        """
        return []

    def integrity_of_scratch(self, scratch: str) -> list[str]:
        """The same check, of the scratch while swap_in() copies it: only for engines whose
        swap makes the live database an exact copy of the scratch (scratch_readable_during_swap)."""
        raise NotImplementedError

    # --- monitoring and validation ---------------------------------------

    def foreign_schema_objects(self) -> list[dict]:
        """Triggers, views, functions, procedures (and the like) in the live database.

        mcmanager's migrations create none of them on any engine, so each one found was
        put there by someone else and runs (or answers queries) with the application's
        rights. Each is a dict: ``kind`` ("trigger", "view", ...), ``name``, ``table`` (the
        table it belongs to, or ""), ``drop`` (the statement that removes it, quoted).
        """
        raise NotImplementedError

    # --- maintenance --------------------------------------------------------

    def maintain(self, *, analyze: bool, vacuum: bool, reindex: bool, dry_run: bool) -> list[str]:
        """Run (or with ``dry_run`` only list) the housekeeping that pays on this engine; one
        line per step. The caller (dbtools.maintenance) holds the backup lock."""
        raise NotImplementedError

    def maintenance_advice(self) -> list[str]:
        """Lines recommending ``maintain``, only where a figure says it would pay; [] otherwise."""
        raise NotImplementedError

    # --- restore speed (issue 16: restore as fast as the engine's tools) ----

    # Whether restore validates the scratch, while prepare_swap() runs, instead of the live
    # database after the swap: for engines whose swap_in() moves the scratch whole, its
    # content unchanged, under the live name (PostgreSQL, MariaDB). The report is stored
    # as the live database's, as with scratch_readable_during_swap.
    validate_scratch_before_swap = False

    def finish_swap(self) -> None:
        """Wait for what swap_in() left running in the background: dropping the replaced
        database (PostgreSQL, MariaDB), which is off the restore's critical path (it runs
        while the restored database is validated). Called once the restore is done; raises
        nothing (a replaced database left behind is dropped by the next restore's
        drop_swap_leftovers)."""
