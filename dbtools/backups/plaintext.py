"""The plain dump inside a backup file: the age decryption and decompression layers undone.

Every reader of a backup goes through here: verification, restore, ``--verify full``.
Nothing is written; the layers stream, so a backup is read once and never unpacked to disk.
"""

from pathlib import Path

from django.conf import settings

from ..encryption import decrypting_reader, is_encrypted
from ..errors import VerificationFailed
from ..manifest import read_manifest
from ..streams import decompressing_reader, detect_compression, open_regular

ENCRYPTION_SCHEME = "age"
ENCRYPTED_SUFFIX = ".age"


def decryption_key_file() -> str:
    return (getattr(settings, "MCMANAGER_BACKUP_DECRYPT_KEY_FILE", "") or "").strip()


class PlaintextStream:
    """The plain dump over a backup's bytes: decrypted (age) and decompressed as the backup
    was written. ``close()`` closes every layer it added (not ``raw``)."""

    def __init__(self, raw, compression: str | None, encryption: str | None) -> None:
        self._layers = []
        source = raw
        if encryption:
            if encryption != ENCRYPTION_SCHEME:
                raise VerificationFailed(f"encrypted with {encryption!r}, which this version cannot read")
            source = decrypting_reader(raw, decryption_key_file())
            self._layers.append(source)
        if compression is None:  # no manifest: the magic bytes say
            compression = detect_compression(source.peek(4)[:4] if hasattr(source, "peek") else b"")
        self._stream = decompressing_reader(source, compression)
        if self._stream is not source:
            self._layers.insert(0, self._stream)

    def read(self, n: int = -1) -> bytes:
        return self._stream.read(n)

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        for layer in self._layers:
            layer.close()


def plaintext_reader(raw, compression: str | None, encryption: str | None) -> PlaintextStream:
    """``PlaintextStream(raw, ...)``: how every reader of a backup gets at its dump."""
    return PlaintextStream(raw, compression, encryption)


class DumpStream:
    """The plain dump of a backup file; closing it closes the file."""

    def __init__(self, path: Path, compression: str | None, encryption: str | None) -> None:
        self._file = open_regular(path)
        try:
            self._stream = plaintext_reader(self._file, compression, encryption)
        except BaseException:
            self._file.close()
            raise

    def read(self, n: int = -1) -> bytes:
        return self._stream.read(n)

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._stream.close()
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_dump(path) -> DumpStream:
    """A binary stream of the plain dump (decrypted, decompressed: by the manifest or the magic bytes)."""
    path = Path(path)
    try:
        manifest = read_manifest(path)
        compression, encryption = manifest.compression, manifest.encryption
    except VerificationFailed:
        with open_regular(path) as f:
            head = f.read(64)
        encryption = ENCRYPTION_SCHEME if is_encrypted(head) else None
        compression = None if encryption else detect_compression(head[:4])
    return DumpStream(path, compression, encryption)
