"""The dump scanners of dbtools/engines/dumpscan.py, on their own: no database needed."""

import pytest

from dbtools.engines.dumpscan import MariaDBDumpScanner

# Nothing here touches a database: one pass (SQLite's) is enough.
pytestmark = pytest.mark.engines("sqlite")


def mariadb_dump_text(tables: list[str], rows: int = 2000) -> bytes:
    parts = [b"-- MariaDB dump 10.19\n"]
    for name in tables:
        parts.append(f"DROP TABLE IF EXISTS `{name}`;\nCREATE TABLE `{name}` (\n  `id` int NOT NULL\n);\n".encode())
        values = ",".join(f"({i})" for i in range(rows))
        parts.append(f"INSERT INTO `{name}` VALUES {values};\n".encode())
    parts.append(b"-- Dump completed on 2026-11-26  2:00:00\n")
    return b"".join(parts)


TABLES = ["accounts_user", "servers_server", "a" * 64, "dbtools_operationlog"]


@pytest.mark.parametrize("size", [1, 7, 255, 256, 4095, 4096, 5000, 65536, 1 << 20])
def test_mariadb_scanner_finds_every_table_however_the_stream_is_cut(size):
    text = mariadb_dump_text(TABLES)
    scanner = MariaDBDumpScanner()
    for start in range(0, len(text), size):
        scanner.feed(text[start : start + size])
    assert scanner.tables == TABLES
    assert scanner.started and scanner.completed


def test_mariadb_scanner_with_chunks_of_changing_sizes_at_every_mark():
    text = mariadb_dump_text(TABLES, rows=3000)
    marks = [i for i in range(len(text)) if text.startswith(b"CREATE TABLE `", i)]
    for mark in marks:
        for offset in range(0, 20):
            cut = mark + offset
            scanner = MariaDBDumpScanner()
            scanner.feed(text[:cut])
            scanner.feed(text[cut : cut + 3])
            scanner.feed(text[cut + 3 :])
            assert scanner.tables == TABLES, (mark, offset)


@pytest.mark.parametrize("size", [1, 2, 3, 5, 1 << 20])
def test_mariadb_scanner_reads_doubled_backticks_in_a_name(size):
    tables = ["we`ird", "a``b", "plain"]
    text = mariadb_dump_text([t.replace("`", "``") for t in tables], rows=10)
    scanner = MariaDBDumpScanner()
    for start in range(0, len(text), size):
        scanner.feed(text[start : start + size])
    assert scanner.tables == tables


def test_mariadb_scanner_sees_a_truncated_dump():
    text = mariadb_dump_text(TABLES)
    scanner = MariaDBDumpScanner()
    scanner.feed(text[: len(text) - 100])
    assert not scanner.completed
