"""Bad manifests: one line each, and never more than their own entry in a listing, a health check or a prune.

Each bad manifest of issue 14 (and a few more) lies beside a copy of a real backup,
next to a good, fresh backup: ``backup --list`` exits 0 and shows it as bad with the
reason, ``/health/`` and ``/admin/health/`` answer 200, ``dbstats`` and a nightly
``backup`` with retention exit 0, and the bad entry is never counted or deleted.
"""

import json
import os
import shutil
from pathlib import Path

import pytest
from django.test import Client

from accounts.models import User
from dbtools.backups import create_backup, list_backups
from dbtools.errors import VerificationFailed
from dbtools.manifest import MAX_MANIFEST_BYTES, manifest_path, manifest_problem, read_manifest
from dbtools.monitoring import backup_state

from .restore_helpers import edit_manifest, live_fingerprint, make_data
from .restore_helpers import run_command as run

pytestmark = pytest.mark.django_db(transaction=True)

BAD_NAME = "db_backup_20200101_000000.sqlite3.zst"


def with_field(name, value):
    return lambda good: json.dumps({**good, name: value})


def deeply_nested(good) -> str:
    """Deeper than json's recursion limit: json.loads itself raises RecursionError."""
    text = json.dumps({**good, "verification": "@"})
    return text.replace('"@"', "[" * 200_000 + "]" * 200_000)


def huge(good) -> str:
    return json.dumps({**good, "actor": "x" * (MAX_MANIFEST_BYTES + 10)})


# name -> (the manifest's text from a good manifest's fields, a fragment of the problem)
BAD_MANIFESTS = {
    "migrations-x": (with_field("migrations", "x"), "migrations must be"),
    "created_at-5": (with_field("created_at", 5), "created_at must be an ISO 8601 time (got 5)"),
    "created_at-not-a-time": (with_field("created_at", "yesterday"), "created_at must be"),
    "row_counts-null": (
        with_field("row_counts", None),
        "row_counts must be an object of table -> row count, each a whole number 0 or more (got null)",
    ),
    "row_counts-negative": (with_field("row_counts", {"accounts_user": -1}), "row_counts must be"),
    "row_counts-bool": (with_field("row_counts", {"accounts_user": True}), "row_counts must be"),
    "verification-list": (with_field("verification", ["ok"]), "verification must be"),
    "nested-deep": (deeply_nested, "nested too deeply"),
    "nested-20": (with_field("verification", {"checks": [json.loads("[" * 20 + "]" * 20)]}), "nested deeper than"),
    "not-json": (lambda good: '{"format_version": 1, "engine": ', "not JSON"),
    "binary": (lambda good: "\x00\xff\xfe garbage", "not JSON"),
    "huge": (huge, "larger than 1024 KiB"),
    "array": (lambda good: "[1, 2, 3]", "not a JSON object"),
    "nan-size": (lambda good: json.dumps({**good, "size": 0}).replace('"size": 0', '"size": NaN'), "not JSON"),
    "size-negative": (with_field("size", -5), "size must be"),
    "size-text": (with_field("size", "12"), "size must be"),
    "sha256-short": (with_field("sha256", "abc"), "sha256 must be 64 lowercase hex digits"),
    "format_version-text": (with_field("format_version", "1"), "format_version is '1', not 1"),
    "sha256-missing": (lambda good: json.dumps({k: v for k, v in good.items() if k != "sha256"}), "sha256 is missing"),
    "compression-unknown": (with_field("compression", "rar"), "compression must be"),
    "signature-text": (with_field("signature", "trust me"), "signature must be"),
}


@pytest.fixture
def good_backup() -> Path:
    make_data("a", users=2)
    return Path(create_backup().path)


def plant(good_backup: Path, case: str) -> Path:
    """A copy of the good backup named like an older one, with the bad manifest of ``case``."""
    build, _ = BAD_MANIFESTS[case]
    bad = good_backup.parent / BAD_NAME
    shutil.copyfile(good_backup, bad)
    good = json.loads(manifest_path(good_backup).read_text())
    manifest_path(bad).write_text(build(good), encoding="utf-8", errors="surrogateescape")
    return bad


@pytest.fixture(params=sorted(BAD_MANIFESTS))
def case(request) -> str:
    return request.param


# --- reading ---------------------------------------------------------------------------


@pytest.mark.engines("sqlite")
def test_a_bad_manifest_is_one_line_naming_the_problem(good_backup, case):
    bad = plant(good_backup, case)
    with pytest.raises(VerificationFailed) as exc:
        read_manifest(bad)
    message = str(exc.value)
    assert message.startswith(f"the manifest of {BAD_NAME} is")
    assert BAD_MANIFESTS[case][1] in message
    assert "\n" not in message and len(message) < 300


@pytest.mark.engines("sqlite")
def test_our_own_manifests_pass_the_checks(good_backup):
    assert manifest_problem(json.loads(manifest_path(good_backup).read_text())) is None
    assert read_manifest(good_backup).signed


@pytest.mark.engines("sqlite")
def test_a_manifest_that_is_a_fifo_is_refused_at_once(good_backup):
    bad = good_backup.parent / BAD_NAME
    shutil.copyfile(good_backup, bad)
    os.mkfifo(manifest_path(bad))
    with pytest.raises(VerificationFailed, match="named pipe"):
        read_manifest(bad)
    [entry] = [i for i in list_backups() if i.name == BAD_NAME]
    assert "named pipe" in entry.problem


# --- one bad entry, everything else goes on ---------------------------------------------


@pytest.mark.engines("sqlite")
def test_list_shows_the_bad_entry_and_exits_0(good_backup, case):
    plant(good_backup, case)
    code, out, err = run("backup", "--list")
    assert code == 0, err
    lines = {line.split()[0]: line for line in out.splitlines()}
    assert "PROBLEM: the manifest of" in lines[BAD_NAME]
    assert BAD_MANIFESTS[case][1] in lines[BAD_NAME]
    assert "verified (quick)" in lines[good_backup.name] and " signed " in lines[good_backup.name]

    code, out, err = run("backup", "--list", "--json")
    assert code == 0, err
    rows = {row["name"]: row for row in json.loads(out)}
    assert rows[BAD_NAME]["bad"] is True
    assert BAD_MANIFESTS[case][1] in rows[BAD_NAME]["problem"]
    assert rows[BAD_NAME]["verified"] is None and rows[BAD_NAME]["signed"] is None
    assert rows[good_backup.name]["bad"] is False and rows[good_backup.name]["verified"] is True


@pytest.mark.engines("sqlite")
def test_health_and_the_dashboard_answer_200_and_show_the_bad_entry(good_backup, case):
    plant(good_backup, case)
    response = Client().get("/health/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "healthy"
    assert "1 bad entry" in body["checks"]["backup_freshness"]["message"]

    state = backup_state()
    assert state["newest_verified"]["name"] == good_backup.name
    assert [entry["name"] for entry in state["bad"]] == [BAD_NAME]

    client = Client()
    client.force_login(User.objects.create_superuser("boss", password="correct-horse-battery"))
    response = client.get("/admin/health/")
    assert response.status_code == 200
    page = response.content.decode()
    assert BAD_NAME in page and "bad entry" in page

    code, out, err = run("dbstats")
    assert code == 0, err
    assert f"Bad entry: {BAD_NAME}" in out
    code, out, err = run("dbstats", "--format", "prometheus")
    assert code == 0 and "mcmanager_backup_bad_entries" in out


@pytest.mark.engines("sqlite")
def test_a_nightly_backup_with_retention_exits_0_and_leaves_the_bad_entry(good_backup, case, manage_py):
    bad = plant(good_backup, case)
    done = manage_py("backup", "-v", "0", "--reason", "cron", env={"MCMANAGER_KEEP_LAST": "1"})
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert bad.exists() and manifest_path(bad).exists()  # a bad entry is never pruned
    assert not good_backup.exists()  # the policy still pruned the older good backup
    assert len([i for i in list_backups() if not i.bad]) == 1

    code, out, err = run("backup", "--prune", "--keep-last", "1", "--dry-run")
    assert code == 0, err
    assert f"left alone: {BAD_NAME}" in out


def test_row_counts_null_is_a_bad_manifest_not_a_skipped_comparison(good_backup):
    """Signed or not, a manifest without row counts is refused: the comparison is never skipped."""
    edit_manifest(good_backup, row_counts=None)  # signed again with the test's key
    make_data("b", users=1)
    before = live_fingerprint()
    for args in ([str(good_backup), "--noinput"], ["--check", str(good_backup)]):
        code, out, err = run("restore", *args)
        assert code == 1, (code, out, err)
        assert "row_counts must be an object of table -> row count, each a whole number 0 or more (got null)" in err
        assert "\n" not in err.strip()
    code, out, err = run("backup", "--check", str(good_backup))
    assert code == 1 and "row_counts must be" in err
    assert live_fingerprint() == before


def test_row_counts_that_disagree_with_the_file_are_refused(good_backup):
    """An empty or wrong count in a signed manifest is compared, not trusted."""
    counts = json.loads(manifest_path(good_backup).read_text())["row_counts"]
    edit_manifest(good_backup, row_counts={**counts, "accounts_user": counts["accounts_user"] + 1})
    before = live_fingerprint()
    code, out, err = run("restore", "--check", str(good_backup))
    assert code == 1, (code, out, err)
    assert "accounts_user" in err
    assert live_fingerprint() == before
