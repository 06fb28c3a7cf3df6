"""``manage.py backup``: create, check, list and prune backups.

Exit 0 success, 1 failure (dump failed, disk full, verification failed), 2 could not run
(bad usage, unwritable directory, database unreachable, lock held). Quiet with -v 0.
"""

import json

from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS

from dbtools.backups import (
    COMPRESSIONS,
    VERIFY_LEVELS,
    RetentionPolicy,
    create_backup,
    list_everywhere,
    prune_backups,
    sync_backups,
    verify_backup,
)
from dbtools.checks import OPERATIONS_CHECKS
from dbtools.errors import BackupFailed, DbtoolsError
from dbtools.formatting import format_bytes
from dbtools.heartbeat import heartbeat


def database_of(info) -> str:
    """The --list column naming the database a backup is of (its manifest's name)."""
    return info.manifest.database_name or "-" if info.manifest else "-"


def _count(value: str) -> int:
    n = int(value)
    if n < 0:
        raise ValueError(value)
    return n


class Command(BaseCommand):
    help = (
        "Back up the database into the backup directory (verified, atomic, with a manifest); "
        "or --list, --check FILE, --prune."
    )
    requires_system_checks = OPERATIONS_CHECKS

    def add_arguments(self, parser):
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS, help="Database alias (default: %(default)s).")
        parser.add_argument("-d", "--output-dir", help="Backup directory (default: MCMANAGER_BACKUP_DIR).")
        parser.add_argument(
            "--compress", choices=COMPRESSIONS, help="Compression (default: MCMANAGER_BACKUP_COMPRESSION)."
        )
        parser.add_argument(
            "--verify",
            choices=VERIFY_LEVELS,
            default="quick",
            help="quick: checksum and structure; full: also restore into a scratch database and compare row counts.",
        )
        parser.add_argument(
            "--reason", default="manual", help="Recorded in the manifest: manual (default), cron, pre-deploy, ..."
        )
        parser.add_argument("--json", action="store_true", help="Print the result as JSON.")
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument("--list", action="store_true", help="List the backups, newest first.")
        mode.add_argument("--check", metavar="FILE", help="Verify an existing backup (at the --verify level).")
        mode.add_argument(
            "--prune",
            action="store_true",
            help="Apply the retention policy to this database's backups (--database) without a new backup; "
            "other databases' backups in the directory are left alone.",
        )
        mode.add_argument(
            "--sync",
            action="store_true",
            help="Upload the verified, signed local backups that have no offsite copy (MCMANAGER_OFFSITE_URL).",
        )
        parser.add_argument("--dry-run", action="store_true", help="With --prune: show what would be deleted.")
        parser.add_argument(
            "--force",
            action="store_true",
            help="With --check: check a backup whose manifest is not signed by this installation's key.",
        )
        keeps = {
            "last": "the N newest backups",
            "daily": "the newest backup of each of the last N days that have one",
            "weekly": "the newest backup of each of the last N ISO weeks that have one",
            "monthly": "the newest backup of each of the last N months that have one",
        }
        for rule, what in keeps.items():
            parser.add_argument(
                f"--keep-{rule}",
                type=_count,
                metavar="N",
                help=f"Retention of this database's verified, signed backups: keep {what} "
                f"(default: MCMANAGER_KEEP_{rule.upper()}).",
            )

    def handle(self, *args, **options):
        if options["dry_run"] and not options["prune"]:
            raise CommandError("--dry-run goes with --prune", returncode=2)
        if options["force"] and not options["check"]:
            raise CommandError("--force goes with --check", returncode=2)
        policy = RetentionPolicy.from_settings(
            keep_last=options["keep_last"],
            keep_daily=options["keep_daily"],
            keep_weekly=options["keep_weekly"],
            keep_monthly=options["keep_monthly"],
        )
        # Heartbeats (MCMANAGER_BACKUP_PING_URL) for the cron jobs: a backup and a prune.
        job = (
            None
            if options["list"] or options["check"]
            else "backup --prune"
            if options["prune"]
            else "backup --sync"
            if options["sync"]
            else "backup"
        )
        with heartbeat(job):
            try:
                if options["list"]:
                    infos, warning = list_everywhere(options["output_dir"])
                    if warning:
                        self.stderr.write(f"warning: {warning}")
                    return self.show_list(infos, options)
                if options["sync"]:
                    return self.show_sync(sync_backups(options["output_dir"]), options)
                if options["check"]:
                    result = verify_backup(
                        options["check"], options["verify"], options["database"], force=options["force"]
                    )
                    return self.show_check(result, options)
                if options["prune"]:
                    result = prune_backups(
                        policy, options["output_dir"], dry_run=options["dry_run"], database=options["database"]
                    )
                    return self.show_prune(result, options)
                result = create_backup(
                    database=options["database"],
                    output_dir=options["output_dir"],
                    compress=options["compress"],
                    verify=options["verify"],
                    reason=options["reason"],
                    retention=policy,
                )
                if result.offsite and not result.offsite["uploaded"]:
                    raise BackupFailed(
                        f"backup written and verified locally ({result.path}), but the offsite upload failed: "
                        f"{result.offsite['error']}; the local backup is kept"
                    )
            except DbtoolsError as exc:
                raise CommandError(str(exc), returncode=exc.exit_code) from None
        if options["json"]:
            self.stdout.write(json.dumps(result.as_dict(), indent=2))
            return
        if options["verbosity"] >= 1:
            self.stdout.write(str(result.path))
            if result.offsite:
                self.stdout.write(f"offsite: {result.offsite['url']} (read back, sha256 matches)")
        if options["verbosity"] >= 2:
            m = result.manifest
            self.stdout.write(
                f"{format_bytes(m.size)}, {sum(m.row_counts.values())} rows in {len(m.row_counts)} tables, "
                f"sha256 {m.sha256}, {result.duration_ms / 1000:.2f} s"
            )
            for check in result.verification.checks:
                self.stdout.write(f"  ok  {check.name}: {check.detail}")
        if result.pruned and result.pruned.deleted and options["verbosity"] >= 1:
            self.stdout.write(f"pruned: {', '.join(result.pruned.deleted)}")

    def show_list(self, infos, options) -> None:
        if options["json"]:
            self.stdout.write(json.dumps([i.as_dict() for i in infos], indent=2))
            return
        if not infos:
            if options["verbosity"] >= 1:
                self.stdout.write("No backups.")
            return
        for info in infos:
            if info.problem:
                status = f"PROBLEM: {info.problem}"
            elif info.verified:
                status = f"verified ({info.verification_level})"
            else:
                status = "NOT verified"
            signed = {True: "signed", False: "UNSIGNED", None: "-"}[info.signed]
            where = "both" if len(info.locations) == 2 else info.locations[0]
            self.stdout.write(
                f"{info.name}  {info.created_at:%Y-%m-%d %H:%M:%S}Z  {format_bytes(info.size):>10}  {where:<7}  "
                f"{info.engine or '-':<10} {database_of(info):<20} {info.reason or '-':<12} {signed:<9} {status}"
                + (f"  schema {info.schema}" if info.schema else "")
                + (f"  ({info.signature})" if info.signed is False else "")
            )

    def show_sync(self, result, options) -> None:
        if options["json"]:
            self.stdout.write(json.dumps(result.as_dict(), indent=2))
        elif options["verbosity"] >= 1:
            for name in result.uploaded:
                self.stdout.write(f"uploaded: {name}")
            if not result.uploaded and not result.failed:
                self.stdout.write(f"Nothing to upload: {len(result.present)} backup(s) already offsite.")
        if result.failed:
            name, why = next(iter(result.failed.items()))
            more = f" (and {len(result.failed) - 1} more)" if len(result.failed) > 1 else ""
            raise CommandError(f"offsite upload of {name} failed: {why}{more}", returncode=1)

    def show_check(self, result, options) -> None:
        if options["json"]:
            self.stdout.write(json.dumps(result.as_dict(), indent=2))
        elif options["verbosity"] >= 1:
            for check in result.checks:
                self.stdout.write(f"  {'ok ' if check.ok else 'BAD'} {check.name}: {check.detail}")
        if not result.ok:
            raise CommandError(f"{result.path} failed verification: {result.reason}", returncode=1)
        if not options["json"] and options["verbosity"] >= 1:
            self.stdout.write(self.style.SUCCESS(f"{result.path}: verified ({result.level})"))

    def show_prune(self, result, options) -> None:
        if options["json"]:
            self.stdout.write(json.dumps(result.as_dict(), indent=2))
            return
        if options["verbosity"] < 1:
            return
        if result.policy.is_empty:
            self.stdout.write("No retention policy (--keep-* or MCMANAGER_KEEP_*): nothing deleted.")
            return
        verb = "would delete" if result.dry_run else "deleted"
        for name in result.deleted:
            self.stdout.write(f"{verb}: {name}")
        for name in result.offsite_deleted:
            self.stdout.write(f"deleted offsite: {name}")
        if result.offsite_error:
            self.stderr.write(f"warning: {result.offsite_error}")
        for name, reasons in sorted(result.kept.items(), reverse=True):
            self.stdout.write(f"keep: {name} ({', '.join(reasons)})")
        for name, why in sorted(result.ignored.items(), reverse=True):
            self.stdout.write(f"left alone: {name} ({why})")
        if result.others:
            self.stdout.write(f"left alone: {result.others} backup(s) of other databases (their own prune's)")
