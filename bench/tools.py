"""Per engine, what ``make bench`` compares our commands with: one small table each.

The suite (``bench/suite.py``) is written once; an engine's entry here says which of its
own tools do the same jobs, how its client runs a statement or a script, and which
targets (issue 8) its figures are held to. Commands are bash templates:

- ``{db}``: the bench database (a file path on SQLite), quoted;
- one placeholder per program of ``programs`` (``{psql}``, ``{pg_dump}``, ``{mariadb_dump}``...):
  the tool with the connection arguments the engine gives it (``Engine.tool_command``;
  the password and TLS options travel in the environment);
- one per file of ``files`` (in the engine's tools directory), quoted;
- ``{scratch}``: a scratch database name of this run; ``{dbb}``: django-dbbackup's output
  directory; ``{python}``: this Python; ``{validate_sql}``: validate's SQL as a file;
- ``{sql}`` (``query`` and ``server_query`` only): the statement, quoted.

A ``Comparison`` with ``env="dbbackup"`` runs with our settings' environment (django-dbbackup
reads DATABASE_URL) instead of the tools' one.
"""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Comparison:
    label: str
    command: str
    env: str = "tools"  # or "dbbackup"


@dataclass(frozen=True)
class Ratio:
    """Our median over the tool's, of the per-round ratios, at most ``limit`` (below it when ``strict_below``)."""

    label: str
    ours: str
    theirs: str
    limit: float
    aim: float | None = None
    strict_below: bool = False


@dataclass(frozen=True)
class Seconds:
    """A median wall time below ``limit`` seconds."""

    label: str
    item: str
    limit: float


@dataclass(frozen=True)
class GenerateRate:
    """generate_demo_data's rows per second into a fresh database, at least ``limit``."""

    label: str = "generate_demo_data rows per second"
    limit: int = 100_000


@dataclass(frozen=True)
class Tools:
    programs: tuple[str, ...]
    query: str  # one statement in the bench database
    server_query: str | None  # one statement outside it; None: no server to ask (SQLite)
    version: str  # a command whose output names the engine's version
    version_format: str  # its display: "{line}" (the first line) or "{words[0]}" and text around
    settle: str  # the statement that leaves a freshly generated database as an operator's would be
    backup: tuple[Comparison, ...]  # the references of ``backup``, in the order they run
    backup_ratios: tuple[tuple[str, str], ...]
    full: Comparison  # the reference of ``backup --verify full``
    validate: Comparison  # validate's SQL run by the engine's client
    targets: tuple = ()
    after_backup: tuple[Comparison, ...] = ()  # measured alone, after the backup comparison
    files: dict[str, str] = field(default_factory=dict)
    generate: bool = False  # measure generate_demo_data's rows per second (into a fresh database)
    tool_version: str | None = None  # the dump tool's version, for the report's machine lines


SQLITE_BACKUP_CHECKED = (
    "rm -f {copy}; {sqlite3} {db} '.backup {copy}' && "
    "test \"$({sqlite3} {copy} 'PRAGMA %s')\" = ok && sha256sum {copy} >/dev/null"
)
MARIADB_DUMP = "{mariadb_dump} --single-transaction --quick --routines --no-create-db {db}"

# Every quick_check and integrity_check here opens its file read-write, as ours do on a
# backup's copy: SQLite leaves a read-only database's CHECK constraints unparsed, and its
# quick_check then checks the structure alone.
SQLITE = Tools(
    programs=("sqlite3",),
    files={"copy": "copy.sqlite3"},
    query="{sqlite3} {db} {sql}",
    server_query=None,
    version="{sqlite3} --version",
    version_format="sqlite3 {words[0]}",
    settle="PRAGMA wal_checkpoint(TRUNCATE);",
    backup=(
        Comparison(".backup + quick_check + sha256sum", SQLITE_BACKUP_CHECKED % "quick_check"),
        Comparison(
            "dbbackup + quick_check",
            "rm -rf {dbb}/*; {python} bench/dbbackup_tool.py --noinput -q -O {dbb}/out.sqlite3 && "
            "test \"$({sqlite3} {dbb}/out.sqlite3 'PRAGMA quick_check')\" = ok",
            env="dbbackup",
        ),
        Comparison("sqlite3 .backup", "rm -f {copy}; {sqlite3} {db} '.backup {copy}'"),
        Comparison("cp", "rm -f {copy}; cp {db} {copy}"),
    ),
    backup_ratios=(
        ("backup", ".backup + quick_check + sha256sum"),
        ("backup", "dbbackup + quick_check"),
        ("backup", "sqlite3 .backup"),
        ("backup", "cp"),
    ),
    full=Comparison(".backup + integrity_check + sha256sum", SQLITE_BACKUP_CHECKED % "integrity_check"),
    validate=Comparison("validate's SQL in sqlite3", "{sqlite3} {db} < {validate_sql} >/dev/null"),
    generate=True,
    targets=(
        Ratio("backup vs .backup + quick_check + sha256sum", "backup", ".backup + quick_check + sha256sum", 1.3, 1.0),
        Ratio(
            "backup --verify full vs .backup + integrity_check + sha256sum",
            "backup --verify full",
            ".backup + integrity_check + sha256sum",
            1.3,
        ),
        Ratio("backup vs dbbackup + quick_check", "backup", "dbbackup + quick_check", 1.0, strict_below=True),
        Seconds("validate (command, wall)", "validate", 5.0),
        Ratio("validate vs its SQL in sqlite3", "validate", "validate's SQL in sqlite3", 1.5),
        GenerateRate(),
    ),
)

POSTGRESQL = Tools(
    programs=("psql", "pg_dump", "pg_restore", "createdb", "dropdb"),
    files={"archive": "dump.pgc", "zarchive": "dump.pgc.zst"},
    query="{psql} -X -q -At -d {db} -c {sql}",
    server_query="{psql} -X -q -At -d postgres -c {sql}",
    version="{psql} -X -q -At -d postgres -c 'SHOW server_version'",
    version_format="PostgreSQL {line}",
    tool_version="pg_dump --version",
    settle="VACUUM ANALYZE",
    backup=(
        Comparison("pg_dump -Fc", "{pg_dump} -Fc -d {db} -f {archive}"),
        Comparison("pg_dump -Fc -Z0 | zstd -3 -T2", "{pg_dump} -Fc -Z0 -d {db} | zstd -q -3 -T2 -f -o {zarchive}"),
        Comparison(
            "dbbackup",
            "rm -rf {dbb}/*; {python} bench/dbbackup_tool.py --noinput -q -O {dbb}/out.psql.bin",
            env="dbbackup",
        ),
    ),
    backup_ratios=(
        ("backup", "pg_dump -Fc"),
        ("backup", "pg_dump -Fc -Z0 | zstd -3 -T2"),
        ("backup", "dbbackup"),
    ),
    after_backup=(Comparison("pg_restore -f /dev/null (read the archive)", "{pg_restore} -f /dev/null {archive}"),),
    full=Comparison(
        "pg_dump -Fc + pg_restore into scratch",
        "{pg_dump} -Fc -d {db} -f {archive} && {dropdb} --if-exists --force {scratch} && {createdb} {scratch} && "
        "{pg_restore} -d {scratch} {archive} && {dropdb} --force {scratch}",
    ),
    validate=Comparison("validate's SQL in psql", "{psql} -X -q -d {db} -f {validate_sql} -o /dev/null"),
    targets=(
        Ratio("backup vs pg_dump -Fc", "backup", "pg_dump -Fc", 0.6, 0.4),
        Ratio("validate vs its SQL in psql", "validate", "validate's SQL in psql", 1.5),
    ),
)

MARIADB = Tools(
    programs=("mariadb", "mariadb-dump"),
    files={"plain": "dump.sql", "zdump": "dump.sql.zst"},
    query="{mariadb} -N -B {db} -e {sql}",
    server_query="{mariadb} -N -B -e {sql}",
    version="{mariadb} -N -B -e 'SELECT VERSION()'",
    version_format="MariaDB {line}",
    tool_version="mariadb-dump --version",
    settle="ANALYZE TABLE accounts_user, servers_server, servers_configuration",
    backup=(
        Comparison("mariadb-dump --single-transaction", MARIADB_DUMP + " > {plain}"),
        Comparison(
            "mariadb-dump | zstd -3 -T2 | sha256sum",
            MARIADB_DUMP + " | zstd -q -3 -T2 | tee {zdump} | sha256sum >/dev/null",
        ),
        Comparison(
            "dbbackup", "rm -rf {dbb}/*; {python} bench/dbbackup_tool.py --noinput -q -O {dbb}/out.sql", env="dbbackup"
        ),
    ),
    backup_ratios=(
        ("backup", "mariadb-dump | zstd -3 -T2 | sha256sum"),
        ("backup", "mariadb-dump --single-transaction"),
        ("backup", "dbbackup"),
    ),
    full=Comparison(
        "dump | zstd + load into scratch",
        MARIADB_DUMP + " | zstd -q -3 -T2 -f -o {zdump} && "
        "{mariadb} -e 'DROP DATABASE IF EXISTS `{scratch}`; CREATE DATABASE `{scratch}`' && "
        "zstd -q -dc {zdump} | {mariadb} {scratch} && {mariadb} -e 'DROP DATABASE `{scratch}`'",
    ),
    validate=Comparison("validate's SQL in mariadb", "{mariadb} {db} < {validate_sql} >/dev/null"),
    targets=(
        Ratio(
            "backup vs mariadb-dump | zstd -3 -T2 | sha256sum", "backup", "mariadb-dump | zstd -3 -T2 | sha256sum", 1.3
        ),
        Ratio("validate vs its SQL in mariadb", "validate", "validate's SQL in mariadb", 1.5),
    ),
)

# The --engines names (MariaDB is the "mysql" vendor of Django and dbtools).
TOOLS = {"sqlite": SQLITE, "postgresql": POSTGRESQL, "mariadb": MARIADB}
