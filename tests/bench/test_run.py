"""bench/run.py: one suite for every engine, each engine's tools a small table, vendor knowledge from dbtools' engines."""

import pytest

from bench.databases import BenchDatabase
from bench.report import RESTORE_NOTE
from bench.run import GROUPS, parse_args
from bench.tools import TOOLS, GenerateRate, Ratio, Seconds
from dbtools.engines import get_engine

URLS = {
    "sqlite": "sqlite:///{tmp}/bench_1k.sqlite3",
    "postgresql": "postgres://bench:s3cret-pw@db.example:5433/mcm_bench_1k?sslmode=require",
    "mariadb": "mysql://bench:s3cret-pw@db.example:3307/mcm_bench_1k",
}


def bench_database(name, tmp_path) -> BenchDatabase:
    return BenchDatabase(name, URLS[name].format(tmp=tmp_path), tmp_path / name, {"PATH": "/usr/bin:/bin"})


@pytest.mark.parametrize("name", sorted(TOOLS))
def test_every_command_of_an_engines_table_fills_in_without_the_password(name, tmp_path):
    db = bench_database(name, tmp_path)
    tools = db.tools
    templates = [c.command for c in (*tools.backup, *tools.after_backup, tools.full, tools.validate)]
    templates += [tools.query, tools.version] + ([tools.server_query] if tools.server_query else [])
    for template in templates:
        command = db.command(template, sql="'SELECT 1'")
        assert "{" not in command and "}" not in command, command
        assert "s3cret-pw" not in command, command
    assert db.dbname in db.command(tools.query, sql="'SELECT 1'")


def test_the_engines_give_the_tools_their_connection(tmp_path):
    pg = bench_database("postgresql", tmp_path)
    assert pg.tool_env["PGHOST"] == "db.example" and pg.tool_env["PGPORT"] == "5433"
    assert pg.tool_env["PGUSER"] == "bench" and pg.tool_env["PGPASSWORD"] == "s3cret-pw"
    assert pg.tool_env["PGSSLMODE"] == "require"
    mariadb = bench_database("mariadb", tmp_path)
    assert "--host=db.example" in mariadb.programs["mariadb"] and "--port=3307" in mariadb.programs["mariadb_dump"]
    assert mariadb.tool_env["MYSQL_PWD"] == "s3cret-pw"
    assert (pg.display, mariadb.display, bench_database("sqlite", tmp_path).display) == (
        "PostgreSQL",
        "MariaDB",
        "SQLite",
    )


@pytest.mark.parametrize("name", sorted(TOOLS))
def test_ratios_and_targets_name_items_the_suite_measures(name):
    tools = TOOLS[name]
    measured = {"backup", "backup --verify full", "validate", tools.full.label, tools.validate.label}
    measured |= {c.label for c in (*tools.backup, *tools.after_backup)}
    for ours, theirs in tools.backup_ratios:
        assert {ours, theirs} <= measured
    for target in tools.targets:
        assert isinstance(target, Ratio | Seconds | GenerateRate)
        if isinstance(target, Ratio):
            assert {target.ours, target.theirs} <= measured, target
        if isinstance(target, Seconds):
            assert target.item in measured, target
        assert "restore" not in target.label


def test_restore_is_left_to_bench_restore(capsys):
    assert "restore" not in GROUPS
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    assert "bench/restore.py" in capsys.readouterr().out
    assert "bench/restore.py" in RESTORE_NOTE
    assert parse_args(["--scale", "0.1", "--dir", "/tmp/x"]).reproduce == 'make bench ARGS="--scale 0.1"'


@pytest.mark.engines("postgresql", "mysql")
def test_the_server_engine_creates_and_drops_a_database():
    engine = get_engine()
    name = f"{engine.settings_dict['NAME']}_bt"
    engine.drop_database(name)
    engine.create_database(name)
    try:
        with pytest.raises(Exception):  # noqa: B017 (each engine says "exists" its own way)
            engine.create_database(name)
    finally:
        engine.drop_database(name)
    engine.drop_database(name)  # gone already: nothing to do


@pytest.mark.engines("sqlite")
def test_the_sqlite_engine_drops_the_file_and_its_side_files(tmp_path):
    engine = get_engine()
    path = tmp_path / "sub" / "bench.sqlite3"
    engine.create_database(str(path))
    assert path.parent.is_dir()
    for suffix in ("", "-wal", "-shm", "-journal"):
        path.with_name(path.name + suffix).write_bytes(b"x")
    engine.drop_database(str(path))
    assert list(path.parent.iterdir()) == []
