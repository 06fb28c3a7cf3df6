"""The targets of issue 8, met or missed, and the report ``make bench`` prints and writes to BENCHMARKS.md."""

import contextlib
import os
import platform
import re
import shlex
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import django
from django.db import DEFAULT_DB_ALIAS

from dbtools.engines import engine_class

from .databases import BenchDatabase
from .harness import ROOT, Results, quiet
from .suite import BASE_CONFIGS, BASE_SERVERS, BASE_USERS
from .tools import TOOLS, GenerateRate, Ratio, Seconds

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
RSS_LIMIT_MB = 150
# "Not growing": the larger database may cost this much more (allocator and import noise).
RSS_GROWTH_FACTOR, RSS_GROWTH_SLACK_MB = 1.15, 5
RESTORE_NOTE = "Restore is measured by bench/restore.py (`make bench` runs it after this)."


@dataclass
class Target:
    engine: str
    label: str
    value: float | None
    limit: str
    met: bool | None
    detail: str = ""
    unit: str = "x"


def ratio_of(results: Results, engine: str, ours: str, theirs: str) -> float | None:
    values = results.ratios.get((engine, ours, theirs))
    return statistics.median(values) if values else None


def targets(results: Results, engines: list[str]) -> list[Target]:
    """Every engine's targets of its tools table, then the ones every engine has (dbstats, health page, memory)."""
    out: list[Target] = []

    def ratio_target(engine: str, t: Ratio) -> None:
        ours, theirs, limit = t.ours, t.theirs, t.limit
        value = ratio_of(results, engine, ours, theirs)
        missing = [i for i in (ours, theirs) if (engine, i) in results.failures]
        if value is None:
            why = "; ".join(f"{i}: {results.failures[(engine, i)]}" for i in missing) or "not measured"
            out.append(Target(engine, t.label, None, f"<= {limit}", None, "not available (" + why + ")"))
            return
        met = value < limit if t.strict_below else value <= limit
        ours_s, theirs_s = results.median(engine, ours), results.median(engine, theirs)
        detail = f"{ours_s:.2f} s vs {theirs_s:.2f} s"
        if results.startup and ours_s > results.startup:
            detail += f"; {(ours_s - results.startup) / theirs_s:.2f}x without Python start-up"
        if t.aim is not None:
            detail += f"; aim {t.aim}: {'reached' if value <= t.aim else 'not reached'}"
        out.append(Target(engine, t.label, value, ("< " if t.strict_below else "<= ") + f"{limit}x", met, detail))

    def seconds_target(engine: str, t: Seconds) -> None:
        value = results.median(engine, t.item)
        if value is None:
            why = results.failures.get((engine, t.item), "not measured")
            out.append(Target(engine, t.label, None, f"< {t.limit} s", None, f"not available ({why})", unit="s"))
            return
        detail = f"median of {len(results.samples[(engine, t.item)])}"
        out.append(Target(engine, t.label, value, f"< {t.limit} s", value < t.limit, detail, unit="s"))

    def rate_target(engine: str, t: GenerateRate) -> None:
        item = "generate_demo_data (rows/s)"
        rate = results.median(engine, item)
        why = results.failures.get((engine, item), "not measured")
        detail = (
            f"{BASE_USERS // 10 + BASE_SERVERS // 10 + BASE_CONFIGS // 10:,} rows into a fresh file, "
            "as the command reports it (no start-up)"
        )
        out.append(
            Target(
                engine,
                t.label,
                rate,
                f">= {t.limit} rows/s",
                None if rate is None else rate >= t.limit,
                detail if rate is not None else f"not available ({why})",
                unit="rows/s",
            )
        )

    kinds = {Ratio: ratio_target, Seconds: seconds_target, GenerateRate: rate_target}
    for engine in engines:
        for t in TOOLS[engine].targets:
            kinds[type(t)](engine, t)
        seconds_target(engine, Seconds("dbstats (in-process)", "dbstats (in-process)", 0.5))
        seconds_target(engine, Seconds("health page server time", "admin health page (server time)", 0.3))
        for command in ("backup", "restore", "validate"):
            keys = sorted(k for k in results.rss if k[0] == engine and k[1] == command)
            if not keys:
                out.append(
                    Target(
                        engine, f"peak RSS {command}", None, f"< {RSS_LIMIT_MB} MB", None, "not available", unit="MB"
                    )
                )
                continue
            peak = max(max(results.rss[k]) for k in keys)
            by_size = {k[2]: max(results.rss[k]) for k in keys}
            detail = ", ".join(f"{size:,} servers: {mb:.0f} MB" for size, mb in sorted(by_size.items()))
            out.append(
                Target(
                    engine, f"peak RSS {command}", peak, f"< {RSS_LIMIT_MB} MB", peak < RSS_LIMIT_MB, detail, unit="MB"
                )
            )
            if len(by_size) >= 2:
                sizes = sorted(by_size)
                small, big = by_size[sizes[0]], by_size[sizes[-1]]
                grows = big > small * RSS_GROWTH_FACTOR + RSS_GROWTH_SLACK_MB
                out.append(
                    Target(
                        engine,
                        f"peak RSS {command} flat with {sizes[-1] // sizes[0]}x the data",
                        big / small if small else None,
                        f"<= {RSS_GROWTH_FACTOR}x + {RSS_GROWTH_SLACK_MB} MB",
                        not grows,
                        f"{small:.0f} MB -> {big:.0f} MB",
                    )
                )
    return out


def cell(text: str) -> str:
    """Text for a Markdown table cell (shell pipes would end the cell)."""
    return str(text).replace("|", "\\|")


def fmt(value: float | None, unit: str = "s") -> str:
    if value is None:
        return "n/a"
    if unit == "s":
        return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "rows/s":
        return f"{value:,.0f} rows/s"
    return f"{value:.0f} MB"


def machine(dbs: list[BenchDatabase]) -> list[str]:
    lines = []
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "unknown"
    with contextlib.suppress(OSError):
        kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
        mem = f"{kb / 1024 / 1024:.1f} GiB"
    # The SQLite library Python (and so Django) uses; the engine reads it without connecting.
    python_sqlite = engine_class("sqlite")(DEFAULT_DB_ALIAS).server_version()
    lines.append(f"- CPU: {os.cpu_count()} cores ({cpu}); memory {mem}; {platform.platform()}")
    lines.append(
        f"- Python {platform.python_version()}, Django {django.get_version()}, Python's SQLite {python_sqlite}"
    )
    versions = [db.version() for db in dbs]
    for tool in [*(t.tool_version for t in TOOLS.values() if t.tool_version), "zstd --version"]:
        with contextlib.suppress(Exception):
            versions.append(quiet(tool).strip().splitlines()[0])
    lines.append("- " + "; ".join(versions))
    with contextlib.suppress(Exception):
        lines.append("- code: commit " + quiet(f"git -C {shlex.quote(str(ROOT))} rev-parse --short HEAD").strip())
    with contextlib.suppress(OSError):
        lines.append(f"- load average at the end: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    return lines


def report(args, engines: list[BenchDatabase], results: Results, tgs: list[Target], started: float) -> str:
    out = []
    out.append(
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {args.runs} runs each, medians; "
        f"{int(BASE_SERVERS * args.scale):,} servers, {int(BASE_USERS * args.scale):,} users, "
        f"{int(BASE_CONFIGS * args.scale):,} configuration entries; total bench time "
        f"{(time.perf_counter() - started) / 60:.0f} min."
    )
    out.append("")
    out.append("Reproduce: `" + args.reproduce + "`")
    out.append("")
    out += machine(engines)
    out.append("")
    out.append("### Targets")
    out.append("")
    out.append("| engine | target | measured | limit | result | detail |")
    out.append("|---|---|---|---|---|---|")
    for t in tgs:
        unit = t.unit
        result = "not available" if t.met is None else ("met" if t.met else "**missed**")
        display = next(e.display for e in engines if e.name == t.engine)
        out.append(f"| {display} | {cell(t.label)} | {fmt(t.value, unit)} | {t.limit} | {result} | {cell(t.detail)} |")
    out.append("")
    out.append(RESTORE_NOTE)
    for engine in engines:
        out.append("")
        out.append(f"### {engine.display}: all timings")
        out.append("")
        out.append("| what | median | min | max | runs |")
        out.append("|---|---|---|---|---|")
        items = [k[1] for k in results.samples if k[0] == engine.name]
        for item in items:
            values = results.samples[(engine.name, item)]
            unit = "rows/s" if item.endswith("(rows/s)") else "s"
            out.append(
                f"| {cell(item)} | {fmt(statistics.median(values), unit)} | {fmt(min(values), unit)} "
                f"| {fmt(max(values), unit)} | {len(values)} |"
            )
        for (name, item), why in results.failures.items():
            if name == engine.name:
                out.append(f"| {cell(item)} | not available: {cell(why)} | | | |")
        ratio_rows = [(k, v) for k, v in results.ratios.items() if k[0] == engine.name]
        if ratio_rows:
            out.append("")
            out.append("| ratio (same round) | median | per round |")
            out.append("|---|---|---|")
            for (_, ours, theirs), values in ratio_rows:
                per_round = ", ".join(f"{v:.2f}" for v in values)
                out.append(f"| {cell(ours)} / {cell(theirs)} | {statistics.median(values):.2f} | {per_round} |")
        rss_rows = sorted((k, v) for k, v in results.rss.items() if k[0] == engine.name)
        if rss_rows:
            out.append("")
            out.append("| peak RSS | servers | MB (max of runs) |")
            out.append("|---|---|---|")
            for (_, command, size), values in rss_rows:
                out.append(f"| {cell(command)} | {size:,} | {max(values):.0f} |")
    if results.notes:
        out.append("")
        out.append("Notes from this run:")
        out.append("")
        out += [f"- {n}" for n in results.notes]
    return "\n".join(out) + "\n"


def write_benchmarks(path: Path, body: str) -> None:
    block = f"{BEGIN}\n{body}{END}"
    if path.exists():
        text = path.read_text()
        if BEGIN in text and END in text:
            text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END) :]
        else:
            text = text.rstrip() + "\n\n" + block + "\n"
    else:
        text = "# Benchmarks\n\n" + block + "\n"
    path.write_text(text)
