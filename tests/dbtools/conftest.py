"""Fixtures shared by the dbtools tests."""

from .offsite_support import s3_server  # noqa: F401 (a fixture, found by name)
