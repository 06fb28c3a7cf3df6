"""Checking a backup file: signature, checksum and structure; ``full`` also loads it into a scratch.

``verify_backup`` is ``backup --check``; ``deep_checks_with_hash`` is the part the writer
shares (``--verify full`` of a new backup): the file is read once, hashed as it is
decrypted and decompressed into the engine's checks.
"""

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import zstandard
from django.db import DEFAULT_DB_ALIAS

from ..encryption import AGE_MAGIC, is_encrypted
from ..engines import Engine, get_engine
from ..engines.results import Check, compare_row_counts
from ..errors import CouldNotRun, ForeignContent, VerificationFailed
from ..manifest import BackupManifest, manifest_path, read_manifest, write_manifest
from ..oplog import journal_operation
from ..signing import refusal
from ..streams import HashingReader, NotRegularFile, detect_compression, open_regular
from .catalogue import drop_scratch_leftovers, iso_utc
from .plaintext import plaintext_reader

VERIFY_LEVELS = ("quick", "full")


@dataclass
class VerificationResult:
    """The verdict on one backup file: every check, and the first failure as the reason."""

    ok: bool
    level: str
    checks: list[Check] = field(default_factory=list)
    reason: str = ""
    path: str = ""
    at: str = ""

    @classmethod
    def of(cls, checks: list[Check], level: str, path: str = "") -> "VerificationResult":
        """The verdict of ``checks``: ok when none failed, the first failure as the reason."""
        failures = [c for c in checks if not c.ok]
        return cls(
            ok=not failures,
            level=level,
            checks=checks,
            reason=f"{failures[0].name}: {failures[0].detail}" if failures else "",
            path=path,
            at=iso_utc(datetime.now(UTC)),
        )

    def as_dict(self) -> dict:
        return {
            "ok": self.ok,
            "level": self.level,
            "reason": self.reason,
            "path": self.path,
            "at": self.at,
            "checks": [c.as_dict() for c in self.checks],
        }


def check_level(level: str) -> None:
    if level not in VERIFY_LEVELS:
        raise CouldNotRun(f"unknown verification level {level!r}: use quick or full")


def verify_backup(
    path, level: str = "quick", database: str = DEFAULT_DB_ALIAS, *, force: bool = False
) -> VerificationResult:
    """``backup --check``: check_backup, its verdict kept in the operations journal (a
    check only reads: the live database is not written to)."""
    with journal_operation("verify", database=database) as record:
        record.file = str(path)
        check_level(level)
        if not Path(path).exists() and not manifest_path(path).exists():
            # Nothing to check, as restore says of a missing file: could not run (exit 2).
            raise CouldNotRun(f"no such backup: {path} (no such file)")
        engine = get_engine(database)
        result = check_backup(engine, Path(path), level, force=force)
        record.outcome = "success" if result.ok else "failure"
        record.message = f"verified ({result.level})" if result.ok else result.reason
        record.details = {"level": result.level, "failed": [c.name for c in result.checks if not c.ok]}
    return result


def check_backup(engine: Engine, path: Path, level: str, *, force: bool = False) -> VerificationResult:
    """Check a backup file against its manifest: signature, checksum and structure; ``full`` also loads it.

    A manifest not signed by this installation's key fails at once, before a byte of the
    file is read, unless ``force``. The file is read once: hashed as it is decompressed
    into the engine's checks. The result of a signed backup is written into its manifest's
    ``verification`` (and signed), so --list and retention see it; an unsigned one's
    manifest is left as it is: checking a file never makes it ours.
    """
    engine.check_live_database()  # unreachable is exit 2, not a bad file
    drop_scratch_leftovers(engine)
    checks: list[Check] = []
    if path.exists() and not path.is_file():  # a FIFO, a device, a directory: said before anything else
        problem = str(NotRegularFile(path, path.stat().st_mode))
        return VerificationResult(
            ok=False, level=level, checks=[Check("file", False, problem)], reason=f"file: {problem}", path=str(path)
        )
    try:
        manifest = read_manifest(path)
    except VerificationFailed as exc:
        return VerificationResult(
            ok=False, level=level, checks=[Check("manifest", False, str(exc))], reason=str(exc), path=str(path)
        )
    if not manifest.signed:
        message = refusal(path.name, manifest.authenticity, "check")
        if not force:
            return VerificationResult(
                ok=False, level=level, checks=[Check("signature", False, message)], reason=message, path=str(path)
            )
        checks.append(Check("signature", True, f"{manifest.authenticity.detail}; going on because of --force"))
    else:
        checks.append(Check("signature", True, manifest.authenticity.detail))
    if manifest.engine != engine.vendor:
        checks.append(
            Check("engine", False, f"a {manifest.engine} backup; database '{engine.alias}' is {engine.vendor}")
        )
    elif not path.exists():
        checks.append(Check("file", False, f"{path} does not exist"))
    else:
        checks += _file_checks(path, manifest, engine, level)
    result = VerificationResult.of(checks, level, str(path))
    if manifest.signed and manifest.engine == engine.vendor and path.is_file():
        manifest.verification = {
            "level": level,
            "ok": result.ok,
            "at": result.at,
            "checks": [c.as_dict() for c in checks],
        }
        try:
            write_manifest(path, manifest)
        except (OSError, CouldNotRun):
            pass  # a read-only backup directory, a key that cannot sign: the verdict is still returned
    return result


def _file_checks(path: Path, manifest: BackupManifest, engine: Engine, level: str) -> list[Check]:
    """The file's first bytes against the manifest (encryption, compression), then the deep checks."""
    try:
        with open_regular(path) as f:
            head = f.read(len(AGE_MAGIC))
    except OSError as exc:  # a FIFO, a device, a directory: refused before it is read
        return [Check("file", False, str(exc))]
    if bool(manifest.encryption) != is_encrypted(head):
        said = "encrypted" if manifest.encryption else "not encrypted"
        return [Check("encryption", False, f"the manifest says {said}, the file is not")]
    if (
        not manifest.encryption
        and detect_compression(head[:4]) != manifest.compression
        and manifest.compression != "none"
    ):
        return [Check("compression", False, f"the manifest says {manifest.compression}, the file is not")]
    return deep_checks_with_hash(path, manifest, engine, level)


def deep_checks_with_hash(path: Path, manifest: BackupManifest, engine: Engine, level: str) -> list[Check]:
    """The checksum and the engine's checks of the dump (at ``level``), the file read once."""
    with open_regular(path) as f:
        reader = HashingReader(f)
        counts = None
        found: list[Check] = []
        stream = None
        try:
            stream = plaintext_reader(reader, manifest.compression, manifest.encryption)
            found, counts = engine.check_dump(stream, level=level, manifest=manifest, workdir=path.parent)
        except (zstandard.ZstdError, OSError, EOFError) as exc:
            found = [Check("decompress", False, f"the file does not decompress: {exc}")]
        except ForeignContent as exc:
            found = [Check("content", False, str(exc))]
        except VerificationFailed as exc:  # a wrong or missing decryption key too
            found = [Check("restore", False, str(exc))]
        finally:
            if stream is not None:
                stream.close()
        try:
            reader.drain()  # the hash covers the whole file, trailing bytes included
        except OSError:
            pass
    digest = reader.sha256.hexdigest()
    checks = [
        Check(
            "checksum",
            digest == manifest.sha256 and reader.size == manifest.size,
            f"sha256 {digest[:16]}..., {reader.size} bytes"
            + ("" if digest == manifest.sha256 else f" (manifest: {manifest.sha256[:16]}..., {manifest.size} bytes)"),
        )
    ]
    checks += found
    if counts is not None and all(c.ok for c in found):
        checks.append(compare_row_counts(manifest.row_counts, counts))
    return checks
