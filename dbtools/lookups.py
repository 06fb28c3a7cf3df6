"""Lookups that render each data rule in the database's own SQL.

Django's ``__regex`` writes ``REGEXP`` into SQLite's schema, a function only Django
provides: the ``sqlite3`` shell then fails on every insert. These lookups render
``GLOB`` on SQLite, ``~`` on PostgreSQL and a binary ``REGEXP`` on MariaDB, so the
CHECK constraints hold (and work) for every client of the database. Comparisons
are exact on every engine: MariaDB's default collation ignores case, so there the
column is compared as binary.
"""

from django.db.models import CharField, Lookup, TextField
from django.db.models.functions import Length


class OnlyChars(Lookup):
    """``field__only_chars="A-Za-z0-9_-"``: every character is in that class (or the value is empty)."""

    lookup_name = "only_chars"
    prepare_rhs = False

    def _char_class(self) -> str:
        if not isinstance(self.rhs, str) or "]" in self.rhs or "^" in self.rhs:
            raise ValueError("only_chars takes a character class body such as 'A-Za-z0-9_-'")
        return self.rhs

    def as_sql(self, compiler, connection):  # PostgreSQL and any POSIX-regex engine
        lhs, params = self.process_lhs(compiler, connection)
        return f"{lhs} ~ %s", [*params, f"^[{self._char_class()}]*$"]

    def as_sqlite(self, compiler, connection):
        lhs, params = self.process_lhs(compiler, connection)
        return f"{lhs} NOT GLOB %s", [*params, f"*[^{self._char_class()}]*"]

    def as_mysql(self, compiler, connection):
        lhs, params = self.process_lhs(compiler, connection)
        return f"CAST({lhs} AS BINARY) REGEXP %s", [
            *params,
            f"^[{self._char_class()}]*$",
        ]


class InExact(Lookup):
    """``field__in_exact=[...]``: the value is one of these, compared case-sensitively on every engine."""

    lookup_name = "in_exact"
    prepare_rhs = False

    def _values(self) -> list[str]:
        values = list(self.rhs)
        if not values or not all(isinstance(v, str) for v in values):
            raise ValueError("in_exact takes a non-empty list of strings")
        return values

    def _sql(self, lhs: str, params: list, values: list[str]):
        placeholders = ", ".join(["%s"] * len(values))
        return f"{lhs} IN ({placeholders})", [*params, *values]

    def as_sql(self, compiler, connection):
        lhs, params = self.process_lhs(compiler, connection)
        return self._sql(lhs, params, self._values())

    def as_mysql(self, compiler, connection):
        lhs, params = self.process_lhs(compiler, connection)
        return self._sql(f"CAST({lhs} AS BINARY)", params, self._values())


def register_lookups() -> None:
    """Make ``length``, ``only_chars`` and ``in_exact`` available on every CharField and
    TextField. Called once from ``DbtoolsConfig.ready()``, before any query or migration
    resolves a constraint that uses them (importing this module registers nothing)."""
    for field_class in (CharField, TextField):
        # ``field__length__gte=3``: LENGTH / CHAR_LENGTH, characters on every engine.
        field_class.register_lookup(Length)
        field_class.register_lookup(OnlyChars)
        field_class.register_lookup(InExact)
