"""Hostile PostgreSQL archives: nothing in a backup runs, signed or not, --force or not.

Each archive is made with the real tools: a throwaway database gets our schema and data
(pg_restore of a real backup), then the hostile object; pg_dump -Fc writes it and zstd
compresses it as our backups are. Where pg_dump cannot write the attack (a second
statement in an entry, ALTER ROLE, COPY ... PROGRAM in an entry's own SQL), the SQL
string of one entry of a real archive is replaced in place, length and all, as an
attacker with a hex editor would. The payloads touch a marker file through
``COPY ... TO PROGRAM`` (the test role is a superuser) and change the role's settings;
they act only in a scratch or the live database, so crafting them runs nothing.
"""

import re
import secrets
import subprocess
from io import StringIO
from pathlib import Path

import psycopg
import pytest
import zstandard
from django.core.management import CommandError, call_command
from django.db import connection
from psycopg import sql
from psycopg.conninfo import make_conninfo

from dbtools.backups import create_backup
from dbtools.engines.pgarchive import UnsafeArchive, read_head
from dbtools.engines.pgarchive_entries import check_entries, our_tables

from .restore_helpers import live_fingerprint, make_data, manifest_path, reseal

pytestmark = [pytest.mark.engines("postgresql"), pytest.mark.django_db(transaction=True)]


# --- the server ---------------------------------------------------------------------


def conninfo(dbname: str) -> str:
    s = connection.settings_dict
    return make_conninfo(
        dbname=dbname,
        host=s.get("HOST") or None,
        port=str(s["PORT"]) if s.get("PORT") else None,
        user=s.get("USER") or None,
        password=s.get("PASSWORD") or None,
    )


def server(dbname: str = "postgres"):
    return psycopg.connect(conninfo(dbname), autocommit=True)


def ours(names) -> list[str]:
    """The databases of this test run (the server is shared with other runs that come and go)."""
    prefix = connection.settings_dict["NAME"][:20]
    return sorted(n for n in names if n.startswith(prefix))


def server_state() -> tuple:
    """What a payload could change outside the live tables: databases, role and database settings."""
    with server() as conn:
        databases = ours(r[0] for r in conn.execute("SELECT datname FROM pg_database"))
        rolconfig = conn.execute("SELECT rolconfig FROM pg_roles WHERE rolname = current_user").fetchone()[0]
        settings = sorted(
            (str(r[0]), str(r[1]), str(r[2]))
            for r in conn.execute("SELECT setdatabase, setrole, setconfig FROM pg_db_role_setting")
        )
    return databases, rolconfig, settings


def scratch_databases(live: str | None = None) -> list[str]:
    """Scratch databases of ``live`` (default: the test database) still on the server."""
    prefix = (live or connection.settings_dict["NAME"])[:24] + "_scratch_"
    with server() as conn:
        return [r[0] for r in conn.execute("SELECT datname FROM pg_database") if r[0].startswith(prefix)]


# --- crafting -------------------------------------------------------------------------


@pytest.fixture
def marker():
    path = Path(f"/tmp/mcmanager-pwned-{secrets.token_hex(4)}")
    yield path
    path.unlink(missing_ok=True)


@pytest.fixture
def backup_file():
    make_data("a")
    return Path(create_backup(reason="manual").path)


def payload_function(marker: Path) -> str:
    """A plpgsql function that runs a shell command and changes the role's settings, but only
    in a scratch database or the live one (never in the database it is crafted in)."""
    live = connection.settings_dict["NAME"]
    return f"""
    CREATE FUNCTION public.evil(force boolean DEFAULT false) RETURNS boolean LANGUAGE plpgsql AS $$
    BEGIN
      IF force OR current_database() LIKE '%\\_scratch\\_%' OR current_database() = '{live}' THEN
        EXECUTE format('COPY (SELECT 1) TO PROGRAM %L', 'touch {marker}');
        IF NOT force THEN
          EXECUTE 'ALTER ROLE CURRENT_USER SET mcmanager.pwned = ''yes''';
        END IF;
      END IF;
      RETURN true;
    END $$;
    """


def craft(backup: Path, target: Path, setup: str = "", edit=None) -> Path:
    """An archive of our schema and data plus ``setup`` (SQL), optionally edited; zstd, resealed manifest."""
    name = f"{connection.settings_dict['NAME'][:20]}_craft_{secrets.token_hex(3)}"
    with server() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        archive = zstandard.ZstdDecompressor().decompressobj().decompress(backup.read_bytes())
        subprocess.run(
            ["pg_restore", "--no-owner", f"--dbname={conninfo(name)}"], input=archive, check=True, capture_output=True
        )
        if setup:
            with server(name) as conn:
                conn.execute(setup)
        dump = subprocess.run(
            ["pg_dump", "--format=custom", "--compress=0", f"--dbname={conninfo(name)}"],
            check=True,
            capture_output=True,
        ).stdout
    finally:
        with server() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    if edit is not None:
        dump = edit(dump)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(zstandard.ZstdCompressor().compress(dump))
    manifest_path(target).write_bytes(manifest_path(backup).read_bytes())
    reseal(target)
    return target


def replace_toc_string(pattern: str, replacement):
    """An edit replacing one whole SQL string of the table of contents (matched by ``pattern``),
    with its length prefix: the archive stays readable by pg_restore."""

    def edit(dump: bytes) -> bytes:
        for m in re.finditer(pattern.encode(), dump, re.S):
            old = m.group()
            prefix = b"\x00" + len(old).to_bytes(4, "little")
            if dump[m.start() - 5 : m.start()] == prefix:
                new = (replacement(old.decode()) if callable(replacement) else replacement).encode()
                return dump[: m.start() - 5] + b"\x00" + len(new).to_bytes(4, "little") + new + dump[m.end() :]
        raise AssertionError(f"no TOC string matches {pattern!r}")

    return edit


def hostile_cases(marker: Path) -> dict:
    """name -> (setup SQL, TOC edit, what the refusal names)."""
    touch = f"COPY (SELECT 1) TO PROGRAM 'touch {marker}'"
    return {
        "plpgsql function": (payload_function(marker), None, "FUNCTION public.evil(boolean)"),
        "table CHECK calling a function": (
            payload_function(marker)
            + "ALTER TABLE servers_configuration ADD CONSTRAINT evil_check CHECK (public.evil());",
            None,
            "FUNCTION public.evil(boolean)",
        ),
        "DEFAULT calling a COPY TO PROGRAM function": (
            payload_function(marker)
            + "ALTER TABLE servers_configuration ALTER COLUMN description SET DEFAULT (public.evil()::text);",
            None,
            "FUNCTION public.evil(boolean)",
        ),
        "trigger": (
            "CREATE TRIGGER evil BEFORE UPDATE ON servers_server FOR EACH ROW "
            "EXECUTE FUNCTION suppress_redundant_updates_trigger();",
            None,
            "TRIGGER public.servers_server evil",
        ),
        "view": ("CREATE VIEW public.evil_view AS SELECT 1 AS one;", None, "VIEW public.evil_view"),
        "table not of our models": ("CREATE TABLE public.evil (x int);", None, "TABLE public.evil"),
        "table of another schema": (
            "CREATE SCHEMA evil; CREATE TABLE evil.accounts_user (x int);",
            None,
            "SCHEMA evil",
        ),
        "ALTER ROLE after a setval": (
            "",
            replace_toc_string(
                r"SELECT pg_catalog\.setval\('public\.accounts_user_id_seq', \d+, true\);\n",
                lambda old: old + "ALTER ROLE CURRENT_USER SET mcmanager.pwned = 'yes';\n",
            ),
            "SEQUENCE SET public.accounts_user_id_seq",
        ),
        "COPY TO PROGRAM after a CREATE TABLE": (
            "",
            replace_toc_string(
                r"CREATE TABLE public\.servers_configuration \(.*?\n\);\n", lambda old: old + touch + ";\n"
            ),
            "more than one statement",
        ),
        "CHECK calling a built-in outside the list": (
            "",
            replace_toc_string(
                r"CREATE TABLE public\.servers_configuration \(.*?\n\);\n",
                lambda old: old.replace(
                    "CHECK ((length(value) >= 1))", "CHECK (((length(value) >= 1) AND pg_catalog.pg_reload_conf()))"
                ),
            ),
            "a call of pg_catalog.pg_reload_conf()",
        ),
        "rows loaded FROM PROGRAM": (
            "",
            replace_toc_string(
                r"COPY public\.django_session \([^)]*\) FROM stdin;\n",
                f"COPY public.django_session (session_key) FROM PROGRAM 'touch {marker}';\n",
            ),
            "TABLE DATA public.django_session",
        ),
        "search_path setting with a second statement": (
            "",
            replace_toc_string(
                r"SELECT pg_catalog\.set_config\('search_path', '', false\);\n", lambda old: old + touch + ";\n"
            ),
            "SEARCHPATH",
        ),
    }


CASES = [
    "plpgsql function",
    "table CHECK calling a function",
    "DEFAULT calling a COPY TO PROGRAM function",
    "trigger",
    "view",
    "table not of our models",
    "table of another schema",
    "ALTER ROLE after a setval",
    "COPY TO PROGRAM after a CREATE TABLE",
    "CHECK calling a built-in outside the list",
    "rows loaded FROM PROGRAM",
    "search_path setting with a second statement",
]


def run(command: str, *args) -> tuple[int, str]:
    """call_command -> (exit status, stderr or the error's line)."""
    out, err = StringIO(), StringIO()
    try:
        call_command(command, *args, stdout=out, stderr=err)
    except CommandError as exc:
        return exc.returncode, str(exc)
    return 0, err.getvalue() + out.getvalue()


# --- the tests --------------------------------------------------------------------------


def test_the_payload_is_real(marker):
    """The crafted function does run a shell command when it is called: the refusals below
    are what keeps the marker away, not a payload that never worked."""
    name = f"{connection.settings_dict['NAME'][:20]}_craft_{secrets.token_hex(3)}"
    with server() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        with server(name) as conn:
            conn.execute(payload_function(marker))
            conn.execute("SELECT public.evil(true)")
    finally:
        with server() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    assert marker.exists()


@pytest.mark.parametrize("case", CASES)
def test_hostile_archive_is_refused_and_nothing_runs(case, backup_file, tmp_path, marker):
    setup, edit, named = hostile_cases(marker)[case]
    signed = craft(backup_file, tmp_path / "signed" / backup_file.name, setup, edit)
    unsigned = tmp_path / "unsigned" / "made_by_hand.pgdump.zst"
    unsigned.parent.mkdir()
    unsigned.write_bytes(signed.read_bytes())  # no manifest: restorable only with --force
    make_data("b", users=1)
    before, state = live_fingerprint(), server_state()

    attempts = [
        ("restore", str(signed), "--noinput"),
        ("restore", str(signed), "--noinput", "--force"),
        ("restore", "--check", str(signed)),
        ("restore", str(unsigned), "--noinput", "--force"),
        ("restore", "--check", str(unsigned), "--force"),
        ("backup", "--check", str(signed)),
        ("backup", "--check", str(signed), "--verify", "full"),
    ]
    for command, *args in attempts:
        code, message = run(command, *args)
        assert code == 1, (command, args, code, message)
        assert "refused, nothing of it was run" in message, (command, args, message)
        assert named in message, (command, args, message)
        if command == "restore" and "--check" not in args:
            assert "\n" not in message.strip(), "a refusal is one line"
    assert not marker.exists(), "the payload ran"
    assert live_fingerprint() == before, "the live database changed"
    assert server_state() == state, "a database, the role's or a database's settings changed"
    assert scratch_databases() == []


def test_a_good_backup_still_restores(backup_file):
    """The real backup's table of contents passes the check, and restore brings its rows back."""
    with open(backup_file, "rb") as raw:
        _head, entries = read_head(zstandard.ZstdDecompressor().stream_reader(raw))
    kinds = {e.desc for e in entries}
    assert {"TABLE", "SEQUENCE", "TABLE DATA", "SEQUENCE SET", "CONSTRAINT", "FK CONSTRAINT", "INDEX"} <= kinds
    assert check_entries(entries, our_tables())
    make_data("b", users=1)
    code, message = run("restore", str(backup_file), "--noinput")
    assert code == 0, message
    from accounts.models import User

    assert set(User.objects.values_list("username", flat=True)) == {f"a_user{i}" for i in range(3)}
    assert scratch_databases() == []


def test_reading_the_table_of_contents_is_cheap(backup_file):
    """Only the head of the stream is read for the check, whatever the archive's size."""
    with open(backup_file, "rb") as raw:
        stream = zstandard.ZstdDecompressor().stream_reader(raw)
        head, _entries = read_head(stream)
    assert len(head) < 256 * 1024


def test_truncated_table_of_contents_is_one_line(backup_file):
    with open(backup_file, "rb") as raw:
        archive = zstandard.ZstdDecompressor().stream_reader(raw).read()
    import io

    with pytest.raises(UnsafeArchive, match="cannot be read: the file ends inside it"):
        read_head(io.BytesIO(archive[:2000]))


# --- names ----------------------------------------------------------------------------


@pytest.mark.parametrize("dbname", ["wt pg space", "-wt pg dash"])
def test_backup_and_restore_of_a_database_with_an_awkward_name(dbname, manage_py, settings):
    """A space in the name, or a name starting with "-": pg_dump and pg_restore get it as one
    connection-string value, never split and never read as an option. Run as cron would,
    with the name percent-encoded in DATABASE_URL."""
    from urllib.parse import quote

    s = connection.settings_dict
    url = (
        f"postgres://{quote(s['USER'] or '')}{':' + quote(s['PASSWORD']) if s.get('PASSWORD') else ''}"
        f"@{s['HOST'] or '127.0.0.1'}{':' + str(s['PORT']) if s.get('PORT') else ''}/{quote(dbname, safe='')}"
    )
    env = {"DATABASE_URL": url, "DJANGO_SECRET_KEY": secrets.token_urlsafe(50)}
    backups = Path(settings.MCMANAGER_BACKUP_DIR)
    with server() as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    try:
        done = manage_py("migrate", "--noinput", env=env)
        assert done.returncode == 0, done.stderr
        for old in backups.glob("db_backup_*"):
            old.unlink()  # the pre-migrate backup of the empty database
        with server(dbname) as conn:
            conn.execute(
                "INSERT INTO servers_configuration (key, value, description, updated_at) "
                "VALUES ('awkward.name', 'kept', '', now())"
            )
        done = manage_py("backup", "--verify", "full", env=env)
        assert done.returncode == 0, done.stderr
        (made,) = backups.glob("db_backup_*.pgdump.zst")
        with server(dbname) as conn:
            conn.execute("DELETE FROM servers_configuration")
        done = manage_py("restore", str(made), "--noinput", env=env)
        assert done.returncode == 0, done.stderr
        with server(dbname) as conn:
            rows = conn.execute("SELECT value FROM servers_configuration WHERE key = 'awkward.name'").fetchall()
        assert rows == [("kept",)]
    finally:
        with server() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
    assert scratch_databases(dbname) == []


# --- the SQL shapes, entry by entry ---------------------------------------------------


def _entries_of(backup: Path) -> list:
    with open(backup, "rb") as raw:
        return read_head(zstandard.ZstdDecompressor().stream_reader(raw))[1]


def _with_defn(entries: list, desc: str, tag: str, change) -> list:
    """The entries with the SQL of entry (desc, tag) changed by ``change``."""
    import dataclasses

    found = [e for e in entries if e.desc == desc and e.tag == tag]
    assert len(found) == 1, (desc, tag)
    return [dataclasses.replace(e, defn=change(e.defn)) if e is found[0] else e for e in entries]


SHAPES = [
    # (entry, how its SQL is changed, refused?)
    (("TABLE", "servers_configuration"), lambda d: d.replace("'^[A-Za-z0-9._-]*$'", "'a;b'"), False),
    (("TABLE", "servers_configuration"), lambda d: d.replace(">= 1))", ">= 1)) /* x */"), True),
    (("TABLE", "servers_configuration"), lambda d: d.replace("-- ", "").replace(">= 1))", ">= 1)) -- x\n"), True),
    (("TABLE", "servers_configuration"), lambda d: d.replace("'^[A-Za-z0-9._-]*$'", "E'\\\\'';'"), True),
    (("TABLE", "servers_configuration"), lambda d: d.replace("'^[A-Za-z0-9._-]*$'", "$$x$$"), True),
    (("TABLE", "servers_configuration"), lambda d: d.replace("length(value)", "public.evil(value)"), True),
    (("TABLE", "servers_configuration"), lambda d: d.replace("length(value)", "set_config('role', 'x', false)"), True),
    (("TABLE", "servers_configuration"), lambda d: d.replace("\n);\n", "\n) INHERITS (public.auth_group);\n"), True),
    (("TABLE", "servers_configuration"), lambda d: d.replace("public.servers_configuration", "public.evil"), True),
    (("CONSTRAINT", "accounts_user accounts_user_pkey"), lambda d: d.replace(";", ", OWNER TO postgres;"), True),
    (("INDEX", "user_email_ci_unique"), lambda d: d.replace(";", " WHERE (pg_catalog.pg_reload_conf());"), True),
    (("INDEX", "user_email_ci_unique"), lambda d: d.replace("lower(", "pg_catalog.lower("), False),
]


def test_sql_of_each_entry_is_held_to_the_shapes_pg_dump_writes(backup_file):
    entries = _entries_of(backup_file)
    tables = our_tables()
    assert check_entries(entries, tables)
    for (desc, tag), change, refused in SHAPES:
        changed = _with_defn(entries, desc, tag, change)
        assert changed != entries
        if refused:
            with pytest.raises(UnsafeArchive, match=f"holds a {desc} public.{tag}.*refused"):
                check_entries(changed, tables)
        else:
            assert check_entries(changed, tables)


def test_an_archive_without_the_empty_search_path_is_refused(backup_file):
    entries = [e for e in _entries_of(backup_file) if e.desc != "SEARCHPATH"]
    with pytest.raises(UnsafeArchive, match="no empty search_path"):
        check_entries(entries, our_tables())
