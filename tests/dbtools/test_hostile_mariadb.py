"""A MariaDB backup is untrusted input: nothing in it runs, signed or not, --force or not.

Each crafted file is a real backup made by ``backup`` with one payload added (a shell
escape, a statement on another database, a function, a procedure, a trigger, a view, an
INTO OUTFILE), its manifest recomputed by ``reseal`` (signed by the configured key once
manifests are signed) or left unsigned under --force. ``restore``, ``restore --check`` and
``backup --check`` (quick and full) must refuse it in one line, and afterwards: the marker
the payload would have written does not exist, the live database is unchanged, the other
database's table is still there, no function, procedure, trigger or view was created and
no scratch database is left.
"""

import json
import secrets
from io import StringIO
from pathlib import Path

import pytest
import zstandard
from django.core.management import CommandError, call_command
from django.db import connection

from dbtools.backups import create_backup
from dbtools.engines.dumpcheck import MariaDBStatementChecker
from dbtools.engines.mysql_client import dump_tables, quote

from .backup_support import scratch_leftovers
from .restore_helpers import data_digest, live_fingerprint, make_data, manifest_path, reseal

pytestmark = [pytest.mark.engines("mysql"), pytest.mark.django_db(transaction=True)]


@pytest.fixture
def backup_file():
    make_data("a")
    return Path(create_backup(reason="manual").path)


@pytest.fixture
def other_db():
    """Another database on the server with a table and a row: a payload's target."""
    name = f"{connection.settings_dict['NAME'][:20]}_other_{secrets.token_hex(3)}"
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {quote(name)}")
        cursor.execute(f"CREATE TABLE {quote(name)}.`t` (`id` int PRIMARY KEY)")
        cursor.execute(f"INSERT INTO {quote(name)}.`t` VALUES (42)")
    yield name
    with connection.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {quote(name)}")


def other_rows(name: str) -> list:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id FROM {quote(name)}.`t`")
        return [row[0] for row in cursor.fetchall()]


def server_objects() -> list:
    """Functions, procedures, triggers and views named mcm_* anywhere on the server."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT routine_name FROM information_schema.routines WHERE routine_name LIKE 'mcm\\_%%' "
            "UNION ALL SELECT trigger_name FROM information_schema.triggers WHERE trigger_name LIKE 'mcm\\_%%' "
            "UNION ALL SELECT table_name FROM information_schema.views WHERE table_name LIKE 'mcm\\_%%'"
        )
        return [row[0] for row in cursor.fetchall()]


def dump_text(backup: Path) -> bytes:
    return zstandard.ZstdDecompressor().stream_reader(backup.open("rb")).read()


def after_line(text: bytes, line: bytes, payload: bytes) -> bytes:
    """``payload`` put on its own line after the first line equal to ``line``."""
    at = text.index(b"\n" + line + b"\n") + len(line) + 2
    return text[:at] + payload + text[at:]


# Each payload: (what the refusal names, how to put it into the dump text).
PAYLOADS = {
    "shell_escape_on_top": ("client command", lambda t, m, o: b"\\! touch " + m + b"\n" + t),
    "shell_escape_inside": (
        "client command",
        lambda t, m, o: after_line(t, b"UNLOCK TABLES;", b"\\! touch " + m + b"\n"),
    ),
    "system_inside_rows": (
        "client command",
        lambda t, m, o: t.replace(
            b"INSERT INTO `accounts_user` VALUES\n", b"INSERT INTO `accounts_user` VALUES\n\\! touch " + m + b"\n", 1
        ),
    ),
    "drop_other_database_table": (
        "another database",
        lambda t, m, o: after_line(t, b"UNLOCK TABLES;", b"DROP TABLE " + o + b".t;\n"),
    ),
    "insert_into_other_database": (
        "another database",
        lambda t, m, o: after_line(t, b"UNLOCK TABLES;", b"INSERT INTO `" + o + b"`.`t` VALUES (7);\n"),
    ),
    "create_function": (
        "CREATE FUNCTION",
        lambda t, m, o: after_line(
            t, b"UNLOCK TABLES;", b"/*!50003 CREATE FUNCTION `mcm_f`() RETURNS int(11) DETERMINISTIC RETURN 1 */;\n"
        ),
    ),
    "create_procedure": (
        "CREATE PROCEDURE",
        lambda t, m, o: after_line(t, b"UNLOCK TABLES;", b"CREATE PROCEDURE mcm_p() DELETE FROM `" + o + b"`.`t`;\n"),
    ),
    "create_trigger_with_delimiter": (
        "client command",
        lambda t, m, o: after_line(
            t,
            b"UNLOCK TABLES;",
            b"DELIMITER ;;\n/*!50003 CREATE*/ /*!50017 DEFINER=`root`@`localhost`*/ /*!50003 TRIGGER mcm_t "
            b"BEFORE INSERT ON `accounts_user` FOR EACH ROW BEGIN SET NEW.is_admin = 1; END */;;\nDELIMITER ;\n",
        ),
    ),
    "create_trigger": (
        "CREATE TRIGGER",
        lambda t, m, o: after_line(
            t,
            b"UNLOCK TABLES;",
            b"CREATE TRIGGER mcm_t2 BEFORE INSERT ON `accounts_user` FOR EACH ROW SET NEW.is_admin = 1;\n",
        ),
    ),
    "create_view": (
        "CREATE VIEW",
        lambda t, m, o: after_line(t, b"UNLOCK TABLES;", b"CREATE VIEW `mcm_v` AS SELECT * FROM `" + o + b"`.`t`;\n"),
    ),
    "select_into_outfile": (
        "INTO OUTFILE",
        lambda t, m, o: after_line(t, b"UNLOCK TABLES;", b"SELECT * FROM `accounts_user` INTO OUTFILE '" + m + b"';\n"),
    ),
    "create_table_select": (
        "SELECT",
        lambda t, m, o: t.replace(b") ENGINE=InnoDB", b") ENGINE=InnoDB SELECT * FROM `" + o + b"`.`t`", 1),
    ),
    "table_in_data_directory": (
        "table option",
        lambda t, m, o: t.replace(b") ENGINE=InnoDB", b") ENGINE=InnoDB DATA DIRECTORY='" + m + b"'", 1),
    ),
}


def craft(backup: Path, target_dir: Path, payload: str, marker: Path, other: str, variant: str) -> Path:
    """A copy of ``backup`` in ``target_dir`` with the payload in its dump.

    variant: "resealed" (manifest recomputed and signed), "unsigned" (recomputed, no
    signature) or "no-manifest".
    """
    _, inject = PAYLOADS[payload]
    text = inject(dump_text(backup), str(marker).encode(), other.encode())
    target = target_dir / backup.name
    target.write_bytes(zstandard.ZstdCompressor().compress(text))
    manifest_path(target).write_bytes(manifest_path(backup).read_bytes())
    reseal(target)
    if variant == "unsigned":
        data = json.loads(manifest_path(target).read_text())
        data.pop("signature", None)
        manifest_path(target).write_text(json.dumps(data))
    elif variant == "no-manifest":
        manifest_path(target).unlink()
    return target


def run(command: str, *args) -> tuple[int, str]:
    """call_command -> (exit status, the error line)."""
    out, err = StringIO(), StringIO()
    try:
        call_command(command, *args, stdout=out, stderr=err)
    except CommandError as exc:
        return exc.returncode, str(exc)
    return 0, err.getvalue()


@pytest.mark.parametrize("variant", ["resealed", "unsigned", "no-manifest"])
@pytest.mark.parametrize("payload", list(PAYLOADS))
def test_crafted_dump_is_refused_before_anything_runs(backup_file, other_db, tmp_path, payload, variant):
    marker = tmp_path / "MARKER"
    crafted_dir = tmp_path / "crafted"
    crafted_dir.mkdir()
    crafted = craft(backup_file, crafted_dir, payload, marker, other_db, variant)
    named, _ = PAYLOADS[payload]
    signed = variant == "resealed"
    force = [] if signed else ["--force"]
    before = live_fingerprint()
    runs = [
        ("restore", str(crafted), "--noinput", *force),
        ("restore", "--check", str(crafted), *force),
        ("backup", "--check", str(crafted)),
        ("backup", "--check", str(crafted), "--verify", "full"),
    ]
    for args in runs:
        code, message = run(*args)
        assert code == 1, (args, code, message)
        assert "\n" not in message.strip(), message
        assert "Traceback" not in message
        if signed or args[0] == "restore":
            # Refused for its content: the one line names what was found and where (without
            # a manifest, a shell escape on the first line already makes it no dump at all).
            for_content = named in message and "line " in message
            not_a_dump = variant == "no-manifest" and "not a database dump" in message
            assert for_content or not_a_dump, (args, message)
        assert not marker.exists(), f"{args}: the payload ran"
        assert live_fingerprint() == before, f"{args}: the live database changed"
        assert other_rows(other_db) == [42], f"{args}: the other database changed"
        assert server_objects() == [], f"{args}: a routine, trigger or view was created"
        assert scratch_leftovers() == [], f"{args}: a scratch database was left"


def test_payload_placed_after_many_rows_is_refused_and_nothing_of_it_runs(backup_file, other_db, tmp_path):
    """A payload deep in the file, after rows were loaded: still refused, the scratch dropped."""
    crafted_dir = tmp_path / "crafted"
    crafted_dir.mkdir()
    text = dump_text(backup_file)
    end = text.index(b"-- Dump completed")
    text = text[:end] + f"DROP TABLE `{other_db}`.`t`;\n".encode() + text[end:]
    target = crafted_dir / backup_file.name
    target.write_bytes(zstandard.ZstdCompressor().compress(text))
    manifest_path(target).write_bytes(manifest_path(backup_file).read_bytes())
    reseal(target)
    before = live_fingerprint()
    code, message = run("restore", str(target), "--noinput")
    assert code == 1 and "another database" in message, message
    assert other_rows(other_db) == [42]
    assert live_fingerprint() == before
    assert scratch_leftovers() == []


def test_good_backup_still_restores(backup_file):
    digest = data_digest()
    make_data("b")
    assert data_digest() != digest
    code, message = run("restore", str(backup_file), "--noinput")
    assert code == 0, message
    assert data_digest() == digest
    assert scratch_leftovers() == []


def test_client_without_sandbox_cannot_run(backup_file, monkeypatch):
    """A mariadb client without --sandbox: refused with one line, exit 2, nothing loaded."""
    from dbtools.engines import mysql_client

    monkeypatch.setattr(mysql_client, "_SANDBOX_CLIENTS", {})
    monkeypatch.setattr(mysql_client, "has_sandbox", lambda binary: False)
    before = live_fingerprint()
    for args in (("restore", "--check", str(backup_file)), ("backup", "--check", str(backup_file), "--verify", "full")):
        code, message = run(*args)
        assert code == 2, (args, message)
        assert "--sandbox" in message and "\n" not in message.strip(), message
    assert live_fingerprint() == before
    assert scratch_leftovers() == []


def test_the_installed_client_has_sandbox():
    """The probe answers true for Debian's mariadb client (10.11): restores can run here."""
    import shutil

    from dbtools.engines.mysql_client import has_sandbox

    assert has_sandbox(shutil.which("mariadb"))


def test_loader_session_has_the_sql_mode_the_checker_assumes():
    """Whatever the server's global sql_mode (NO_BACKSLASH_ESCAPES, ANSI_QUOTES would make the
    server read strings otherwise than the checker), the loading session has mariadb-dump's."""
    import subprocess

    from dbtools.engines import get_engine

    cmd, env = get_engine("default")._loader_command(connection.settings_dict["NAME"])
    assert "--sandbox" in cmd
    done = subprocess.run(cmd, input=b"SELECT @@session.sql_mode;\n", capture_output=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == b"NO_AUTO_VALUE_ON_ZERO"


# --- identifiers ---------------------------------------------------------------------


def test_table_with_a_backtick_and_other_tables_are_left_out_of_a_restorable_backup():
    """A table that is not one of our models (here named with a backtick) is not dumped:
    a restore refuses such tables, so a backup holding one could never be restored."""
    from dbtools.backups import list_backups

    make_data("a")
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE `we``ird` (`id` int PRIMARY KEY)")
        cursor.execute("INSERT INTO `we``ird` VALUES (1)")
    try:
        code, message = run("backup", "--verify", "full")
        assert code == 0, message
        newest = Path(list_backups()[0].path)
        text = dump_text(newest)
        assert b"CREATE TABLE `accounts_user`" in text
        assert b"we``ird" not in text
        checks = {c["name"]: c for c in json.loads(manifest_path(newest).read_text())["verification"]["checks"]}
        assert "we`ird" in checks["other_tables"]["detail"]
        code, message = run("restore", "--check", str(newest))
        assert code == 0, message
        # A restore replaces our tables and leaves the other one as it was.
        code, message = run("restore", "--noinput", str(newest))
        assert code == 0, message
        with connection.cursor() as cursor:
            cursor.execute("SELECT id FROM `we``ird`")
            assert cursor.fetchall() == ((1,),)
        assert scratch_leftovers() == []
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS `we``ird`")


def test_dump_with_a_backtick_table_name_is_refused_cleanly(backup_file, tmp_path):
    """A dump that does hold such a table (made by hand): refused in one line, no traceback."""
    text = dump_text(backup_file)
    text = after_line(text, b"UNLOCK TABLES;", b"CREATE TABLE `we``ird` (\n  `id` int(11) NOT NULL\n) ENGINE=InnoDB;\n")
    crafted_dir = tmp_path / "crafted"
    crafted_dir.mkdir()
    target = crafted_dir / backup_file.name
    target.write_bytes(zstandard.ZstdCompressor().compress(text))
    manifest_path(target).write_bytes(manifest_path(backup_file).read_bytes())
    reseal(target)
    before = live_fingerprint()
    code, message = run("restore", "--check", str(target))
    assert code == 1, message
    assert "not one of mcmanager's models (`we`ird` at line" in message, message
    assert "\n" not in message.strip()
    assert live_fingerprint() == before
    assert scratch_leftovers() == []


@pytest.fixture
def dash_database():
    """A database literally named "-<test database>_dash" (created and dropped here), its URL."""
    from tests.conftest import database_url_for

    name = f"-{connection.settings_dict['NAME'][:40]}_dash"
    with connection.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {quote(name)}")
        cursor.execute(f"CREATE DATABASE {quote(name)}")
    try:
        yield name, database_url_for().rsplit("/", 1)[0] + "/" + name
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {quote(name)}")


def test_database_named_like_an_option_backs_up_and_restores(dash_database, manage_py, settings):
    """mariadb-dump gets the name after "--", the client as --database=: never read as an option."""
    name, url = dash_database
    env = {"DATABASE_URL": url}
    done = manage_py("migrate", "--no-backup", "-v", "0", env=env)
    assert done.returncode == 0, done.stderr
    done = manage_py("backup", "--verify", "full", "--json", env=env)
    assert done.returncode == 0, done.stderr
    path = Path(json.loads(done.stdout)["path"])
    text = dump_text(path)
    assert f"Database: {name}".encode() in text
    assert b"CREATE TABLE `accounts_user`" in text
    done = manage_py("restore", "--check", str(path), env=env)
    assert done.returncode == 0, done.stderr
    done = manage_py("restore", "--noinput", str(path), env=env)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    with connection.cursor() as cursor:
        cursor.execute("SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE %s", [f"{name}%"])
        assert [row[0] for row in cursor.fetchall()] == [name], "a scratch or old-tables database was left"


# --- the checker on its own ------------------------------------------------------------


def test_checker_passes_our_dump_whatever_the_chunk_size(backup_file):
    text = dump_text(backup_file)
    for size in (1, 7, 4096, 1 << 20):
        checker = MariaDBStatementChecker(dump_tables())
        out = b"".join(checker.feed(text[i : i + size]) for i in range(0, len(text), size)) + checker.close()
        assert out == text
