"""age encryption of backups, as they are written and as they are read: no plaintext on disk.

age (https://age-encryption.org) because it streams (64 KiB chunks, each authenticated),
has no keyring and its keys are one line: ``age1...`` recipients in the settings, an
``AGE-SECRET-KEY-1...`` identity in a file that never lives beside the backups. pyrage
(the Rust implementation's Python binding, binary wheels) does the work; files it writes
are read by the ``age`` command line tool and the other way round.

``EncryptingWriter`` is a writable stream (the compressor writes into it, it writes the
ciphertext into the hashing sink); ``decrypting_reader`` a readable one (the decompressor
reads from it). Each runs pyrage on a thread of its own over a bounded queue, so memory
stays flat whatever the size of the backup.
"""

from __future__ import annotations

import io
import os
import queue
import threading
from pathlib import Path

from .errors import CouldNotRun, VerificationFailed
from .formatting import first_line

AGE_MAGIC = b"age-encryption.org/v1\n"
SCHEME = "age"
_END = object()


def _pyrage():
    try:
        import pyrage
    except ImportError:  # pragma: no cover - pyrage is in requirements.txt
        raise CouldNotRun("encryption needs the pyrage package (pip install -r requirements.txt)") from None
    return pyrage


def parse_recipients(value: str) -> list[str]:
    """``age1...`` keys from a setting: the keys themselves (comma or space separated) or a
    file of them (one a line, ``#`` comments). Raises ValueError naming what is wrong."""
    value = (value or "").strip()
    if not value:
        return []
    if not value.startswith("age1") and (Path(value).expanduser().is_file() or "/" in value):
        path = Path(value).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"cannot read the recipients file {path}: {exc.strerror or exc}") from None
        words = [w for line in text.splitlines() if not line.lstrip().startswith("#") for w in line.split()]
    else:
        words = value.replace(",", " ").split()
    recipients = []
    x25519 = _pyrage().x25519
    for word in words:
        try:
            x25519.Recipient.from_str(word)
        except Exception:
            shown = word if word.startswith("age1") else word[:8] + "..."
            raise ValueError(f"{shown} is not an age public key (age1...)") from None
        recipients.append(word)
    if not recipients:
        raise ValueError("no age public key found")
    return recipients


def load_identities(path) -> list:
    """The identities (``AGE-SECRET-KEY-1...`` lines) of a key file, as age-keygen writes it."""
    x25519 = _pyrage().x25519
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise VerificationFailed(f"cannot read the decryption key file {path}: {exc.strerror or exc}") from None
    identities = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("AGE-SECRET-KEY-"):
            try:
                identities.append(x25519.Identity.from_str(line))
            except Exception:
                raise VerificationFailed(f"{path} holds a malformed age secret key") from None
    if not identities:
        raise VerificationFailed(f"{path} holds no age secret key (AGE-SECRET-KEY-1...)")
    return identities


def is_encrypted(head: bytes) -> bool:
    return head.startswith(AGE_MAGIC)


class _QueueReader(io.RawIOBase):
    """The reading end of a bounded queue of byte chunks, for pyrage to pull from."""

    def __init__(self, chunks: queue.Queue) -> None:
        self._chunks = chunks
        self._buffer = b""
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, target) -> int:
        while not self._buffer and not self._done:
            chunk = self._chunks.get()
            if chunk is _END:
                self._done = True
                self._ended()
            else:
                self._buffer = bytes(chunk)
        n = min(len(target), len(self._buffer))
        target[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n

    def _ended(self) -> None:
        """Called once, at the end of the queue: a subclass raises what its producer raised."""


class EncryptingWriter:
    """A writable stream: what is written comes out age-encrypted in ``sink``.

    ``close()`` waits for the last chunk and raises what encrypting or writing raised;
    ``write()`` raises it as soon as it is known.
    """

    def __init__(self, sink, recipients: list[str], depth: int = 8) -> None:
        pyrage = _pyrage()
        self._recipients = [pyrage.x25519.Recipient.from_str(r) for r in recipients]
        self._sink = sink
        self._chunks: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="backup-encrypt", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        source = _QueueReader(self._chunks)
        try:
            _pyrage().encrypt_io(io.BufferedReader(source, 1 << 20), _SinkWriter(self._sink), self._recipients)
        except BaseException as exc:
            self._error = exc
            while self._chunks.get() is not _END:  # keep draining so the producer never blocks
                pass

    def write(self, data) -> int:
        if self._error is not None:
            raise self._error
        self._chunks.put(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def writable(self) -> bool:
        return True

    def abandon(self) -> None:
        if not self._closed:
            self._closed = True
            self._chunks.put(_END)
            self._thread.join()

    def close(self) -> None:
        self.abandon()
        if self._error is not None:
            raise self._error


class _SinkWriter(io.RawIOBase):
    def __init__(self, sink) -> None:
        self._sink = sink

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self._sink.write(bytes(data))
        return len(data)


class _QueueWriter(io.RawIOBase):
    """Where pyrage writes the plaintext; the consumer reads it from the queue."""

    def __init__(self, chunks: queue.Queue, stop: threading.Event) -> None:
        self._chunks = chunks
        self._stop = stop

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        if self._stop.is_set():
            raise BrokenPipeError("the reader stopped")
        self._chunks.put(bytes(data))
        return len(data)


class DecryptingReader(_QueueReader):
    """A readable stream of the plaintext of the age file read from ``raw``.

    A wrong key, a damaged or truncated file is a VerificationFailed at the read that
    meets it (age authenticates every chunk and the end of the file), never plaintext
    that was not written by the recipient's sender.
    """

    def __init__(self, raw, identities: list, depth: int = 8) -> None:
        super().__init__(queue.Queue(maxsize=depth))
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(raw, identities), name="backup-decrypt", daemon=True)
        self._thread.start()

    def _run(self, raw, identities) -> None:
        try:
            _pyrage().decrypt_io(_RawReader(raw), _QueueWriter(self._chunks, self._stop), identities)
        except BaseException as exc:
            self._error = exc
        finally:
            self._chunks.put(_END)

    def _ended(self) -> None:
        self._thread.join()
        if self._error is not None and not self._stop.is_set():
            raise VerificationFailed(f"the backup does not decrypt: {_reason(self._error)}")

    def close(self) -> None:
        if not self._done:
            self._stop.set()
            while self._chunks.get() is not _END:
                pass
            self._done = True
            self._thread.join()
        super().close()


class _RawReader(io.RawIOBase):
    def __init__(self, raw) -> None:
        self._raw = raw

    def readable(self) -> bool:
        return True

    def readinto(self, target) -> int:
        data = self._raw.read(len(target))
        n = len(data)
        target[:n] = data
        return n


def _reason(exc: BaseException) -> str:
    text = first_line(exc)
    if "No matching keys" in text or "no identity matched" in text.lower():
        return "the decryption key is not one of the backup's recipients"
    return text


def decrypting_reader(raw, key_file) -> io.BufferedReader:
    """A buffered plaintext stream over the age file ``raw``, with the identities of ``key_file``."""
    if not key_file:
        raise VerificationFailed(
            "the backup is encrypted and no decryption key is set (MCMANAGER_BACKUP_DECRYPT_KEY_FILE)"
        )
    return io.BufferedReader(DecryptingReader(raw, load_identities(key_file)), 1 << 20)


def key_file_permissions_ok(path) -> bool:
    """Whether a key file is readable by its owner only (no group or other bits)."""
    try:
        return os.stat(path).st_mode & 0o077 == 0
    except OSError:
        return False
