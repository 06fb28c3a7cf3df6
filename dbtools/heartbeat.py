"""Heartbeats for cron jobs: ``MCMANAGER_BACKUP_PING_URL`` is told when a job starts, succeeds or fails.

In the style of the monitoring services for cron jobs (Healthchecks.io, Cronitor, Uptime
Kuma push monitors): ``URL/start`` when the job begins, ``URL`` on success, ``URL/fail``
on failure with the one-line reason as the body. A service that hears nothing within its
grace time alerts: that catches the job that never ran, which no exit code can.

A ping never fails the job: it has a short timeout and one retry, and a ping that does not
get through is logged (logger ``dbtools.heartbeat``) and forgotten.
"""

import logging
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings

from .formatting import first_line

logger = logging.getLogger("dbtools.heartbeat")

TIMEOUT_SECONDS = 5
RETRY_PAUSE_SECONDS = 1.0
SCHEMES = ("http://", "https://")


def ping_url() -> str:
    """The configured ping URL without a trailing slash, or "" when heartbeats are off."""
    return (getattr(settings, "MCMANAGER_BACKUP_PING_URL", "") or "").strip().rstrip("/")


def ping(url: str, body: str = "") -> bool:
    """POST ``body`` to ``url``: True when it got through (after one retry at most), never raises."""
    data = body.encode("utf-8", "replace")[:10_000]
    for attempt in (1, 2):
        request = urllib.request.Request(
            url, data=data, method="POST", headers={"User-Agent": "mcmanager-heartbeat", "Content-Type": "text/plain"}
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310 (http(s) only: checks.py)
                response.read(1024)
            return True
        except (OSError, ValueError, urllib.error.URLError) as exc:
            if attempt == 2:
                logger.warning("heartbeat %s not delivered: %s", _without_secret(url), first_line(exc))
                return False
            time.sleep(RETRY_PAUSE_SECONDS)
    return False


def _without_secret(url: str) -> str:
    """The URL as it may be logged: a ping URL's path is its secret, so only scheme and host."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}/..."


@contextmanager
def heartbeat(job: str | None) -> Iterator[None]:
    """Ping ``/start`` before the block, the URL after it, ``/fail`` (with the reason) if it raises.

    ``job`` names the run in the bodies ("backup", "backup --prune", "restore --check");
    None for a run that sends no heartbeat (``backup --list``). The exception, whatever
    it is, goes on up: the heartbeat only reports it.
    """
    url = ping_url()
    if not url or job is None:
        yield
        return
    ping(f"{url}/start", job)
    try:
        yield
    except BaseException as exc:
        reason = first_line(exc) or exc.__class__.__name__
        ping(f"{url}/fail", f"{job}: {reason}")
        raise
    ping(url, f"{job}: ok")
