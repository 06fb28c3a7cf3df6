"""Timing processes and keeping the samples: what every suite of ``bench/run.py`` measures with."""

import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


@dataclass
class Outcome:
    """One timed subprocess."""

    seconds: float
    rss_mb: float
    returncode: int
    stdout: str = ""
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def first_error(self) -> str:
        text = (self.stderr.strip() or self.stdout.strip() or f"exit {self.returncode}").splitlines()
        return text[-1][:160] if text else f"exit {self.returncode}"


def run_timed(argv: list[str] | str, env: dict | None = None, *, shell: bool = False, cwd=ROOT) -> Outcome:
    """Run a process to completion; wall time and its peak RSS (with its waited-for children)."""
    if shell:
        argv = ["bash", "-o", "pipefail", "-c", argv]
    started = time.perf_counter()
    proc = subprocess.Popen(
        argv,
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # communicate() would reap the child itself; read the pipes in threads, reap with wait4.
    chunks: dict[str, str] = {}

    def drain(name, stream):
        chunks[name] = stream.read()

    readers = [
        threading.Thread(target=drain, args=("out", proc.stdout)),
        threading.Thread(target=drain, args=("err", proc.stderr)),
    ]
    for t in readers:
        t.start()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    for t in readers:
        t.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Outcome(seconds, usage.ru_maxrss / 1024, proc.returncode, chunks.get("out", ""), chunks.get("err", ""))


def quiet(cmd: str, env: dict | None = None) -> str:
    """A helper command that must succeed (setup and cleanup); returns its stdout."""
    done = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{cmd!r} failed: {(done.stderr or done.stdout).strip()[-300:]}")
    return done.stdout


def sh_action(cmd: str, env: dict) -> Callable[[], Outcome]:
    return lambda: run_timed(cmd, env, shell=True)


def newest(directory: Path, pattern: str = "db_backup_*") -> Path | None:
    files = [p for p in directory.glob(pattern) if not p.name.endswith(".json") and not p.name.startswith(".")]
    return max(files, key=lambda p: p.stat().st_mtime) if files else None


def clear(directory: Path, keep: Path | None = None) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for p in directory.iterdir():
        if keep is not None and (p == keep or p.name.startswith(keep.name)):
            continue
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


@dataclass
class Results:
    """Samples per (engine, item), per-round ratios, peak RSS per command, notes."""

    samples: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    failures: dict[tuple[str, str], str] = field(default_factory=dict)
    ratios: dict[tuple[str, str, str], list[float]] = field(default_factory=dict)
    rss: dict[tuple[str, str, int], list[float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    info: dict[str, str] = field(default_factory=dict)
    startup: float = 0.0

    def add(self, engine: str, item: str, seconds: float) -> None:
        self.samples.setdefault((engine, item), []).append(seconds)

    def median(self, engine: str, item: str) -> float | None:
        values = self.samples.get((engine, item))
        return statistics.median(values) if values else None


class Bench:
    """Measures items of one database (a ``bench.databases.BenchDatabase``) into ``results``."""

    def __init__(self, args, results: Results, log):
        self.args = args
        self.results = results
        self.log = log

    # one item ------------------------------------------------------------------
    def measure(self, db, item: str, action: Callable[[], Outcome | float]) -> float | None:
        key = (db.name, item)
        if key in self.results.failures:
            return None
        try:
            outcome = action()
        except Exception as exc:  # noqa: BLE001 (a failing tool is a result, not a crash)
            self.results.failures[key] = str(exc).splitlines()[-1][:200] if str(exc) else type(exc).__name__
            self.log(f"  {db.display} {item}: FAILED {self.results.failures[key]}")
            return None
        if isinstance(outcome, Outcome):
            if not outcome.ok:
                self.results.failures[key] = outcome.first_error()
                self.log(f"  {db.display} {item}: FAILED {outcome.first_error()}")
                return None
            seconds = outcome.seconds
        else:
            seconds = outcome
        self.results.add(db.name, item, seconds)
        self.log(f"  {db.display} {item}: {seconds:,.2f}{'' if item.endswith('(rows/s)') else ' s'}")
        return seconds

    def pair(self, db, round_no: int, items: list[tuple[str, Callable]], ratios: list[tuple[str, str]]):
        """Run the members of one comparison back to back; order alternates between rounds."""
        order = items if round_no % 2 == 0 else list(reversed(items))
        got = {}
        for item, action in order:
            got[item] = self.measure(db, item, action)
        for ours, theirs in ratios:
            if got.get(ours) and got.get(theirs):
                self.results.ratios.setdefault((db.name, ours, theirs), []).append(got[ours] / got[theirs])

    def ours(self, db, item: str, *args: str, backup_dir: Path | None = None, rss_key: str | None = None):
        """An action running one of our commands, recording its peak RSS."""

        def action():
            outcome = db.manage(*args, backup_dir=backup_dir)
            if outcome.ok and rss_key:
                self.results.rss.setdefault((db.name, rss_key, self.args.current_servers), []).append(outcome.rss_mb)
            return outcome

        return action
