"""The last 30 days of backups as small server-rendered SVG charts for the dashboard.

From the manifests (size, duration, row counts of each backup) and the operations log
(backups that failed, which left no file): one mark per backup, failures marked in red,
and the row counts of users, servers and configuration entries over time. Plain SVG in
the page, no JavaScript: the dashboard stays one request.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils.html import format_html
from django.utils.safestring import mark_safe

from .formatting import format_bytes, format_duration

DAYS = 30
WIDTH, HEIGHT, PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 720, 150, 70, 12, 12, 22
ROWS_HEIGHT = 46
ROW_SERIES = (
    ("users", "accounts_user", "#1565c0"),
    ("servers", "servers_server", "#2e7d32"),
    ("configuration entries", "servers_configuration", "#6a1b9a"),
)


@dataclass
class TrendPoint:
    """One backup, or one failed attempt (``ok`` False, nothing on disk)."""

    when: datetime
    name: str
    ok: bool
    size: int = 0
    duration_ms: int = 0
    rows: dict | None = None
    message: str = ""


def collect(backups, failures, now: datetime, days: int = DAYS) -> list[TrendPoint]:
    """The points of the last ``days`` days, oldest first.

    ``backups``: BackupInfo objects (dbtools.backup.list_backups); ``failures``: operations
    log rows of failed backups (``started_at``, ``message``, ``file``).
    """
    since = now - timedelta(days=days)
    points = []
    for info in backups:
        manifest = info.manifest
        if info.created_at < since or info.problem or manifest is None:
            continue
        points.append(
            TrendPoint(
                when=info.created_at,
                name=info.name,
                ok=bool(info.verified),
                size=info.size,
                duration_ms=int(manifest.duration_ms or 0),
                rows=dict(manifest.row_counts or {}),
            )
        )
    for row in failures:
        if row.started_at >= since:
            points.append(TrendPoint(when=row.started_at, name=row.file or "", ok=False, message=row.message))
    points.sort(key=lambda p: p.when)
    return points


def _x(when: datetime, now: datetime, days: int) -> float:
    span = days * 86400
    age = (now - when).total_seconds()
    return PAD_LEFT + (WIDTH - PAD_LEFT - PAD_RIGHT) * max(0.0, min(1.0, 1 - age / span))


def backups_svg(points: list[TrendPoint], now: datetime, days: int = DAYS) -> str:
    """Size (bars) and duration (dots) of each backup; a failed one is a red mark at the base."""
    plot_h = HEIGHT - PAD_TOP - PAD_BOTTOM
    base = PAD_TOP + plot_h
    good = [p for p in points if p.ok]
    max_size = max((p.size for p in good), default=0) or 1
    max_ms = max((p.duration_ms for p in good), default=0) or 1
    parts = [
        format_html(
            '<svg class="dbh-chart" id="backup-chart" viewBox="0 0 {} {}" width="100%" role="img" '
            'aria-label="Backups of the last {} days: size and duration">',
            WIDTH,
            HEIGHT,
            days,
        ),
        format_html('<line x1="{}" y1="{}" x2="{}" y2="{}" class="axis"/>', PAD_LEFT, base, WIDTH - PAD_RIGHT, base),
        format_html(
            '<text x="{}" y="{}" class="label" text-anchor="end">{}</text>',
            PAD_LEFT - 6,
            PAD_TOP + 8,
            format_bytes(max_size),
        ),
        format_html('<text x="{}" y="{}" class="label" text-anchor="end">0</text>', PAD_LEFT - 6, base),
        format_html('<text x="{}" y="{}" class="label">{} days ago</text>', PAD_LEFT, HEIGHT - 6, days),
        format_html('<text x="{}" y="{}" class="label" text-anchor="end">now</text>', WIDTH - PAD_RIGHT, HEIGHT - 6),
    ]
    for p in points:
        x = _x(p.when, now, days)
        stamp = p.when.strftime("%Y-%m-%d %H:%M")
        if not p.ok:
            title = f"{stamp} backup failed" + (f": {p.message}" if p.message else "")
            parts.append(
                format_html(
                    '<path class="backup-mark backup-failed" d="M{} {} l6 -10 l6 10 z"><title>{}</title></path>',
                    round(x - 6, 1),
                    base,
                    title,
                )
            )
            continue
        h = max(2.0, plot_h * p.size / max_size)
        title = f"{stamp} {p.name}: {format_bytes(p.size)}, {format_duration(p.duration_ms)}"
        parts.append(
            format_html(
                '<rect class="backup-mark backup-ok" x="{}" y="{}" width="4" height="{}"><title>{}</title></rect>',
                round(x - 2, 1),
                round(base - h, 1),
                round(h, 1),
                title,
            )
        )
        dy = base - plot_h * p.duration_ms / max_ms
        parts.append(
            format_html(
                '<circle class="duration" cx="{}" cy="{}" r="2.5"><title>{}</title></circle>',
                round(x, 1),
                round(dy, 1),
                title,
            )
        )
    parts.append(mark_safe("</svg>"))
    return mark_safe("".join(parts))


def rows_svg(points: list[TrendPoint], now: datetime, days: int = DAYS) -> str:
    """One line per table (users, servers, configuration entries), each on its own scale."""
    good = [p for p in points if p.ok and p.rows]
    height = ROWS_HEIGHT * len(ROW_SERIES) + 8
    parts = [
        format_html(
            '<svg class="dbh-chart" id="rows-chart" viewBox="0 0 {} {}" width="100%" role="img" '
            'aria-label="Row counts in the backups of the last {} days">',
            WIDTH,
            height,
            days,
        )
    ]
    for i, (label, table, colour) in enumerate(ROW_SERIES):
        top = 4 + i * ROWS_HEIGHT
        values = [(p, int(p.rows.get(table, 0))) for p in good if table in p.rows]
        latest = values[-1][1] if values else None
        parts.append(
            format_html(
                '<text x="{}" y="{}" class="label" text-anchor="end">{}</text>'
                '<text x="{}" y="{}" class="label quiet" text-anchor="end">{}</text>',
                PAD_LEFT - 6,
                top + 16,
                label,
                PAD_LEFT - 6,
                top + 30,
                "–" if latest is None else f"{latest:,}",
            )
        )
        if not values:
            continue
        low = min(v for _, v in values)
        high = max(v for _, v in values)
        span = (high - low) or 1
        coords = " ".join(
            f"{_x(p.when, now, days):.1f},{top + ROWS_HEIGHT - 8 - (ROWS_HEIGHT - 16) * (v - low) / span:.1f}"
            for p, v in values
        )
        parts.append(
            format_html(
                '<polyline class="rows-line" data-table="{}" points="{}" fill="none" stroke="{}" stroke-width="1.5"/>',
                table,
                coords,
                colour,
            )
        )
    parts.append(mark_safe("</svg>"))
    return mark_safe("".join(parts))


def summary(points: list[TrendPoint]) -> dict:
    """Counts of backups and failures, the largest size (bytes) and the slowest duration (ms)."""
    good = [p for p in points if p.ok]
    return {
        "backups": len(good),
        "failures": len(points) - len(good),
        "largest_bytes": max((p.size for p in good), default=0),
        "slowest_ms": max((p.duration_ms for p in good), default=0),
    }
