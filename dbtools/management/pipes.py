"""Command output that survives its reader going away (``backup --list | head -1``).

When the reader of a pipe exits early, the next write to it raises BrokenPipeError: a
traceback at the end of the listing, or, worse, a restore stopped between two steps
because a progress line could not be written. ``guard_standard_streams()`` (called by
manage.py before any command runs) wraps stdout and stderr so that a closed pipe drops
the output and never the work: the descriptor is pointed at /dev/null, as the Python
documentation recommends (signal module, "Note on SIGPIPE"), so nothing is retried or
printed at exit, and the command's exit status stays its outcome's.
"""

import os
import sys


class ClosedPipeSafeStream:
    """A text stream that swallows BrokenPipeError and sends later output to /dev/null."""

    def __init__(self, stream) -> None:
        self._stream = stream

    def __getattr__(self, name):
        return getattr(self._stream, name)

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._drop()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._drop()

    def _drop(self) -> None:
        """Point the descriptor at /dev/null: what is buffered and whatever comes next goes there."""
        try:
            fd = self._stream.fileno()
        except (AttributeError, OSError, ValueError):
            return
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, fd)
        finally:
            os.close(devnull)
        try:
            self._stream.flush()  # the buffer that failed, now to /dev/null
        except OSError:
            pass


def guard_standard_streams() -> None:
    """Wrap sys.stdout and sys.stderr (once) so that a closed pipe never ends a command."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, ClosedPipeSafeStream):
            setattr(sys, name, ClosedPipeSafeStream(stream))
