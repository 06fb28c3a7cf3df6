"""``validate --fix``: repair the problem classes that have one safe repair, report the rest.

As safe as restore: a plan first (what would change: table, rule, rows, sample ids),
nothing changed without ``apply`` (``--yes``), then a backup (reason "pre-fix") before
one transaction that does every fix, and each fix in the operations log with the ids it
changed and a digest of those rows before and after.

Safe repairs:
- configuration entries whose author is gone: ``updated_by`` NULL (what SET NULL does);
- servers whose owner is gone: to the holding account ``MCMANAGER_ORPHAN_OWNER``
  (created if absent, never an admin, no usable password); reported only when it is empty;
- servers Running or Starting on one port: all but the one running longest (the earliest
  ``updated_at``, then the lowest id) set to Stopped.
Reported, never changed: users equal but for case (never merged: both are listed), rows
breaking a CHECK (the SQL and admin page to fix them by hand), everything else validation finds.
"""

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field

from django.apps import apps
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections, models, transaction
from django.utils import timezone

from accounts.models import User
from servers.models import Configuration, Server, ServerStatus

from .backups import create_backup
from .errors import DbtoolsError
from .formatting import to_ms
from .oplog import OperationRecord, os_user, write_entry
from .validation import run_validation

SAMPLE_SIZE = 10


@dataclass
class FixPlan:
    """One problem class: what is wrong, and what the fix does (or why there is none)."""

    table: str
    rule: str
    count: int
    sample_ids: list
    action: str
    fixable: bool
    manual: list[str] = field(default_factory=list)  # SQL or admin pages, for the operator
    changed_ids: list = field(default_factory=list)
    digest_before: str = ""
    digest_after: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class RepairResult:
    """The plan, and whether it was applied (with the pre-fix backup's path)."""

    database: str
    plans: list[FixPlan] = field(default_factory=list)
    applied: bool = False
    backup: str = ""
    duration_ms: int = 0

    @property
    def fixable(self) -> list[FixPlan]:
        return [p for p in self.plans if p.fixable]

    def as_dict(self) -> dict:
        return {
            "database": self.database,
            "applied": self.applied,
            "backup": self.backup,
            "duration_ms": self.duration_ms,
            "plans": [p.as_dict() for p in self.plans],
        }


# --- the fixes: each finds its rows, and changes them ------------------------------------


def _orphan_owner_name() -> str:
    return (getattr(settings, "MCMANAGER_ORPHAN_OWNER", "") or "").strip()


def _dangling_configuration(database: str) -> models.QuerySet:
    users = User._base_manager.using(database).filter(pk=models.OuterRef("updated_by_id"))
    return Configuration._base_manager.using(database).filter(updated_by_id__isnull=False).exclude(models.Exists(users))


def _orphaned_servers(database: str) -> models.QuerySet:
    users = User._base_manager.using(database).filter(pk=models.OuterRef("owner_id"))
    return Server._base_manager.using(database).exclude(models.Exists(users))


def _port_clash_losers(database: str) -> list[int]:
    """Ids of the Running/Starting servers to stop: per shared port, all but the one running longest."""
    active = [ServerStatus.RUNNING, ServerStatus.STARTING]
    live = Server._base_manager.using(database).filter(status__in=active, status__in_exact=active)
    clashing = live.values("port").annotate(n=models.Count("pk")).filter(n__gt=1).values("port")
    rows = live.filter(port__in=clashing).order_by("port", "updated_at", "pk").values_list("port", "pk")
    losers, seen = [], set()
    for port, pk in rows:
        if port in seen:
            losers.append(pk)
        seen.add(port)
    return losers


def _holding_account(database: str):
    """The holding account for orphaned servers: created when absent; an admin is refused."""
    name = _orphan_owner_name()
    user = User._base_manager.using(database).filter(username=name).first()
    if user is None:
        user = User(username=name, is_admin=False, is_active=False)
        user.set_unusable_password()
        user.save(using=database)
    elif user.is_admin:
        raise DbtoolsError(f"MCMANAGER_ORPHAN_OWNER names {name!r}, an admin: servers are never given to an admin")
    return user


def _digest(queryset: models.QuerySet) -> str:
    """sha256 over the rows (every column), in id order."""
    rows = list(queryset.order_by("pk").values_list())
    return hashlib.sha256(json.dumps(rows, default=str).encode()).hexdigest()


# --- planning -------------------------------------------------------------------------------


def plan_repairs(database: str = DEFAULT_DB_ALIAS) -> list[FixPlan]:
    """One FixPlan per problem validation finds in the data (schema problems are restore's or migrate's)."""
    report = run_validation(database, schema=False)
    return [_plan(problem, database) for problem in report.problems]


def _plan(problem, database: str) -> FixPlan:
    plan = FixPlan(
        table=problem.table,
        rule=problem.rule,
        count=problem.count,
        sample_ids=list(problem.sample_ids),
        action=f"none automatic: {problem.fix}",
        fixable=False,
    )
    key = (problem.table, problem.rule)
    if key == ("servers_configuration", "updated_by_id_exists"):
        plan.action, plan.fixable = "set updated_by to NULL (the author is gone)", True
    elif key == ("servers_server", "owner_id_exists"):
        name = _orphan_owner_name()
        if name:
            plan.action, plan.fixable = f"give the servers to the holding account {name!r} (never an admin)", True
        else:
            plan.action = "reported only: MCMANAGER_ORPHAN_OWNER is empty; restore the owners or set it"
    elif key == ("servers_server", "active_port_unique"):
        losers = _port_clash_losers(database)
        plan.action, plan.fixable = f"set {len(losers)} to Stopped: all but the one running longest per port", True
        plan.sample_ids = losers[:SAMPLE_SIZE]
    elif problem.rule in ("username_unique_ignoring_case", "user_email_ci_unique", "email_unique"):
        plan.action = "reported, never merged: rename or remove one of each pair by hand"
        plan.manual = _case_twins(problem, database)
    elif problem.category == "constraint_violations" and _check_columns(problem, database) is not None:
        plan.action = "reported: no safe value to choose; fix each row by hand"
        plan.manual = _manual_check_fix(problem, database)
    return plan


def _case_twins(problem, database: str) -> list[str]:
    """The users of the sample, grouped by the name (or email) they share but for case."""
    column = "email" if "email" in problem.rule else "username"
    users = User._base_manager.using(database).filter(pk__in=problem.sample_ids).order_by("pk")
    groups: dict[str, list[str]] = {}
    for pk, value in users.values_list("pk", column):
        groups.setdefault((value or "").lower(), []).append(f"id {pk} ({value})")
    return [f"{column} {key!r}: {', '.join(members)}; admin: /admin/accounts/user/" for key, members in groups.items()]


def _model_of(table: str):
    return next((m for m in apps.get_models() if m._meta.db_table == table), None)


def _check_columns(problem, database: str) -> list[str] | None:
    """The columns a CHECK rule reads, or None when the rule is not a CHECK."""
    model = _model_of(problem.table)
    if model is None:
        return None
    for constraint in model._meta.constraints:
        if isinstance(constraint, models.CheckConstraint) and constraint.name == problem.rule:
            return sorted({model._meta.get_field(f).column for f in _q_fields(constraint.condition)})
    if problem.rule.endswith("_check"):
        return [problem.rule.removesuffix("_check")]
    return None


def _q_fields(q) -> set[str]:
    names = set()
    for child in getattr(q, "children", []):
        if isinstance(child, tuple):
            names.add(child[0].split("__")[0])
        else:
            names |= _q_fields(child)
    return names


def _manual_check_fix(problem, database: str) -> list[str]:
    model = _model_of(problem.table)
    quote = connections[database].ops.quote_name
    columns = _check_columns(problem, database)
    table = quote(problem.table)
    ids = ", ".join(str(int(i)) for i in problem.sample_ids)
    lines = [f"SELECT id, {', '.join(quote(c) for c in columns)} FROM {table} WHERE id IN ({ids});"]
    lines += [
        f"UPDATE {table} SET {quote(columns[0])} = <a value rule {problem.rule} allows> WHERE id = {int(i)};"
        for i in problem.sample_ids
    ]
    lines += [f"/admin/{model._meta.app_label}/{model._meta.model_name}/{int(i)}/change/" for i in problem.sample_ids]
    return lines


# --- applying -----------------------------------------------------------------------------


def repair_database(database: str = DEFAULT_DB_ALIAS, *, apply: bool = False, actor: str | None = None):
    """The plan; with ``apply``, a pre-fix backup then every safe fix in one transaction, each logged."""
    t0 = time.monotonic()
    result = RepairResult(database=database, plans=plan_repairs(database))
    if not apply or not result.fixable:
        result.duration_ms = to_ms(time.monotonic() - t0)
        return result
    result.backup = create_backup(database=database, reason="pre-fix", actor=actor).path
    started = timezone.now()
    with transaction.atomic(using=database):
        for plan in result.fixable:
            _apply(plan, database)
    result.applied = True
    seconds = time.monotonic() - t0
    for plan in result.fixable:
        record = OperationRecord(
            operation="repair",
            database=database,
            actor=actor or os_user(),
            file=str(result.backup),
            message=f"{plan.table} {plan.rule}: {plan.action}; {len(plan.changed_ids)} rows",
            details={"pre_fix_backup": str(result.backup), **plan.as_dict()},
        )
        write_entry(record, started, seconds, database)
    result.duration_ms = to_ms(seconds)
    return result


def _apply(plan: FixPlan, database: str) -> None:
    if plan.rule == "updated_by_id_exists":
        rows = _dangling_configuration(database)
        changes = {"updated_by_id": None}
    elif plan.rule == "owner_id_exists":
        rows = _orphaned_servers(database)
        changes = {"owner_id": _holding_account(database).pk}
    else:  # active_port_unique
        rows = Server._base_manager.using(database).filter(pk__in=_port_clash_losers(database))
        changes = {"status": ServerStatus.STOPPED, "updated_at": timezone.now()}
    plan.changed_ids = sorted(rows.values_list("pk", flat=True))
    changed = rows.model._base_manager.using(database).filter(pk__in=plan.changed_ids)
    plan.digest_before = _digest(changed)
    changed.update(**changes)
    plan.digest_after = _digest(changed)
