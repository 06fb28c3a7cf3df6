"""What ``generate()`` returns, and the error it raises."""

from dataclasses import asdict, dataclass, field


class GenerationError(Exception):
    """The data could not be generated (unmigrated database, no owners, a clash with existing rows)."""


@dataclass
class GenerationResult:
    """What ``generate()`` added: rows per table, the id ranges, time taken."""

    database: str
    vendor: str
    seed: int
    users: int
    servers: int
    configs: int
    duration_ms: int
    active_servers: int = 0
    first_ids: dict[str, int] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return self.users + self.servers + self.configs

    @property
    def rows_per_second(self) -> float:
        return self.rows * 1000 / self.duration_ms if self.duration_ms > 0 else 0.0

    def as_dict(self) -> dict:
        data = asdict(self)
        data["rows"] = self.rows
        data["rows_per_second"] = round(self.rows_per_second)
        return data
