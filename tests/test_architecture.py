"""The direction of imports between the packages of daemon/scanstation (docs/architecture.md).

Every import counts: module level, inside functions (lazy), and under TYPE_CHECKING, because
each is a dependency a reader has to follow. A package may import only the packages its entry
in ALLOWED names (and itself); the graph of packages has no cycle, and neither has the graph
of modules.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "daemon" / "scanstation"

BASE = {"scanstation", "jsonlimits"}  # the root (__version__) and the limited JSON parser: for all
ALLOWED: dict[str, set[str]] = {
    # The domain and its small shared pieces.
    "model": set(),
    "payloads": {"model"},
    "bus": {"model", "payloads"},
    "health": {"payloads", "model"},
    "readstats": {"model"},
    "jsonlimits": set(),
    # Process policy the top applies once a station is ready (the cyclic collector).
    "heap": set(),
    # Pure code: no I/O, no configuration objects.
    "barcode": {"model"},
    # Configuration validates with the pure checks of barcode/.
    "config": {"barcode", "model"},
    # Adapters below the stages.
    "hw": {"config", "model"},
    "store": {"barcode", "model", "payloads"},
    "qr": {"barcode", "config", "model"},
    "vision": {"barcode", "config", "model"},
    # Operations and the capture state machine.
    "services": {"barcode", "bus", "config", "model", "payloads", "store"},
    "pipeline": {"barcode", "bus", "config", "model", "payloads", "qr", "services", "store"},
    # Inputs: devices to Scans.
    "sources": {"barcode", "config", "hw", "model"},
    # Where finished captures go, and who looks at them.
    "outputs": {"barcode", "config", "hw", "model", "payloads", "store"},
    # PLC links over the read statistics.
    "plc": {"config", "model", "readstats"},
    "publish": {
        *("config", "health", "model", "payloads", "pipeline", "services", "store"),
    },
    "web": {
        *("bus", "config", "health", "model", "payloads", "pipeline", "services"),
        *("readstats", "sources", "store", "vision"),
    },
    # The fleet collector: a process of its own beside the stations (nothing imports it).
    "collector": {"config", "model", "payloads", "publish", "services", "web"},
    # The top: wiring and the command line.
    "app": {
        *("bus", "config", "health", "hw", "model", "outputs", "pipeline", "publish"),
        *("heap", "services"),
        *("plc", "readstats", "sources", "store", "vision", "web"),
    },
    "commands": {"*"},
    "cli": {"*"},
    "__main__": {"cli"},
    "data": {"*"},  # data/samples/make_samples.py: a maintainer's script that renders samples
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def group(module: str) -> str:
    """The package (or top-level module) a module belongs to: scanstation.store.rows -> store."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "scanstation"


def type_checking_nodes(tree: ast.AST) -> set[int]:
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            inside.update(id(child) for child in ast.walk(node))
    return inside


def imports(path: Path, *, runtime_module_level: bool = False) -> Iterator[str]:
    """The scanstation modules one file imports (only the eager ones when asked)."""
    tree = ast.parse(path.read_text("utf-8"))
    typing_only = type_checking_nodes(tree)
    module = module_name(path)
    nodes = tree.body if runtime_module_level else list(ast.walk(tree))
    for node in nodes:
        if runtime_module_level and id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.startswith("scanstation"):
                yield node.module
                for alias in node.names:  # `from scanstation.store import review`
                    candidate = f"{node.module}.{alias.name}"
                    if (PACKAGE.parent / candidate.replace(".", "/")).with_suffix(".py").exists():
                        yield candidate
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{module}: relative import; the project imports absolutely")
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("scanstation"))


def files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_package_has_a_rule() -> None:
    groups = {group(module_name(p)) for p in files()}
    assert groups - set(ALLOWED) - BASE == set(), "add the new package to ALLOWED and the docs"


def test_imports_follow_the_direction_of_the_layers() -> None:
    wrong = []
    for path in files():
        source = group(module_name(path))
        allowed = ALLOWED.get(source, set())
        for target in imports(path):
            into = group(target)
            if into in (source, *BASE) or "*" in allowed or into in allowed:
                continue
            wrong.append(f"{module_name(path)} imports {target} ({source} -> {into})")
    assert wrong == [], "\n".join(wrong)


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle in a directed graph, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_cycle_between_packages() -> None:
    graph: dict[str, set[str]] = {}
    for path in files():
        source = group(module_name(path))
        if "*" in ALLOWED.get(source, set()):
            continue  # the command line sits above everything and nothing imports it
        targets = {group(t) for t in imports(path)} - {source, *BASE}
        graph.setdefault(source, set()).update(targets)
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_no_cycle_between_modules_at_import_time() -> None:
    graph: dict[str, set[str]] = {}
    known = {module_name(p) for p in files()}
    for path in files():
        module = module_name(path)
        targets = {t for t in imports(path, runtime_module_level=True) if t in known}
        # Importing a submodule runs its package's __init__ first.
        graph[module] = targets - {module}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


@pytest.mark.parametrize("package", sorted({p.parent for p in PACKAGE.rglob("__init__.py")}))
def test_each_package_says_what_it_owns(package: Path) -> None:
    tree = ast.parse((package / "__init__.py").read_text("utf-8"))
    docstring = ast.get_docstring(tree) or ""
    assert len(docstring) > 80, f"{package.name}/__init__.py: say what it owns and may import"
