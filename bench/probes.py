"""Scripts the bench runs in a Django process of their own, on one bench database.

- ``validate_sql_file``: the SQL ``validate`` runs, captured from a real run, as a file for
  the engine's client (the reference ``validate`` is compared with);
- ``run_probe``: dbstats and the admin health page timed in-process (server time, no
  start-up), with a year of backups in the backup directory.
"""

import json
import shutil
from pathlib import Path

from .databases import BenchDatabase
from .harness import PYTHON, Results, run_timed

CAPTURE_SCRIPT = r"""
import json, os, sys
sys.path.insert(0, os.getcwd())
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mcmanager.settings")
import django
django.setup()
from django.db import connection
from dbtools.validation import run_validation

statements = []

def capture(execute, sql, params, many, context):
    result = execute(sql, params, many, context)
    head = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else ""
    if head in ("SELECT", "WITH", "PRAGMA", "SHOW", "EXPLAIN", "CHECK"):
        statements.append(connection.ops.last_executed_query(context["cursor"], sql, params))
    return result

# One worker: every statement on this connection, in order, as a client would run the script.
with connection.execute_wrapper(capture):
    report = run_validation(workers=1)
print(json.dumps({"ok": report.ok, "statements": statements}))
"""


def validate_sql_file(db: BenchDatabase) -> Path:
    """The SQL that ``validate`` runs, captured from a real run, as a file for the engine's client."""
    done = run_timed([PYTHON, "-c", CAPTURE_SCRIPT], db.manage_env())
    if not done.ok:
        raise RuntimeError(f"could not capture validate's SQL: {done.first_error()}")
    captured = json.loads(done.stdout.strip().splitlines()[-1])
    path = db.workdir / "validate.sql"
    with path.open("w") as fh:
        for statement in captured["statements"]:
            fh.write(statement.rstrip().rstrip(";") + ";\n")
    return path


PROBE_SCRIPT = r"""
import json, os, sys, time, statistics
sys.path.insert(0, os.getcwd())
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mcmanager.settings")
import django
django.setup()
from io import StringIO
from django.core.management import call_command
from django.test import Client
from accounts.models import User

runs = int(sys.argv[1])
out = {"dbstats": [], "health_page": [], "health_status": None}

# A year of daily backups in the backup directory (the dashboard charts the last 30 days,
# /health/ and dbstats list them all): one real backup, 364 hard links to it, each with a
# manifest of its own day, signed as ours.
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from dbtools.backups import create_backup
from dbtools.manifest import BackupManifest, manifest_path, write_manifest

real = create_backup(reason="bench").path
data = json.loads(manifest_path(real).read_text())
suffix = real.name[len("db_backup_20260101_000000"):]
now = datetime.now(UTC)
for day in range(1, 365):
    when = now - timedelta(days=day)
    name = f"db_backup_{when:%Y%m%d_%H%M%S}{suffix}"
    os.link(real, real.with_name(name))
    fields = dict(data, created_at=when.isoformat(), file=name, duration_ms=data["duration_ms"] + day)
    fields.pop("signature", None)
    write_manifest(real.with_name(name), BackupManifest.from_dict(fields))
out["backups_in_directory"] = 365

for _ in range(runs):
    t = time.perf_counter()
    call_command("dbstats", "--json", stdout=StringIO())
    out["dbstats"].append(time.perf_counter() - t)
admin, _ = User.objects.get_or_create(username="bench_admin_probe", defaults={"is_admin": True})
try:
    client = Client()
    client.force_login(admin)
    first = None
    for i in range(runs + 1):
        t = time.perf_counter()
        response = client.get("/admin/health/")
        elapsed = time.perf_counter() - t
        out["health_status"] = response.status_code
        if i == 0:
            out["health_first"] = elapsed  # cold: templates and imports loaded
        else:
            out["health_page"].append(elapsed)
finally:
    from django.contrib.sessions.models import Session
    Session.objects.all().delete()
    admin.delete()
print(json.dumps(out))
"""


def run_probe(db: BenchDatabase, results: Results, runs: int) -> None:
    """dbstats and the health page in-process, into ``results``; a directory of its own for the year of backups."""
    year = db.workdir / "year-of-backups"
    shutil.rmtree(year, ignore_errors=True)
    try:
        probe = run_timed([PYTHON, "-c", PROBE_SCRIPT, str(runs)], db.manage_env(year))
    finally:
        shutil.rmtree(year, ignore_errors=True)
    if probe.ok:
        data = json.loads(probe.stdout.strip().splitlines()[-1])
        for v in data["dbstats"]:
            results.add(db.name, "dbstats (in-process)", v)
        if data.get("health_status") == 200:
            for v in data["health_page"]:
                results.add(db.name, "admin health page (server time)", v)
            results.add(db.name, "admin health page, first view (cold)", data["health_first"])
        else:
            results.failures[(db.name, "admin health page (server time)")] = f"HTTP {data.get('health_status')}"
    else:
        for item in ("dbstats (in-process)", "admin health page (server time)"):
            results.failures[(db.name, item)] = probe.first_error()
