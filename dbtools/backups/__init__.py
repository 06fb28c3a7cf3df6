"""The backup side: writing, checking, listing, pruning and copying backups offsite.

Modules, each importing only those above it in this list (no cycle, nothing reaches up):

- ``catalogue``: names, the listing (``list_backups``), whose backup is whose
  (``belongs_to``, ``database_key``, ``newest_to_restore``), leftovers of killed runs;
- ``plaintext``: the plain dump inside a backup file (decryption, decompression);
- ``store``: the S3-compatible offsite store (``OffsiteStore``), bytes only;
- ``offsite``: what backup, restore, retention and health do with the store;
- ``retention``: keep-last/daily/weekly/monthly, ``prune_backups``;
- ``verify``: checking a backup file (``verify_backup``, ``backup --check``);
- ``writer``: ``create_backup`` and migrate's ``pre_migrate_backup``.

Callers import from the package (``from dbtools.backups import list_backups``); the
operations log (``dbtools.oplog``) sits below all of it and imports none of it.
"""

from ..manifest import BackupManifest, read_manifest
from .catalogue import (
    NAME_RE,
    BackupInfo,
    backup_directory,
    backup_time,
    belongs_to,
    clean_leftovers,
    clean_scratch_leftovers,
    database_key,
    foreign_source_note,
    is_of,
    latest_verified_backup,
    list_backups,
    newest_to_restore,
    source_of,
)
from .offsite import (
    OffsiteStore,
    SyncResult,
    delete_offsite_copies,
    fetch_latest,
    fetch_named,
    forget_state,
    list_everywhere,
    offsite_state,
    parse_url,
    private_download_dir,
    sync_backups,
    upload_backup,
)
from .plaintext import open_dump, plaintext_reader
from .retention import PruneResult, RetentionPolicy, prune_backups, select_kept
from .verify import VERIFY_LEVELS, VerificationResult, verify_backup
from .writer import COMPRESSIONS, BackupResult, count_rows, create_backup, pre_migrate_backup

__all__ = [
    "COMPRESSIONS",
    "NAME_RE",
    "VERIFY_LEVELS",
    "BackupInfo",
    "BackupManifest",
    "BackupResult",
    "OffsiteStore",
    "PruneResult",
    "RetentionPolicy",
    "SyncResult",
    "VerificationResult",
    "backup_directory",
    "backup_time",
    "belongs_to",
    "clean_leftovers",
    "clean_scratch_leftovers",
    "count_rows",
    "create_backup",
    "database_key",
    "foreign_source_note",
    "is_of",
    "source_of",
    "delete_offsite_copies",
    "fetch_latest",
    "fetch_named",
    "forget_state",
    "latest_verified_backup",
    "list_backups",
    "list_everywhere",
    "newest_to_restore",
    "offsite_state",
    "open_dump",
    "parse_url",
    "plaintext_reader",
    "pre_migrate_backup",
    "private_download_dir",
    "prune_backups",
    "read_manifest",
    "select_kept",
    "sync_backups",
    "upload_backup",
    "verify_backup",
]
