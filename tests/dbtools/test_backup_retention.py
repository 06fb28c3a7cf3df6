"""Retention across a simulated calendar: synthetic backups whose creation time we control.

Daily at 02:00 from 2026-01-01 to 2026-03-31, plus 14:00 on 03-30 and 03-31, all
verified; and a newer, unverified one on 04-01. 2026-03-30 is a Monday (ISO week 14).
"""

import io
import os
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command

from dbtools.backups import RetentionPolicy, create_backup, list_backups, prune_backups
from dbtools.engines import get_engine
from dbtools.manifest import BackupManifest, manifest_path, write_manifest


def fake_backup(
    directory, when: datetime, *, verified=True, engine=None, alias="default", database=None, ext="sqlite3.zst"
):
    """A signed manifest (and 64 random bytes) of a backup of ``database`` (default: the
    test database's name, as Engine.backup_identity gives it) of ``engine`` (default: the
    test database's; without a database identity, as older manifests)."""

    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / f"db_backup_{when:%Y%m%d_%H%M%S}.{ext}"
    data = os.urandom(64)
    path.write_bytes(data)
    write_manifest(
        path,
        BackupManifest(
            file=path.name,
            engine=engine or get_engine("default").vendor,
            database_alias=alias,
            database_name=database if database is not None else get_engine("default").backup_identity(),
            created_at=when.isoformat(),
            sha256="0" * 64,
            size=len(data),
            compression="zstd",
            verification={"level": "quick", "ok": verified, "at": when.isoformat(), "checks": []},
        ),
    )
    return path


def stamp(name: str) -> str:
    return name.split(".")[0].removeprefix("db_backup_")


@pytest.fixture
def calendar(settings):
    directory = settings.MCMANAGER_BACKUP_DIR
    day = datetime(2026, 1, 1, 2, 0, tzinfo=UTC)
    while day.date() <= datetime(2026, 3, 31).date():
        fake_backup(directory, day)
        day += timedelta(days=1)
    fake_backup(directory, datetime(2026, 3, 30, 14, 0, tzinfo=UTC))
    fake_backup(directory, datetime(2026, 3, 31, 14, 0, tzinfo=UTC))
    fake_backup(directory, datetime(2026, 4, 1, 2, 0, tzinfo=UTC), verified=False)
    return directory


def remaining(directory) -> list[str]:
    return sorted(stamp(n) for n in os.listdir(directory) if not n.endswith(".json"))


def test_daily_weekly_monthly_keep_exactly_what_the_policy_says(calendar):
    policy = RetentionPolicy(keep_daily=3, keep_weekly=2, keep_monthly=3)
    result = prune_backups(policy)
    assert remaining(calendar) == [
        "20260131_020000",  # monthly: January
        "20260228_020000",  # monthly: February
        "20260329_020000",  # daily (3rd day) and weekly (ISO week 13)
        "20260330_140000",  # daily: the newest of 03-30
        "20260331_140000",  # newest verified; daily, weekly (week 14), monthly (March)
        "20260401_020000",  # not verified: does not count, is not pruned
    ]
    assert len(result.deleted) == 92 - 5
    assert set(result.kept["db_backup_20260331_140000.sqlite3.zst"]) == {
        "newest verified",
        "daily",
        "weekly",
        "monthly",
    }
    assert "not verified" in result.ignored["db_backup_20260401_020000.sqlite3.zst"]
    # A backup goes with its manifest: no manifest is left without its file, and none is missing.
    names = os.listdir(calendar)
    assert sorted(n.removesuffix(".json") for n in names if n.endswith(".json")) == sorted(
        n for n in names if not n.endswith(".json")
    )


def test_keep_last(calendar):
    prune_backups(RetentionPolicy(keep_last=2))
    assert remaining(calendar) == ["20260331_020000", "20260331_140000", "20260401_020000"]


def test_the_newest_verified_backup_is_never_deleted(calendar):
    prune_backups(RetentionPolicy(keep_last=0, keep_daily=0))
    assert remaining(calendar) == ["20260331_140000", "20260401_020000"]


def test_no_policy_deletes_nothing(calendar):
    before = sorted(os.listdir(calendar))
    result = prune_backups(RetentionPolicy())
    assert result.deleted == []
    assert sorted(os.listdir(calendar)) == before


def test_dry_run_shows_what_would_go_and_deletes_nothing(calendar):
    before = sorted(os.listdir(calendar))
    out = io.StringIO()
    call_command("backup", "--prune", "--dry-run", "--keep-monthly", "1", stdout=out)
    assert sorted(os.listdir(calendar)) == before
    lines = out.getvalue().splitlines()
    would = [line for line in lines if line.startswith("would delete: ")]
    assert len(would) == 91
    assert "keep: db_backup_20260331_140000.sqlite3.zst (newest verified, monthly)" in lines

    call_command("backup", "--prune", "--keep-monthly", "1", stdout=io.StringIO())
    assert remaining(calendar) == ["20260331_140000", "20260401_020000"]


def test_each_database_in_a_shared_directory_is_pruned_on_its_own(settings):
    directory = settings.MCMANAGER_BACKUP_DIR
    fake_backup(directory, datetime(2026, 1, 1, tzinfo=UTC), alias="other", database="another")
    fake_backup(directory, datetime(2026, 1, 2, tzinfo=UTC))
    fake_backup(directory, datetime(2026, 1, 3, tzinfo=UTC))
    prune_backups(RetentionPolicy(keep_last=1))
    assert remaining(directory) == ["20260101_000000", "20260103_000000"]


def test_files_that_are_not_ours_are_left_alone(settings):
    directory = settings.MCMANAGER_BACKUP_DIR
    fake_backup(directory, datetime(2026, 1, 2, tzinfo=UTC))
    fake_backup(directory, datetime(2026, 1, 3, tzinfo=UTC))
    (directory / "db_backup_20250101_000000.sqlite3.zst").write_bytes(b"no manifest")
    (directory / "notes.txt").write_text("mine")
    result = prune_backups(RetentionPolicy(keep_last=1))
    assert sorted(result.deleted) == ["db_backup_20260102_000000.sqlite3.zst"]
    assert (directory / "notes.txt").exists()
    assert (directory / "db_backup_20250101_000000.sqlite3.zst").exists()


@pytest.mark.django_db(transaction=True)
def test_retention_from_the_settings_runs_after_a_successful_backup(settings, vendor):
    directory = settings.MCMANAGER_BACKUP_DIR
    old = [fake_backup(directory, datetime(2026, 1, d, tzinfo=UTC), engine=vendor) for d in (1, 2, 3)]
    settings.MCMANAGER_KEEP_LAST = 2
    result = create_backup()
    assert result.pruned is not None
    assert sorted(result.pruned.deleted) == [old[0].name, old[1].name]
    assert not old[0].exists() and not manifest_path(old[0]).exists()
    assert [i.name for i in list_backups()] == [result.path.name, old[2].name]
