"""Writing many rows with explicit ids, the fastest way the engine offers, and checking them when the engine did not.

``BulkWriter`` is shared by the demo-data generator and ``import_legacy`` (dbtools.legacy).
Everything vendor-specific is the engine's (the "demo data (bulk loading)" section of
``dbtools.engines.base``): how rows are written (COPY on PostgreSQL, executemany
elsewhere), what happens around one table's load (SQLite rebuilds its indexes once at
the end) and around the whole load (SQLite stops checking CHECKs and foreign keys per
row). When the engine stopped checking, ``verify()`` checks each batch set-based, inside
its transaction, so a bad row still never commits.
"""

import gc
from contextlib import contextmanager

from django.db.models import CheckConstraint, Q

from dbtools.engines import get_engine
from dbtools.validation import column_check

from .result import GenerationError


def columns(model, names: list[str]) -> list[str]:
    """The database columns of the model's fields ``names``."""
    return [model._meta.get_field(name).column for name in names]


class BulkWriter:
    """Writes batches of tuples into one table, the fastest way the engine offers."""

    def __init__(self, database: str):
        self.engine = get_engine(database)
        self.connection = self.engine.connection
        self.checks_deferred = False

    def write(self, model, fields: list[str], rows: list[tuple]) -> None:
        """Insert ``rows`` (tuples in ``fields``' order) into the model's table."""
        self.engine.bulk_insert(model._meta.db_table, columns(model, fields), rows)

    def verify(self, model, first_id: int, last_id: int) -> None:
        """When the engine skipped its checks, check the batch in one query before it commits.

        Every CHECK of the table (the model's constraints and the columns' own, such as a
        Positive*Field's ">= 0") and every foreign key: the batch's rows are read once.
        """
        if not self.checks_deferred:
            return
        rules = Q()
        for constraint in model._meta.constraints:
            if isinstance(constraint, CheckConstraint):
                rules &= constraint.condition
        for model_field in model._meta.concrete_fields:
            check = column_check(model_field, self.connection)
            if check is not None:
                rules &= Q(check[1])
        broken = ~rules
        for model_field in model._meta.concrete_fields:
            if model_field.is_relation and model_field.many_to_one:
                target = model_field.related_model._base_manager.using(self.connection.alias)
                # NOT IN: SQLite probes the parent's rowid directly (no subquery run per row).
                broken |= Q(**{f"{model_field.attname}__isnull": False}) & ~Q(
                    **{f"{model_field.attname}__in": target.values(model_field.target_field.attname)}
                )
        bad = (
            model._base_manager.using(self.connection.alias)
            .filter(pk__gte=first_id, pk__lte=last_id)
            .filter(broken)
            # No ORDER BY (the model's is by name): SQLite would walk the whole name index.
            .order_by()
            .values_list("pk", flat=True)[:10]
        )
        bad = list(bad)
        if bad:
            raise GenerationError(
                f"generated {model._meta.db_table} rows break a CHECK constraint or a foreign key (ids {bad})"
            )

    @contextmanager
    def loading(self, model):
        """Around the load of one table (the engine's ``bulk_load_table``)."""
        with self.engine.bulk_load_table(model._meta.db_table):
            yield

    @contextmanager
    def fast_mode(self):
        """Around the whole load (the engine's ``bulk_load_session``); batches are verified when it defers its checks."""
        with self.engine.bulk_load_session() as deferred:
            self.checks_deferred = deferred
            # Millions of new tuples would trigger the cyclic GC over and over for nothing.
            gc_was_enabled = gc.isenabled()
            gc.disable()
            try:
                yield
            finally:
                if gc_was_enabled:
                    gc.enable()
                self.checks_deferred = False
