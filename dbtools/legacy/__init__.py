"""Moving in from the Flask-era mcServerManager: ``import_legacy``.

The old application kept SQLAlchemy tables ``user``, ``server`` and ``configuration``
(plus ``alembic_version``), with looser rules than ours and checks only in Python. An
import reads the whole source (never writing it), checks every row against our rules
and against the rows already here, and only then writes, in one transaction:

- a row that breaks one of our rules is reported (table, id, rule, value); without
  ``skip_invalid`` nothing is written; with it the row is written to a quarantine file
  (JSON lines) instead, and so is every row that depends on it (the servers of a
  quarantined user), so imported + quarantined = the source's rows;
- a row that collides with one already here (same id, username, email, server name,
  key, or a port a running server holds) is never overwritten: the import stops;
- ids are kept (every reference holds), sequences are moved past them, Werkzeug
  password hashes are kept behind ``accounts.hashers.WerkzeugPasswordHasher``.

Rows are checked in Python as they are read (the source is another database; no SQL of
ours runs there), with the same rules the models and ``validate`` apply, so that
``validate`` is clean after an import.
"""

from .report import LEGACY_TABLES, ImportRefused, ImportReport, RowProblem
from .service import import_legacy

__all__ = ["LEGACY_TABLES", "ImportRefused", "ImportReport", "RowProblem", "import_legacy"]
