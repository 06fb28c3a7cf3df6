"""The import rules of the README's "Architecture" section, checked on the code itself.

- No import cycle among the project's modules, counting imports inside functions too.
- Nothing vendor-specific outside ``dbtools/engines/``: no ``vendor ==``/``!=``, no import of
  a database driver (sqlite3, psycopg, MySQLdb).
- No module of dbtools over about 400 lines without a reason at its top (a line of its
  docstring starting "Why this module is long:").
"""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("accounts", "servers", "mcmanager", "dbtools", "bench")
MAX_LINES = 420
DRIVERS = {"sqlite3", "psycopg", "psycopg2", "MySQLdb"}


def _modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _imported(module: str, path: Path, node, modules) -> list[str]:
    """The project modules one import statement reaches (the deepest existing prefix)."""
    if isinstance(node, ast.Import):
        targets = [alias.name for alias in node.names]
    else:
        if node.level:
            base = module.split(".")
            package = base if path.name == "__init__.py" else base[:-1]
            package = package[: len(package) - (node.level - 1)]
            prefix = ".".join(package + ([node.module] if node.module else []))
        else:
            prefix = node.module or ""
        targets = [f"{prefix}.{alias.name}" if f"{prefix}.{alias.name}" in modules else prefix for alias in node.names]
    found = []
    for target in targets:
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if target and target != module:
            found.append(target)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                graph[name].update(_imported(name, path, node, modules))
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    return groups


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_imports_inside_functions():
    graph = _graph()
    assert "dbtools.engines" in graph["dbtools.backups.writer"] or "dbtools.engines" in graph["dbtools.backups"]
    assert graph["dbtools.engines"] >= {"dbtools.engines.sqlite", "dbtools.engines.postgresql"}


def test_no_import_cycles():
    assert _cycles(_graph()) == []


def _outside_engines():
    for package in ("dbtools", "bench"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if "engines" not in path.relative_to(ROOT).parts:
                yield path


def test_nothing_vendor_specific_outside_the_engines():
    found = []
    for path in _outside_engines():
        text = path.read_text()
        for number, line in enumerate(text.splitlines(), 1):
            if re.search(r"vendor\s*[!=]=", line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
        for node in ast.walk(ast.parse(text)):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [(node.module or "").split(".")[0]]
            found += [f"{path.relative_to(ROOT)}:{node.lineno}: imports {n}" for n in names if n in DRIVERS]
    assert found == []


def test_long_modules_say_why():
    long_ones = []
    for path in sorted((ROOT / "dbtools").rglob("*.py")):
        if "migrations" in path.parts:
            continue
        text = path.read_text()
        if text.count("\n") > MAX_LINES and "Why this module is long:" not in (
            ast.get_docstring(ast.parse(text)) or ""
        ):
            long_ones.append(f"{path.relative_to(ROOT)} ({text.count(chr(10))} lines)")
    assert long_ones == []
