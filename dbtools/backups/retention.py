"""Retention: which backups a keep-last/daily/weekly/monthly policy keeps, and pruning the rest.

A prune is one database's: only its backups (catalogue.belongs_to: engine, name and
identity) count and are deleted; another database's in the same directory are left to its
own prune. Only verified backups signed by this installation count toward a policy, and only they
are ever deleted; the newest of them is always kept; no policy deletes
nothing. A planted manifest claiming a newer verified backup therefore cannot push real
backups out, and a bad entry (a manifest that is unreadable or wrong) is left alone. A day,
ISO week or month "counts" when it holds a verified backup; the newest backup of each
of the N most recent such periods is kept (as restic and borg do).
"""

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS

from ..engines import get_engine
from ..manifest import manifest_path
from ..oplog import record_operation
from .catalogue import is_of, list_backups
from .offsite import delete_offsite_copies


@dataclass
class RetentionPolicy:
    """How many backups to keep; None means the rule is off."""

    keep_last: int | None = None
    keep_daily: int | None = None
    keep_weekly: int | None = None
    keep_monthly: int | None = None

    @classmethod
    def from_settings(cls, **overrides) -> "RetentionPolicy":
        """The MCMANAGER_KEEP_* settings, each replaced by a non-None override."""
        values = {
            "keep_last": settings.MCMANAGER_KEEP_LAST,
            "keep_daily": settings.MCMANAGER_KEEP_DAILY,
            "keep_weekly": settings.MCMANAGER_KEEP_WEEKLY,
            "keep_monthly": settings.MCMANAGER_KEEP_MONTHLY,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @property
    def is_empty(self) -> bool:
        return all(v is None for v in (self.keep_last, self.keep_daily, self.keep_weekly, self.keep_monthly))

    def as_dict(self) -> dict:
        return {
            "keep_last": self.keep_last,
            "keep_daily": self.keep_daily,
            "keep_weekly": self.keep_weekly,
            "keep_monthly": self.keep_monthly,
        }


@dataclass
class PruneResult:
    """What a prune kept (and why), deleted (or would delete, on a dry run), and left alone."""

    policy: RetentionPolicy
    dry_run: bool = False
    kept: dict[str, list[str]] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)
    ignored: dict[str, str] = field(default_factory=dict)
    offsite_deleted: list[str] = field(default_factory=list)  # their offsite copies (backups.offsite)
    offsite_error: str = ""
    others: int = 0  # backups of other databases in the directory: not this prune's

    def as_dict(self) -> dict:
        return {
            "policy": self.policy.as_dict(),
            "other_databases_backups": self.others,
            "dry_run": self.dry_run,
            "kept": self.kept,
            "deleted": self.deleted,
            "ignored": self.ignored,
            "offsite_deleted": self.offsite_deleted,
            "offsite_error": self.offsite_error,
        }


def select_kept(backups, policy: RetentionPolicy) -> dict[str, list[str]]:
    """Names of the verified ``backups`` (BackupInfo) the policy keeps, with the rules keeping each.

    ``backups`` must be verified backups of one database; the order does not matter.
    """
    ordered = sorted(backups, key=lambda b: (b.created_at, b.name), reverse=True)
    keep: dict[str, list[str]] = defaultdict(list)
    if not ordered or policy.is_empty:
        return {b.name: ["no policy"] for b in ordered}
    keep[ordered[0].name].append("newest verified")
    if policy.keep_last:
        for b in ordered[: policy.keep_last]:
            keep[b.name].append("last")
    periods = (
        (policy.keep_daily, "daily", lambda d: d.date()),
        (policy.keep_weekly, "weekly", lambda d: d.isocalendar()[:2]),
        (policy.keep_monthly, "monthly", lambda d: (d.year, d.month)),
    )
    for count, label, period_of in periods:
        if not count:
            continue
        seen = set()
        for b in ordered:
            period = period_of(b.created_at)
            if period in seen:
                continue
            if len(seen) == count:
                break
            seen.add(period)
            keep[b.name].append(label)
    return dict(keep)


def prune_backups(
    policy: RetentionPolicy, directory=None, dry_run: bool = False, database: str = DEFAULT_DB_ALIAS
) -> PruneResult:
    """Delete the verified, signed backups of ``database`` (with their manifests) that ``policy`` does not keep.

    Only the backups of ``database`` count and go (catalogue.is_of: its engine, name and
    identity, not the alias); another database's backups in the same directory are left to
    its own prune and counted in ``others``. Every prune that deletes is in the operations
    log of ``database``. Unverified or unsigned backups, bad entries,
    files that are not our backups, and everything when the policy is empty are left
    alone. A file that cannot be deleted is reported in ``ignored``, not raised. With an
    offsite store, the copies of the deleted backups are deleted there too (only those:
    the same policy in both places; the store's failure is ``offsite_error``, not raised).
    """
    result = PruneResult(policy=policy, dry_run=dry_run)
    engine = get_engine(database)
    infos = []
    for info in list_backups(directory):
        if info.manifest is None or info.problem:
            result.ignored[info.name] = info.problem or "no manifest"
        elif not is_of(info.manifest, engine):
            result.others += 1
        elif not info.verified:
            result.ignored[info.name] = "not verified: does not count and is not pruned"
        elif not info.signed:
            result.ignored[info.name] = f"not signed by this installation ({info.signature}): does not count"
        else:
            infos.append(info)
    kept = select_kept(infos, policy)
    result.kept.update(kept)
    for info in sorted(infos, key=lambda b: (b.created_at, b.name)):
        if info.name in kept:
            continue
        if not dry_run:
            try:
                Path(info.path).unlink(missing_ok=True)
                manifest_path(info.path).unlink(missing_ok=True)
            except OSError as exc:
                result.ignored[info.name] = f"could not be deleted: {exc.strerror or exc}"
                continue
        result.deleted.append(info.name)
    if not dry_run:
        result.offsite_deleted, result.offsite_error = delete_offsite_copies(result.deleted)
        if result.deleted:
            _log_prune(result, database)
    return result


def _log_prune(result: PruneResult, database: str) -> None:
    """One entry in ``database``'s operations log per prune that deleted anything: which
    files, and the policy that let them go (what it kept, and why)."""
    with record_operation("prune", database=database) as record:
        record.message = f"deleted {len(result.deleted)} backup(s): {', '.join(result.deleted[:10])}"
        record.details = {
            "deleted": result.deleted,
            "why": "not kept by the retention policy",
            "policy": result.policy.as_dict(),
            "kept": result.kept,
            "offsite_deleted": result.offsite_deleted,
            "offsite_error": result.offsite_error,
        }
