"""The engine contract's result types: what an engine's operations return.

``Check`` (one named check, passed or not), ``DumpOutcome`` (what a dump learnt),
``ScratchDatabase`` (a dump loaded into a throw-away database), the salvage of a damaged
database (``SalvageResult``, ``TableSalvage``, ``TableComparison``), and the two check
builders every engine and the backup side share. Plain dataclasses: no vendor, no I/O.
"""

from dataclasses import asdict, dataclass, field


@dataclass
class Check:
    """One named check of a dump: passed or not, and what was seen."""

    name: str
    ok: bool
    detail: str = ""

    def as_dict(self) -> dict:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


@dataclass
class DumpOutcome:
    """What an engine learnt while dumping: the snapshot's row counts and migrations, its checks."""

    row_counts: dict[str, int] = field(default_factory=dict)
    migrations: dict[str, list[str]] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    tool: str = ""

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]


@dataclass
class ScratchDatabase:
    """A dump loaded into a throw-away database: a temp file (SQLite) or a uniquely-named database."""

    name: str
    row_counts: dict[str, int] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    # The engine's full integrity check already passed on it as loaded (SQLite: a file used
    # as it came, its schema exactly ours): the swap need not run it again.
    integrity_checked: bool = False
    # That check, still running (a Future of its lines) when the load was asked to defer
    # it: Engine.settle_scratch joins it; the scratch is not to be trusted before.
    pending_integrity: object = None


def compare_row_counts(expected: dict[str, int], found: dict[str, int]) -> Check:
    """Every table of the manifest, with the same row count."""
    diffs = []
    for table, n in sorted(expected.items()):
        got = found.get(table)
        if got != n:
            diffs.append(f"{table}: manifest {n}, found {'no table' if got is None else got}")
    if diffs:
        more = f" (+{len(diffs) - 3} more)" if len(diffs) > 3 else ""
        return Check("row_counts", False, "; ".join(diffs[:3]) + more)
    return Check("row_counts", True, f"{len(expected)} tables, {sum(expected.values())} rows as in the manifest")


def expected_tables_check(expected, found) -> Check:
    missing = sorted(set(expected) - set(found))
    if missing:
        return Check("tables", False, "missing tables: " + ", ".join(missing[:5]))
    return Check("tables", True, f"{len(set(expected))} expected tables present")


# --- salvage ------------------------------------------------------------------------------


@dataclass
class TableSalvage:
    """What came back of one table."""

    table: str
    recovered: int = 0
    set_aside: int = 0
    lost_ranges: list[tuple[int, int | None]] = field(default_factory=list)  # (first, last); None: to the end
    unreadable: str = ""  # the whole table could not be read (its schema or root page is gone)

    @property
    def lost_text(self) -> str:
        return ", ".join(f"{a}-{b if b is not None else 'end'}" if a != b else str(a) for a, b in self.lost_ranges)


@dataclass
class SalvageResult:
    """The salvage of one damaged file: where the output is, and per table what it holds."""

    source: str
    output: str
    set_aside_file: str
    method: str
    tables: list[TableSalvage] = field(default_factory=list)
    duration_ms: int = 0

    @property
    def complete(self) -> bool:
        return all(not t.lost_ranges and not t.set_aside and not t.unreadable for t in self.tables)

    def as_dict(self) -> dict:
        data = asdict(self)
        data["complete"] = self.complete
        return data


@dataclass
class TableComparison:
    """A salvaged table against the same table of a backup, by id: counts and a few ids each."""

    table: str
    only_in_salvage: int = 0
    only_in_backup: int = 0
    differing: int = 0
    sample_only_in_salvage: list = field(default_factory=list)
    sample_only_in_backup: list = field(default_factory=list)
    sample_differing: list = field(default_factory=list)
