"""The shape of the code: dependencies point one way, no import cycles, one audited path."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "faceledger"
LOWER = (
    "ledger",
    "store",
    "index",
    "models",
    "imaging",
    "search",
    "video",
    "speech",
    "eval",
    "batch",
)
FRONTS = ("service", "api", "cli")


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every faceledger module a file imports, anywhere in it (functions included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    this = module_name(path)
    package = this if path.name == "__init__.py" else this.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("faceledger"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            if not base.startswith("faceledger"):
                continue
            for alias in node.names:  # `from pkg import module` names a module
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in MODULES else base)
    return {m for m in found if m in MODULES and m != this}


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}
GRAPH = {name: imports_of(path) for name, path in MODULES.items()}


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_lower_layers_never_import_the_service_or_a_front() -> None:
    upward = sorted(
        (m, target)
        for m, targets in GRAPH.items()
        if layer(m) in LOWER
        for target in targets
        if layer(target) in FRONTS
    )
    assert upward == []


def test_pipelines_and_evaluation_never_import_each_other_upward() -> None:
    """video, speech and eval receive what they need; the store and index know no ledger."""
    rules = {
        "video": {"eval", "ledger"},
        "speech": {"eval", "ledger", "video", "store", "index", "search"},
        "store": {"ledger", "search", "video", "eval", "models"},
        "index": {"store", "ledger", "search", "video", "eval", "models"},
        "imaging": {"models", "store", "index", "search", "ledger", "video", "eval"},
        "batch": {"store", "ledger", "eval"},  # workers embed; the driver's service stores
    }
    bad = sorted(
        (m, t)
        for m, targets in GRAPH.items()
        for t in targets
        if layer(t) in rules.get(layer(m), set())
    )
    assert bad == []


def test_no_import_cycles() -> None:
    """Tarjan's strongly connected components over the module graph: all of size one."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(GRAPH[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    assert cycles == []


def test_importing_video_loads_neither_the_service_nor_the_api() -> None:
    code = (
        "import sys, faceledger.video, faceledger.store, faceledger.eval;"
        "print(sorted(m for m in sys.modules if m.startswith(('faceledger.service',"
        " 'faceledger.api', 'faceledger.cli'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_ledger_entries_are_built_only_by_the_unit_of_work() -> None:
    """No ``Entry(`` outside service/work.py (and its definition): every record is audited."""
    allowed = {PACKAGE / "service" / "work.py", PACKAGE / "ledger" / "audit.py"}
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                fn = node.func
                name = fn.id if isinstance(fn, ast.Name) else getattr(fn, "attr", None)
                if name == "Entry":
                    offenders.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert offenders == []


@pytest.mark.parametrize("module", ["faceledger.store.repository", "faceledger.store.vectors"])
def test_no_store_method_takes_a_record_callback(module: str) -> None:
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    params = [
        f"{node.name}({a.arg})"
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef)
        for a in [*node.args.args, *node.args.kwonlyargs]
        if a.arg in ("record", "hook", "on_commit")
    ]
    assert params == []


FRONT_TYPE_IMPORTS = {
    "faceledger.store.mediatypes": "file name limits of a video job",
    "faceledger.store.review": "review statuses and settings",
    "faceledger.search.operations": "the SimilarMode literal",
}


def test_fronts_reach_store_index_and_search_only_through_the_service() -> None:
    """The HTTP API, the CLI and the client open no store machinery themselves (rate
    limits, change listeners, repositories): the service builds it; they may name a few
    types and limits (``FRONT_TYPE_IMPORTS``)."""
    reached = sorted(
        (m, target)
        for m, targets in GRAPH.items()
        if layer(m) in ("api", "cli") or m == "faceledger.client"
        for target in targets
        if layer(target) in ("store", "index", "search") and target not in FRONT_TYPE_IMPORTS
    )
    assert reached == []
