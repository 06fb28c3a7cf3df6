"""The statement whitelist of a MariaDB dump: what may be sent to the ``mariadb`` client.

A backup file is untrusted input (DESIGN.md): whoever can write the backup directory can
put a shell escape (``\\!``), a ``DROP TABLE otherdb.t``, a ``CREATE FUNCTION`` or a
``SELECT ... INTO OUTFILE`` into a dump, and the client runs it with the application's
privileges. ``--sandbox`` stops the client's own commands; this checker stops the rest. It
accepts only the shapes mariadb-dump writes for a dump of our tables (comments, its
``SET`` lines, ``DROP TABLE IF EXISTS``, ``CREATE TABLE`` with columns, keys and
constraints, ``LOCK``/``UNLOCK TABLES``, ``ALTER TABLE ... DISABLE/ENABLE KEYS``,
``INSERT INTO ... VALUES`` of literal rows) on tables of mcmanager's models, and refuses
anything else before a byte of it is sent.

Streaming: ``feed()`` returns the bytes proven to be allowed so far (whole statements, or
the whole rows of an INSERT whose end is still to come: the client sends nothing of a
statement before its ``;``), so memory holds one line or one row at most. Strings are
read as the client reads them (backslash escapes, no raw newline: mariadb-dump escapes
them), so the checker and the client always agree on where a statement ends.
"""

import re

from ..errors import VerificationFailed

# The client's named commands (mariadb --help, "List of all MariaDB commands"): at the
# start of a statement they run without a backslash.
CLIENT_COMMANDS = {
    "?", "clear", "connect", "delimiter", "edit", "ego", "exit", "go", "help", "nopager", "notee",
    "nowarning", "pager", "print", "prompt", "quit", "rehash", "source", "status", "system", "tee",
    "use", "charset", "warnings", "sandbox",
}  # fmt: skip

# A row as mariadb-dump writes it: literals only (strings with backslash escapes and no raw
# newline, carriage return, NUL or ^Z: mariadb-dump escapes them, and the client, which cuts
# a line at a NUL, would read the rest otherwise), numbers, NULL, hex; so the client and
# this checker agree on where it ends. Possessive quantifiers: Python's re then scans some
# 75 MB/s (a plain pattern, 6 MB/s).
_STR = rb"'[^'\\\n\r\x00\x1a]*+(?:\\[^\n\r\x00\x1a][^'\\\n\r\x00\x1a]*+)*+'"
_VALUE = rb"(?:" + _STR + rb"|-?+\d++(?:\.\d++)?+(?:[eE][-+]?+\d++)?+|NULL|0x[0-9A-Fa-f]*+|_binary " + _STR + rb")"
_ROW = rb"\((?:" + _VALUE + rb",)*+" + _VALUE + rb"\)"
# Whole rows followed by a comma and what begins the next row (more rows follow); the last
# row ends with ";".
ROWS_MORE = re.compile(rb"(?:" + _ROW + rb",(?:\n|(?=\()))*+")
ROW_LAST = re.compile(_ROW + rb";[ \t\r]*\n")
ROW_LAST_AT_END = re.compile(_ROW + rb";[ \t\r]*\Z")

_IDENT = rb"`((?:[^`\n\r\x00]|``)+)`"
SANDBOX_LINE = re.compile(rb"/\*M!999999\\- enable the sandbox mode \*/")
COMMENT_LINE = re.compile(rb"--(?:[ \t][^\n]*)?")
INSERT_HEAD = re.compile(rb"INSERT INTO " + _IDENT + rb" VALUES(?:\n| )")
CREATE_HEAD = re.compile(rb"CREATE TABLE " + _IDENT + rb" \($")
TABLE_LINES = [
    re.compile(rb"DROP TABLE IF EXISTS " + _IDENT + rb";"),
    re.compile(rb"LOCK TABLES " + _IDENT + rb" WRITE;"),
    re.compile(rb"/\*!40000 ALTER TABLE " + _IDENT + rb" (?:DISABLE|ENABLE) KEYS \*/;"),
]
UNLOCK = b"UNLOCK TABLES;"

# mariadb-dump's SET lines: session variables saved, set for the load, restored.
_SAVED = rb"CHARACTER_SET_CLIENT|CHARACTER_SET_RESULTS|COLLATION_CONNECTION|TIME_ZONE"
_SWITCHED = {
    b"UNIQUE_CHECKS": rb"0",
    b"FOREIGN_KEY_CHECKS": rb"0",
    b"SQL_MODE": rb"'NO_AUTO_VALUE_ON_ZERO'",
    b"SQL_NOTES": rb"0",
    b"NOTE_VERBOSITY": rb"0",
}
_SET_BODIES = [
    rb"SET @OLD_(" + _SAVED + rb")=@@\1",
    rb"SET (" + _SAVED + rb"|" + rb"|".join(_SWITCHED) + rb")=@OLD_\1",
    rb"SET NAMES utf8mb4",
    rb"SET TIME_ZONE='\+00:00'",
    rb"SET @saved_cs_client {5}= @@character_set_client",
    rb"SET character_set_client = (?:utf8mb4|@saved_cs_client)",
] + [rb"SET @OLD_" + name + rb"=@@" + name + rb", " + name + rb"=" + value for name, value in _SWITCHED.items()]
SET_LINES = [re.compile(rb"/\*M?!\d{5,6} " + body + rb" \*/;") for body in _SET_BODIES]

# CREATE TABLE: every token of the statement is one of these; words from the vocabulary.
_TOKEN = re.compile(
    r"(?P<ws>\s+)|(?P<id>`(?:[^`\n\r\x00]|``)+`)|(?P<str>'(?:[^'\\\n\r\x00\x1a]|\\[^\n\r\x00\x1a])*')|(?P<num>\d+(?:\.\d+)?)"
    r"|(?P<word>[A-Za-z_][A-Za-z0-9_]*)|(?P<bad>--|/\*|\*/|#)|(?P<op>>=|<=|<>|!=|[(),=<>+\-*/%.;])"
)
COLUMN_WORDS = {
    # types
    "int", "integer", "bigint", "smallint", "tinyint", "mediumint", "decimal", "numeric", "float",
    "double", "real", "bit", "char", "varchar", "binary", "varbinary", "text", "tinytext",
    "mediumtext", "longtext", "blob", "tinyblob", "mediumblob", "longblob", "date", "datetime",
    "time", "timestamp", "year", "json", "uuid", "enum", "bool", "boolean", "inet4", "inet6",
    # attributes, keys, constraints
    "unsigned", "zerofill", "signed", "not", "null", "default", "auto_increment", "primary", "key",
    "unique", "index", "fulltext", "constraint", "foreign", "references", "on", "delete", "update",
    "cascade", "restrict", "no", "action", "set", "check", "character", "charset", "collate",
    "comment", "using", "btree", "hash", "current_timestamp", "precision",
    # what CHECK constraints of our models use
    "and", "or", "xor", "is", "in", "like", "regexp", "rlike", "between", "escape", "cast", "as",
    "char_length", "character_length", "octet_length", "length", "lower", "upper", "json_valid",
    "true", "false",
}  # fmt: skip
_CHARSET_NAME = re.compile(r"(?:utf8mb4|utf8mb3|utf8|latin1|ascii|binary)(?:_[a-z0-9_]+)?$")
TABLE_ENGINES = {"innodb", "aria", "myisam"}
ROW_FORMATS = {"dynamic", "compact", "compressed", "redundant", "page", "default"}

MAX_CREATE = 1 << 20  # a CREATE TABLE of our models is a few kilobytes
MAX_LINE = 1 << 16  # any other statement of mariadb-dump is one short line
MAX_ROW = 1 << 30  # the server's largest packet (max_allowed_packet): no row is longer


class Refused(VerificationFailed):
    """The dump holds something mariadb-dump does not write for our tables."""


class MariaDBStatementChecker:
    """Feed it the uncompressed dump; it returns what may be sent, or raises Refused.

    ``tables``: the table names a dump may create and fill (our models' and Django's).
    """

    def __init__(self, tables) -> None:
        self.tables = set(tables)
        self.buf = b""
        self.line = 1  # the line number of buf[0]
        self.insert_line = 0  # where the INSERT in progress began (0: none)
        self.statements = 0

    # --- the stream ------------------------------------------------------------

    def feed(self, data: bytes) -> bytes:
        """Take the next bytes; return those now proven allowed (to send), keep the rest."""
        buf = self.buf + data if self.buf else data
        pos = self._advance(buf, final=False)
        return self._consume(buf, pos)

    def close(self) -> bytes:
        """The end of the dump: the rest must be whole statements too."""
        buf, pos = self.buf, self._advance(self.buf, final=True)
        out = self._consume(buf, pos)
        if self.insert_line or self.buf.strip():
            start = self.insert_line or self.line
            raise Refused(f"it ends inside a statement (line {start}): refused, the dump is cut")
        return out

    def _consume(self, buf: bytes, pos: int) -> bytes:
        self.line += buf.count(b"\n", 0, pos)
        self.buf = buf[pos:]
        return buf[:pos]

    def _line_at(self, buf: bytes, pos: int) -> int:
        return self.line + buf.count(b"\n", 0, pos)

    def _advance(self, buf: bytes, final: bool) -> int:
        """Check statements from the start of ``buf``; return where the checked part ends."""
        pos = 0
        while True:
            if self.insert_line:
                pos, more = self._rows(buf, pos, final)
                if more:
                    return pos
                continue
            head = INSERT_HEAD.match(buf, pos)
            if head:  # its rows may run on one long line: checked as they come
                self._table(head.group(1), buf, pos)
                self.insert_line = self._line_at(buf, pos)
                self.statements += 1
                pos = head.end()
                continue
            eol = buf.find(b"\n", pos)
            if eol < 0:
                if len(buf) - pos > MAX_LINE and not buf.startswith(b"CREATE TABLE ", pos):
                    self._refuse("a line mariadb-dump does not write", "over 64 KiB long", buf, pos)
                if not final or pos == len(buf):
                    return pos
                eol = len(buf)
            line = buf[pos:eol].rstrip(b" \t\r")
            if not line or SANDBOX_LINE.fullmatch(line) or COMMENT_LINE.fullmatch(line):
                pos = min(eol + 1, len(buf))
                continue
            if CREATE_HEAD.fullmatch(line):
                end = self._create_end(buf, pos, final)
                if end < 0:
                    return pos
                self._create_table(buf[pos:end], buf, pos)
                self.statements += 1
                pos = min(end + 1, len(buf))
                continue
            self._simple(line, buf, pos)
            self.statements += 1
            pos = min(eol + 1, len(buf))

    def _rows(self, buf: bytes, pos: int, final: bool) -> tuple[int, bool]:
        """Whole rows of the INSERT in progress. Returns (position, whether more bytes are needed)."""
        pos = ROWS_MORE.match(buf, pos).end()
        last = (ROW_LAST_AT_END if final else ROW_LAST).match(buf, pos) or ROW_LAST.match(buf, pos)
        if last:
            self.insert_line = 0
            return last.end(), False
        # An unfinished row waits for more bytes; a finished line that is no row is refused.
        if buf.find(b"\n", pos) < 0:
            if not final and len(buf) - pos <= MAX_ROW:
                return pos, True
            if not final:
                self._refuse("a row of values", "over 1 GiB long", buf, pos)
            raise Refused(
                f"it ends inside a statement (line {self._line_at(buf, pos)}, the INSERT of line "
                f"{self.insert_line}): refused, the dump is cut"
            )
        eol = buf.find(b"\n", pos)
        what, shown = describe(buf[pos : eol if eol >= 0 else len(buf)], "rows")
        raise Refused(
            f"it holds {what} ({shown} at line {self._line_at(buf, pos)}, inside the INSERT of line "
            f"{self.insert_line}): refused before it was sent"
        )

    @staticmethod
    def _create_end(buf: bytes, pos: int, final: bool) -> int:
        """Where the CREATE TABLE starting at ``pos`` ends (its last line, from ")", ends in ";")."""
        start = pos
        while True:
            eol = buf.find(b"\n", pos)
            if eol < 0:
                if final:
                    return len(buf)
                if len(buf) - start > MAX_CREATE:
                    return len(buf)  # refused as a whole by _create_table
                return -1
            if buf.startswith(b")", pos) and buf[pos:eol].rstrip(b" \t\r").endswith(b";"):
                return eol
            if eol - start > MAX_CREATE:
                return eol
            pos = eol + 1

    # --- the statements ----------------------------------------------------------

    def _refuse(self, what: str, shown: str, buf: bytes, pos: int):
        raise Refused(f"it holds {what} ({shown} at line {self._line_at(buf, pos)}): refused before it was sent")

    def _table(self, raw: bytes, buf: bytes, pos: int) -> None:
        name = raw.replace(b"``", b"`").decode("utf-8", "replace")
        if name not in self.tables:
            self._refuse("a table that is not one of mcmanager's models", f"`{name}`", buf, pos)

    def _simple(self, line: bytes, buf: bytes, pos: int) -> None:
        if line == UNLOCK or any(shape.fullmatch(line) for shape in SET_LINES):
            return
        for shape in TABLE_LINES:
            if m := shape.fullmatch(line):
                self._table(m.group(1), buf, pos)
                return
        self._refuse(*describe(line), buf, pos)

    def _create_table(self, statement: bytes, buf: bytes, pos: int) -> None:
        """Columns, keys and constraints of one of our tables, with harmless table options."""
        try:
            text = statement.decode("utf-8")
        except UnicodeDecodeError:
            self._refuse("a CREATE TABLE", "not UTF-8", buf, pos)
        if len(text) > MAX_CREATE:
            self._refuse("a CREATE TABLE", "over a megabyte long", buf, pos)
        tokens = []
        at = 0
        while at < len(text):
            m = _TOKEN.match(text, at)
            if not m or m.lastgroup == "bad":
                self._refuse("a CREATE TABLE with what mariadb-dump does not write", repr(text[at : at + 20]), buf, pos)
            if m.lastgroup != "ws":
                tokens.append((m.lastgroup, m.group()))
            at = m.end()
        name = tokens[2][1][1:-1].replace("``", "`")
        self._table(name.encode(), buf, pos)
        depth, close = 0, None
        for i, (_kind, value) in enumerate(tokens[3:], start=3):
            if value == "(":
                depth += 1
            elif value == ")":
                depth -= 1
                if depth == 0:
                    close = i
                    break
        if close is None or tokens[-1] != ("op", ";"):
            self._refuse("a CREATE TABLE that does not end as mariadb-dump writes it", tokens[-1][1], buf, pos)
        self._create_body(tokens[4:close], buf, pos)
        self._table_options(tokens[close + 1 : -1], buf, pos)

    def _create_body(self, tokens, buf: bytes, pos: int) -> None:
        for i, (kind, value) in enumerate(tokens):
            if kind == "op" and value in (";", "."):
                if value == "." and i and tokens[i - 1][0] in ("id", "word"):
                    self._refuse("a name of another database", f"{tokens[i - 1][1]}.", buf, pos)
                self._refuse("a CREATE TABLE with what mariadb-dump does not write", repr(value), buf, pos)
            elif kind == "word" and value.lower() not in COLUMN_WORDS and not _CHARSET_NAME.match(value.lower()):
                self._refuse("a CREATE TABLE with what mariadb-dump does not write", value.upper(), buf, pos)
            elif kind == "word" and value.lower() == "references":
                target = tokens[i + 1] if i + 1 < len(tokens) else ("", "")
                if target[0] != "id":
                    self._refuse("a foreign key", "to no quoted table", buf, pos)
                self._table(target[1][1:-1].replace("``", "`").encode(), buf, pos)

    def _table_options(self, tokens, buf: bytes, pos: int) -> None:
        """ENGINE=InnoDB AUTO_INCREMENT=n DEFAULT CHARSET=x COLLATE=x ROW_FORMAT=x COMMENT='...'."""
        words = [(kind, value.lower() if kind == "word" else value) for kind, value in tokens if value != "="]
        i = 0
        while i < len(words):
            kind, value = words[i]
            nxt = words[i + 1] if i + 1 < len(words) else ("", "")
            if value == "default":
                i += 1
                continue
            if value == "character" and nxt[1] == "set":
                i += 1
                value, nxt = "charset", (words[i + 1] if i + 1 < len(words) else ("", ""))
            ok = (
                (value == "engine" and nxt[1] in TABLE_ENGINES)
                or (value == "auto_increment" and nxt[0] == "num")
                or (value in ("charset", "collate") and nxt[0] == "word" and _CHARSET_NAME.match(nxt[1]))
                or (value == "row_format" and nxt[1] in ROW_FORMATS)
                or (value == "comment" and nxt[0] == "str")
                or (value in ("pack_keys", "stats_persistent", "page_checksum") and nxt[0] == "num")
            )
            if value == "select":
                self._refuse("a CREATE TABLE ... SELECT", "SELECT", buf, pos)
            if not ok:
                shown = " ".join(v for _, v in words[i : i + 2]).upper()
                self._refuse("a table option mariadb-dump does not write for our tables", shown, buf, pos)
            i += 2


# --- what a refused line is, in words ----------------------------------------------------

_VERSION_MARKS = re.compile(rb"/\*M?!\d*\s?|\*/")
_CREATE_KIND = re.compile(
    rb"CREATE\s+(?:OR\s+REPLACE\s+)?(?:DEFINER\s*=\s*\S+\s+)?(?:ALGORITHM\s*=\s*\w+\s+)?"
    rb"(?:SQL\s+SECURITY\s+\w+\s+)?(?:AGGREGATE\s+)?(FUNCTION|PROCEDURE|TRIGGER|VIEW|EVENT|DATABASE|SCHEMA"
    rb"|USER|ROLE|SERVER|PACKAGE|SEQUENCE|INDEX|TABLE)\b",
    re.IGNORECASE,
)
_QUALIFIED = re.compile(rb"(`(?:[^`\n]|``)+`|\b[A-Za-z_]\w*)\s*\.\s*(`(?:[^`\n]|``)+`|[A-Za-z_]\w*)")


def describe(line: bytes, context: str = "statement") -> tuple[str, str]:
    """What a refused line holds and the part that shows it, for the one line of the refusal.

    Best effort, for the message only: the whitelist decides.
    """
    text = line.strip()
    shown = text[:60].decode("utf-8", "replace") + ("..." if len(text) > 60 else "")
    if text.startswith(b"\\"):
        return "a client command", text[:2].decode("utf-8", "replace")
    bare = _VERSION_MARKS.sub(b" ", text).strip()
    first = bare.split(None, 1)[0].lower().rstrip(b";").decode("utf-8", "replace") if bare else ""
    if first in CLIENT_COMMANDS:
        return "a client command", first
    upper = bare.upper()
    if m := _CREATE_KIND.match(bare):
        kind = m.group(1).upper().decode()
        if kind == "TABLE" and b" SELECT " in upper:
            return "a CREATE TABLE ... SELECT", shown
        if kind != "TABLE":
            return f"a CREATE {kind}", shown
    if upper.startswith((b"GRANT", b"REVOKE")):
        return f"a {upper.split()[0].decode()}", shown
    if re.match(rb"(ALTER|DROP|RENAME)\s+USER|SET\s+PASSWORD|SET\s+ROLE|SET\s+DEFAULT\s+ROLE", upper):
        return "an account change", shown
    if re.match(rb"(ALTER|DROP)\s+(DATABASE|SCHEMA)", upper):
        return "a database-level change", shown
    if upper.startswith(b"LOAD "):
        return "a LOAD DATA", shown
    if b" INTO OUTFILE" in upper or b" INTO DUMPFILE" in upper:
        return "a SELECT ... INTO OUTFILE", shown
    if upper.startswith(b"SET "):
        return "a SET mariadb-dump does not write", shown
    if m := _QUALIFIED.search(bare):
        return "a statement on another database", m.group(0).decode("utf-8", "replace")
    if context == "rows":
        return "something that is not a row of values", shown
    return "a statement mariadb-dump does not write", shown
