"""``first_backup`` (run by ``make run``): a new installation starts with a backup, and healthy."""

from io import StringIO

import pytest
from django.core.management import call_command

from dbtools.backups import list_backups
from dbtools.monitoring import HEALTHY, health_report

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_new_install_gets_one_backup_and_is_healthy():
    assert health_report().status != HEALTHY  # no backup at all
    out = StringIO()
    call_command("first_backup", stdout=out)
    assert "Took a first backup" in out.getvalue()
    backups = list_backups()
    assert [b.reason for b in backups] == ["first-run"] and backups[0].verified and backups[0].signed
    assert health_report().status == HEALTHY, health_report().as_dict()
    # Run again (every make run): nothing new.
    out = StringIO()
    call_command("first_backup", stdout=out)
    assert "Newest verified backup" in out.getvalue()
    assert len(list_backups()) == 1
