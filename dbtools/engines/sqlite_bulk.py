"""SQLite's fast bulk load (the "demo data (bulk loading)" section of the engine contract).

Used by ``SQLiteEngine.bulk_load_table`` and ``bulk_load_session``: one transaction per
table with its secondary indexes built once at the end, and for the whole load a big
page cache, CHECKs and foreign keys checked per batch by the caller instead of per row,
and a rollback journal instead of the WAL when the database is ours alone.
"""

from contextlib import contextmanager

from django.db import OperationalError, transaction


@contextmanager
def load_table(connection, table: str):
    """The whole table in one transaction, its secondary indexes built once at the end.

    Maintaining four indexes on random keys row by row is most of SQLite's insert
    time; building them after the rows, from sorted keys, costs a fraction of it.
    DDL is transactional in SQLite, so a failure (or a kill) rolls the indexes back
    with the rows, and readers never see the table without them. (The other engines
    keep one transaction per batch.)
    """
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        cursor.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = %s AND sql IS NOT NULL",
            [table],
        )
        indexes = cursor.fetchall()
        for name, _sql in indexes:
            cursor.execute(f"DROP INDEX {connection.ops.quote_name(name)}")
        yield
        for _name, sql in indexes:
            cursor.execute(sql)


def _leave_wal(cursor) -> tuple[int] | None:
    """Load through a rollback journal instead of the WAL, when no other connection is open.

    In WAL mode every new page is written twice: into the WAL at commit, then
    into the database by the checkpoint. A rollback journal keeps only the
    original content of pages that already existed; pages appended past the end
    of the file are written once, and a commit is as atomic as in WAL mode. The
    switch needs the database to itself: while any other connection is open
    SQLite refuses it and the load simply stays in WAL mode. Returns what to
    restore afterwards, or None when nothing changed.
    """
    cursor.execute("PRAGMA journal_mode")
    if cursor.fetchone()[0].lower() != "wal":
        return None
    cursor.execute("PRAGMA synchronous")
    previous_synchronous = int(cursor.fetchone()[0])
    cursor.execute("PRAGMA busy_timeout")
    previous_timeout = int(cursor.fetchone()[0])
    # Ask once, without waiting: a busy database answers "locked" at once.
    cursor.execute("PRAGMA busy_timeout = 0")
    try:
        cursor.execute("PRAGMA journal_mode = DELETE")
        mode = cursor.fetchone()[0].lower()
    except OperationalError:
        return None
    finally:
        cursor.execute(f"PRAGMA busy_timeout = {previous_timeout}")
    if mode != "delete":
        return None
    # NORMAL is safe with a WAL; a rollback journal needs FULL to survive a power cut.
    cursor.execute("PRAGMA synchronous = FULL")
    return (previous_synchronous,)


def _back_to_wal(cursor, previous_synchronous: int) -> None:
    try:
        cursor.execute("PRAGMA journal_mode = WAL")
    except OperationalError:
        pass  # Busy: every new connection of ours asks for WAL again (settings' init_command).
    cursor.execute(f"PRAGMA synchronous = {previous_synchronous}")


@contextmanager
def load_session(connection):
    """A bigger page cache, CHECKs and foreign keys checked per batch instead of per row; yields True.

    SQLite re-evaluates each CHECK for every row, and an ``IN (...)`` list in a
    CHECK builds a temporary table each time: about a microsecond a row per list.
    A foreign key costs a lookup per row inside the insert (2 s at a million
    servers). The caller (``dbtools.demo.writer.BulkWriter.verify``) checks the same
    rules and keys set-based, inside the table's transaction, so a bad row still never
    commits. The load goes through a rollback journal when it can (``_leave_wal``).
    """
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA cache_size")
        previous_cache = int(cursor.fetchone()[0])
        cursor.execute("PRAGMA temp.cache_size")
        previous_temp_cache = int(cursor.fetchone()[0])
        # 512 MiB, this connection only, allocated as pages are used: a million servers
        # and their indexes fit, so nothing spills to the WAL before the commit.
        cursor.execute("PRAGMA cache_size = -524288")
        # The lookup tables the servers' INSERT ... SELECT joins per row (a few MiB at
        # a million servers) stay in memory instead of being read back from the temp file.
        cursor.execute("PRAGMA temp.cache_size = -65536")
        cursor.execute("PRAGMA ignore_check_constraints = ON")
        # Enforcing a foreign key costs a lookup per row inside the insert, dearer than
        # the same lookup set-based in the caller's verify(). (Outside a transaction only: inside one
        # SQLite keeps enforcing them, and verify() checks them again.)
        cursor.execute("PRAGMA foreign_keys")
        previous_foreign_keys = int(cursor.fetchone()[0])
        cursor.execute("PRAGMA foreign_keys = OFF")
        # Inside a transaction (a test's) the journal mode cannot change.
        journal = None if connection.in_atomic_block else _leave_wal(cursor)
    try:
        yield True
    finally:
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA ignore_check_constraints = OFF")
            cursor.execute(f"PRAGMA foreign_keys = {previous_foreign_keys}")
            if journal:
                _back_to_wal(cursor, *journal)
            cursor.execute(f"PRAGMA cache_size = {previous_cache}")
            cursor.execute(f"PRAGMA temp.cache_size = {previous_temp_cache}")
