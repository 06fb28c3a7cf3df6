"""What dbtools remembers: the operations log and the last stored reports."""

from django.db import models


class OperationLog(models.Model):
    """One operation on the database: backup, restore, validate, migrate, prune, ...

    Restore carries these rows over into the restored database, so the log of what
    happened before a restore survives it.
    """

    class Outcome(models.TextChoices):
        SUCCESS = "success"
        FAILURE = "failure"
        REFUSED = "refused"

    started_at = models.DateTimeField(db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    operation = models.CharField(max_length=32, db_index=True)
    actor = models.CharField(max_length=150, help_text="OS user, or the admin's username.")
    database = models.CharField(max_length=64, default="default")
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    duration_ms = models.PositiveBigIntegerField(default=0)
    file = models.CharField(max_length=1024, blank=True, default="")
    checksum = models.CharField(max_length=128, blank=True, default="")
    message = models.TextField(blank=True, default="")
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        verbose_name = "operation"

    def __str__(self) -> str:
        return f"{self.operation} {self.outcome} at {self.started_at:%Y-%m-%d %H:%M:%S}"


class StoredReport(models.Model):
    """The last result of a heavy check (validation), kept so pages need not redo it."""

    kind = models.CharField(max_length=32, db_index=True)
    database = models.CharField(max_length=64, default="default")
    created_at = models.DateTimeField(db_index=True)
    ok = models.BooleanField()
    problem_count = models.PositiveIntegerField(default=0)
    duration_ms = models.PositiveBigIntegerField(default=0)
    report = models.JSONField(default=dict)

    class Meta:
        ordering = ["-created_at", "-id"]
        get_latest_by = "created_at"

    def __str__(self) -> str:
        return f"{self.kind} report {self.created_at:%Y-%m-%d %H:%M:%S}"
