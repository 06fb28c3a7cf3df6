"""dumpcheck's statement whitelist on its own: no database needed (the SQLite pass runs it).

The end-to-end cases (crafted backups refused by restore and backup --check on a real
MariaDB server) are in test_hostile_mariadb.py.
"""

import pytest

from dbtools.engines.dumpcheck import MariaDBStatementChecker, Refused
from dbtools.engines.mysql_client import dump_tables

pytestmark = pytest.mark.engines("sqlite")


@pytest.mark.parametrize(
    "line, named",
    [
        (b"use mysql;", "client command (use"),
        (b"source /etc/passwd", "client command (source"),
        (b"system id", "client command (system"),
        (b"\\. /tmp/x.sql", "client command (\\."),
        (b"connect other", "client command (connect"),
        (b"GRANT ALL ON *.* TO 'x'@'%';", "GRANT"),
        (b"ALTER USER root IDENTIFIED BY 'x';", "account change"),
        (b"CREATE DATABASE mcm_x;", "CREATE DATABASE"),
        (b"CREATE EVENT mcm_e ON SCHEDULE EVERY 1 SECOND DO DELETE FROM t;", "CREATE EVENT"),
        (b"LOAD DATA INFILE '/etc/passwd' INTO TABLE `accounts_user`;", "LOAD DATA"),
        (b"/*!40101 SET NAMES gbk */;", "does not write"),
        (b"/*!40101 SET @@GLOBAL.general_log = 1 */;", "does not write"),
        (b"INSERT INTO `accounts_user` VALUES (1,(SELECT 1));", "not a row"),
        (b"INSERT INTO `accounts_user` VALUES (1,'a'); DROP TABLE x;", "not a row"),
        (b"INSERT INTO `accounts_user` VALUES (1,'a''); DROP TABLE x; -- ');", "not a row"),
        (b"INSERT INTO `accounts_user` VALUES (1,'a\x00'),\n('\\! touch x');", "not a row"),
        (b"INSERT INTO `accounts_user` VALUES (1,'a\r');", "not a row"),
        (b"INSERT INTO `mysql`.`user` VALUES (1);", "another database"),
        (b"INSERT INTO `foreign_thing` VALUES (1);", "not one of mcmanager's models"),
        (b"LOCK TABLES `accounts_user` WRITE, `mysql`.`user` WRITE;", "another database"),
    ],
)
def test_checker_refuses_what_mariadb_dump_does_not_write(line, named):
    text = b"-- MariaDB dump\n\n" + line + b"\nUNLOCK TABLES;\n"
    checker = MariaDBStatementChecker(dump_tables())
    sent = b""
    with pytest.raises(Refused) as caught:
        sent += checker.feed(text)
        sent += checker.close()
    assert named in str(caught.value), str(caught.value)
    assert "line 3" in str(caught.value)
    assert line not in sent


def test_checker_reads_strings_as_the_client_does():
    """An escaped quote does not end a string: this is one row whose text is harmless."""
    text = b"INSERT INTO `accounts_user` VALUES (1,'a\\'); DROP TABLE x; -- ');\nUNLOCK TABLES;\n"
    checker = MariaDBStatementChecker(dump_tables())
    assert checker.feed(text) + checker.close() == text
    assert checker.statements == 2


def test_checker_refuses_a_cut_statement():
    checker = MariaDBStatementChecker(dump_tables())
    sent = checker.feed(b"INSERT INTO `accounts_user` VALUES\n(1,'a'),\n(2,'b'")
    assert b"(2," not in sent
    with pytest.raises(Refused, match="ends inside a statement"):
        checker.close()
