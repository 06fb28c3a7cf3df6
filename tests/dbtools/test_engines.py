"""The engine contract (dbtools/engines/base.py) and the one registry (dbtools/engines/__init__.py).

Every engine class implements the whole contract; the registry maps vendors, display names
and dump heads to the right class; an engine recognises its own real dumps and no other
engine claims them; describe() never shows a password; salvage is refused in one line where
the engine cannot do it.
"""

import io
from pathlib import Path

import pytest
from django.db import connection, connections

from dbtools.engines import ENGINES, Engine, display_name, engine_class, engine_for_dump, get_engine
from dbtools.engines.mysql import MySQLEngine
from dbtools.engines.postgresql import PostgreSQLEngine
from dbtools.engines.sqlite import SQLiteEngine
from dbtools.errors import CouldNotRun, DatabaseUnreachable

from .restore_helpers import make_data

PASSWORD = "Hunter2-s3cret-pw"

# What the services call on an engine: a fourth engine must write each of these.
CONTRACT = {
    "server_version",
    "looks_like_dump",
    "write_dump",
    "check_dump",
    "count_rows",
    "load_into_scratch",
    "swap_in",
    "swap_description",
    "drop_swap_leftovers",
    "database_size",
    "integrity_problems",
    "foreign_schema_objects",
    "shared_between_connections",
    "maintain",
    "maintenance_advice",
    "lock",
}
# ...and these have a default in the base class.
DEFAULTS = {
    "describe",
    "check_connection",
    "check_live_database",
    "backup_identity",
    "plaintext_workdir",
    "drop_scratch_leftovers",
    "dump_failure",
    "prepare_swap",
    "integrity_after_swap",
    "integrity_of_scratch",
    "table_sizes",
    "estimated_row_counts",
    "server_connections",
    "pool_stats",
    "performance_extras",
    "indexes_and_constraints",
    "finish_swap",
    "salvage",
    "compare_salvage",
}


# --- the contract ----------------------------------------------------------------------


def test_the_base_class_is_abstract_and_declares_the_whole_contract():
    assert CONTRACT <= Engine.__abstractmethods__, CONTRACT - Engine.__abstractmethods__
    for name in DEFAULTS:
        assert callable(getattr(Engine, name)) and name not in Engine.__abstractmethods__, name
    for name in CONTRACT | DEFAULTS:
        assert getattr(Engine, name).__doc__, f"Engine.{name} has no docstring"
    with pytest.raises(TypeError, match="abstract"):
        Engine("default")


@pytest.mark.parametrize("cls", ENGINES, ids=lambda c: c.vendor)
def test_every_engine_class_is_concrete(cls):
    assert cls.__abstractmethods__ == frozenset(), sorted(cls.__abstractmethods__)
    engine = cls("default")  # constructing connects to nothing
    assert isinstance(engine, Engine) and engine.alias == "default"
    assert cls.vendor and cls.display_name and cls.dump_extension


# --- the registry ------------------------------------------------------------------------


def test_the_registry_maps_each_vendor_to_its_class():
    assert ENGINES == (SQLiteEngine, PostgreSQLEngine, MySQLEngine)
    assert engine_class("sqlite") is SQLiteEngine
    assert engine_class("postgresql") is PostgreSQLEngine
    assert engine_class("mysql") is MySQLEngine
    assert engine_class("PostgreSQL") is PostgreSQLEngine  # as people may type it
    assert engine_class("oracle") is None and engine_class(None) is None and engine_class("") is None
    assert [display_name(v) for v in ("sqlite", "postgresql", "mysql")] == ["SQLite", "PostgreSQL", "MariaDB"]
    assert display_name("oracle") == "oracle" and display_name(None) == "unknown"


def test_get_engine_gives_the_class_of_the_connection():
    engine = get_engine("default")
    assert type(engine) is engine_class(connection.vendor) and engine.alias == "default"
    assert engine.connection is connections["default"]


def test_get_engine_refuses_a_vendor_it_does_not_know(monkeypatch):
    monkeypatch.setattr(connections["default"], "vendor", "oracle")
    with pytest.raises(CouldNotRun, match="oracle, which mcmanager does not support"):
        get_engine("default")


HEADS = {
    SQLiteEngine: [b"SQLite format 3\x00\x10\x00\x02\x02"],
    PostgreSQLEngine: [b"PGDMP\x01\x0f\x00\x04\x08\x01\x01"],
    MySQLEngine: [
        b"-- MariaDB dump 10.19  Distrib 10.11.6-MariaDB",
        b"/*M!999999\\- enable the sandbox mode */ \n-- MariaDB dump 10.19",
        b"\n-- MySQL dump 10.13  Distrib 8.0.36",
    ],
}


@pytest.mark.parametrize("cls", ENGINES, ids=lambda c: c.vendor)
def test_engine_for_dump_recognises_each_engines_dump_heads(cls):
    for head in HEADS[cls]:
        assert engine_for_dump(head) is cls, head
        assert [other for other in ENGINES if other.looks_like_dump(head)] == [cls], head


@pytest.mark.parametrize("head", [b"", b"garbage", b"\x28\xb5\x2f\xfd compressed", b"SQLite format 2", b"-- a note"])
def test_engine_for_dump_claims_nothing_else(head):
    assert engine_for_dump(head) is None


@pytest.mark.django_db(transaction=True)
def test_each_engine_recognises_its_own_real_dump(tmp_path):
    make_data("a")
    engine = get_engine("default")
    out = io.BytesIO()
    outcome = engine.write_dump(out, tmp_path, level="quick")
    assert not outcome.failures, outcome.failures
    head = out.getvalue()[:4096]
    assert engine_for_dump(head) is type(engine)
    assert [cls for cls in ENGINES if cls.looks_like_dump(head)] == [type(engine)]


# --- identity: never the password ---------------------------------------------------


@pytest.fixture
def with_password():
    """An alias to the test database's settings with a password (the test URL has none)."""
    base = connections["default"]
    settings_dict = dict(base.settings_dict, PASSWORD=PASSWORD, USER=base.settings_dict.get("USER") or "someone")
    wrapper = base.__class__(settings_dict, alias="with_password")
    connections["with_password"] = wrapper
    try:
        yield "with_password"
    finally:
        del connections["with_password"]
        wrapper.close()


@pytest.mark.parametrize("cls", ENGINES, ids=lambda c: c.vendor)
def test_describe_never_contains_the_password(with_password, cls):
    engine = cls(with_password)
    assert engine.settings_dict["PASSWORD"] == PASSWORD  # the connection has one
    text = engine.describe()
    assert PASSWORD not in text
    assert text.startswith(cls.display_name + " ") and str(engine.settings_dict["NAME"]) in text


def test_describe_of_a_server_names_user_host_and_port(with_password):
    s = connections[with_password].settings_dict
    for cls in (PostgreSQLEngine, MySQLEngine):
        port = f":{s['PORT']}" if s.get("PORT") else ""
        expected = f"{cls.display_name} {s['USER']}@{s.get('HOST') or 'localhost'}{port}/{s['NAME']}"
        assert cls(with_password).describe() == expected
    assert SQLiteEngine(with_password).describe() == f"SQLite {s['NAME']}"


@pytest.mark.engines("postgresql", "mysql")
def test_an_unreachable_server_is_reported_without_the_password(with_password):
    connections[with_password].settings_dict.update(HOST="127.0.0.1", PORT="1")  # nobody listens there
    with pytest.raises(DatabaseUnreachable) as caught:
        get_engine(with_password).check_connection()
    message = str(caught.value)
    assert PASSWORD not in message and "unreachable" in message and "\n" not in message


@pytest.mark.engines("sqlite")
def test_an_unreachable_sqlite_file_is_reported_in_one_line(with_password, tmp_path):
    connections[with_password].settings_dict["NAME"] = str(tmp_path / "no-such-dir" / "db.sqlite3")
    with pytest.raises(DatabaseUnreachable) as caught:
        get_engine(with_password).check_connection()
    message = str(caught.value)
    assert PASSWORD not in message and "no-such-dir" in message and "\n" not in message


# --- maintenance: salvage where it can be done ----------------------------------------------


@pytest.mark.parametrize("cls", [PostgreSQLEngine, MySQLEngine], ids=lambda c: c.vendor)
def test_server_engines_refuse_salvage_in_one_line(cls, tmp_path):
    def must_not_run(*args):
        raise AssertionError("nothing is loaded or migrated before the refusal")

    engine = cls("default")
    with pytest.raises(CouldNotRun, match=rf"^salvage works on SQLite files; database 'default' is {cls.vendor}$"):
        engine.salvage(None, tmp_path / "out.sqlite3", must_not_run)
    with pytest.raises(CouldNotRun, match=rf"^salvage compares SQLite files; .* is {cls.display_name}$"):
        engine.compare_salvage(Path(tmp_path / "out.sqlite3"), must_not_run)
    assert not (tmp_path / "out.sqlite3").exists()


@pytest.mark.engines("postgresql", "mysql")
@pytest.mark.django_db
def test_the_salvage_command_on_a_server_engine_exits_2(capsys):
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError) as caught:
        call_command("salvage")
    assert caught.value.returncode == 2
    assert str(caught.value) == f"salvage works on SQLite files; database 'default' is {connection.vendor}"
