"""The bench's databases, reached through dbtools' engines.

The bench process sets Django up once (``setup_django``) and registers each database
it measures as a connection alias of its own (``engine_for_url``), so the vendor
knowledge (how the engine's tools reach the server, how a database is created or
dropped) is the engine's, as in the application. The bench never connects through
these aliases itself: our commands run as subprocesses, and a connection held open
here would change what they do (SQLite's bulk load leaves the WAL only when it has the
file to itself).
"""

import contextlib
import os
import secrets
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import django
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.utils import load_backend

from dbtools.engines import get_engine

from .harness import PYTHON, ROOT, Outcome, quiet, run_timed, sh_action
from .tools import TOOLS, Comparison, Tools


def setup_django(env: dict) -> None:
    """Django with mcmanager's settings in this process (only to read the engines' knowledge)."""
    os.environ.setdefault("DJANGO_SECRET_KEY", env.get("DJANGO_SECRET_KEY") or secrets.token_urlsafe(50))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mcmanager.settings")
    django.setup()


def engine_for_url(url: str):
    """The dbtools engine of the database at ``url``, under an alias of its own (the settings'
    options for that engine included, as DATABASE_URL would give them)."""
    # Inside: the settings module reads the environment when imported, so only after setup_django().
    from mcmanager.settings import database_from_url

    alias = f"bench_{secrets.token_hex(4)}"
    settings_dict = connections.configure_settings({DEFAULT_DB_ALIAS: database_from_url(url)})[DEFAULT_DB_ALIAS]
    connections[alias] = load_backend(settings_dict["ENGINE"]).DatabaseWrapper(settings_dict, alias)
    return get_engine(alias)


def bench_url(name: str, args, servers: int) -> str:
    """The URL of the bench database of engine ``name`` holding ``servers`` servers."""
    tag = f"{servers // 1000}k" if servers >= 1000 else str(servers)
    if name == "sqlite":
        return f"sqlite:///{Path(args.dir).resolve() / f'bench_{tag}.sqlite3'}"
    base = args.pg_url if name == "postgresql" else args.mariadb_url
    return urlparse(base)._replace(path=f"/{args.db_prefix}_{tag}").geturl()


@dataclass
class BenchDatabase:
    """One database under test: its engine (dbtools'), its tools table, where its files go."""

    name: str  # the --engines name: sqlite, postgresql, mariadb
    url: str
    workdir: Path
    env: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.engine = engine_for_url(self.url)
        self.tools: Tools = TOOLS[self.name]
        self.tool_env = dict(self.env)
        self.programs = {}
        for program in self.tools.programs:
            argv, env = self.engine.tool_command(program)
            self.tool_env.update(env)
            self.programs[program.replace("-", "_")] = " ".join(shlex.quote(a) for a in argv)
        self.scratch = f"{self.dbname}_scratch_{os.getpid()}"

    @property
    def display(self) -> str:
        return self.engine.display_name

    @property
    def dbname(self) -> str:
        """The database's name on its server; SQLite: the file's path."""
        return str(self.engine.settings_dict["NAME"])

    # our commands ----------------------------------------------------------------
    def manage_env(self, backup_dir: Path | None = None) -> dict:
        env = dict(self.env)
        env["DATABASE_URL"] = self.url
        env["MCMANAGER_BACKUP_DIR"] = str(backup_dir or self.workdir / "backups")
        return env

    def manage(self, *args: str, backup_dir: Path | None = None) -> Outcome:
        return run_timed([PYTHON, str(ROOT / "manage.py"), *args], self.manage_env(backup_dir))

    # the engine's tools ------------------------------------------------------------
    def command(self, template: str, **extra: str) -> str:
        """A command template of the tools table with every placeholder filled (see bench/tools.py)."""
        tools_dir = self.workdir / "tools"
        values = {
            "db": shlex.quote(self.dbname),
            "scratch": self.scratch,
            "dbb": shlex.quote(str(self.workdir / "dbbackup")),
            "python": shlex.quote(PYTHON),
            "validate_sql": shlex.quote(str(self.workdir / "validate.sql")),
            **{key: shlex.quote(str(tools_dir / file)) for key, file in self.tools.files.items()},
            **self.programs,
            **extra,
        }
        return template.format(**values)

    def action(self, comparison: Comparison) -> Callable[[], Outcome]:
        env = self.manage_env(self.workdir / "dbbackup") if comparison.env == "dbbackup" else self.tool_env
        return sh_action(self.command(comparison.command), env)

    def sql(self, statement: str) -> str:
        """Run one statement in the bench database with the engine's client; its output."""
        return quiet(self.command(self.tools.query, sql=shlex.quote(statement)), self.tool_env)

    def reachable(self) -> str | None:
        """None when the server answers (or there is none to ask); else why not, in a line."""
        if self.tools.server_query is None:
            return None
        try:
            quiet(self.command(self.tools.server_query, sql=shlex.quote("SELECT 1")), self.tool_env)
        except Exception as exc:  # noqa: BLE001 (any failure means "not reachable")
            return str(exc).splitlines()[-1][:200]
        return None

    def version(self) -> str:
        try:
            out = quiet(self.command(self.tools.version), self.tool_env).strip()
            return self.tools.version_format.format(line=out.splitlines()[0], words=out.split())
        except Exception:  # noqa: BLE001
            return "unknown"

    def recreate(self) -> None:
        """An empty database in place of the bench database (the engine drops and creates it)."""
        self.engine.drop_database()
        self.engine.create_database()

    def drop_scratch(self) -> None:
        """Drop this run's scratch database, when the tools' commands use one."""
        if "{scratch}" not in self.tools.full.command:
            return
        with contextlib.suppress(Exception):
            self.engine.drop_database(self.scratch)
