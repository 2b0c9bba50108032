"""The package layout (issue 13): no import cycles inside the project, the library stays free of
the CLI's libraries, and cli/ command modules do not import each other.

An AST scan, so nothing is imported: every `import` and `from ... import` in a module counts,
at module level or inside a function (a lazy import still ties the two modules together).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("pipelines", "cli")
# cli modules every command may use; the rest are commands, which must not import each other
CLI_SHARED = {"cli", "cli.__main__", "cli.app", "cli.console", "cli.views", "cli.help_format"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _imported_names(name: str, path: Path) -> list[str]:
    """Every absolute module name `path` imports (relative imports resolved), with the names a
    `from X import a, b` brings in as candidates `X.a`, `X.b` (they may be submodules)."""
    is_package = path.name == "__init__.py"
    out: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            out.append(base)
            out.extend(f"{base}.{alias.name}" for alias in node.names)
    return out


def _import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = set()
        for target in _imported_names(name, path):
            # `from pipelines.data import cv` imports the submodule pipelines.data.cv
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                edges.add(target)
        graph[name] = edges
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_scan_sees_the_project():
    graph = _import_graph()
    # the scan resolves both top-level and function-level imports to project modules
    assert "pipelines.train.train" in graph and "pipelines.data.cv" in graph["pipelines.train.train"]
    assert "pipelines.train.rundir" in graph["pipelines.train.report"]


def test_cycle_detection_finds_a_planted_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles():
    cycles = _cycles(_import_graph())
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


# The stages of pipelines/, lowest first: a folder imports only folders before it (and itself).
STAGES = (
    "core", "data", "backbones", "extract", "heads", "train", "finetune", "ensemble", "predict", "select",
    "chain", "devtools",
)


def _folder(module: str) -> str | None:
    """The stage folder of a module under pipelines/ (None for pipelines/__init__ itself)."""
    parts = module.split(".")
    return parts[1] if parts[0] == "pipelines" and len(parts) > 2 else None


def _folder_edges(graph: dict[str, set[str]]) -> dict[tuple[str, str], list[str]]:
    edges: dict[tuple[str, str], list[str]] = {}
    for name, targets in graph.items():
        for target in targets:
            a, b = _folder(name), _folder(target)
            if a and b and a != b:
                edges.setdefault((a, b), []).append(f"{name} -> {target}")
    return edges


def test_folder_arrows_run_one_way():
    """No two stage folders import each other (a lazy import counts too)."""
    edges = _folder_edges(_import_graph())
    two_way = [f"{a} <-> {b}: {edges[a, b] + edges[b, a]}" for a, b in sorted(edges) if a < b and (b, a) in edges]
    assert not two_way, two_way


def test_folder_arrows_follow_the_stage_order():
    """Every folder arrow points to an earlier stage (README Layout gives the order)."""
    edges = _folder_edges(_import_graph())
    folders = {_folder(name) for name in _import_graph()} - {None}
    assert folders <= set(STAGES), sorted(folders - set(STAGES))
    backwards = [f"{a} -> {b}: {v}" for (a, b), v in sorted(edges.items()) if STAGES.index(b) > STAGES.index(a)]
    assert not backwards, backwards


def test_folder_scan_finds_a_planted_two_way_arrow():
    graph = {"pipelines.train.report": {"pipelines.ensemble.blenddir"}, "pipelines.ensemble.blenddir": {"pipelines.train.rundir"},
             "pipelines.train.rundir": set()}
    edges = _folder_edges(graph)
    assert ("train", "ensemble") in edges and ("ensemble", "train") in edges


def test_library_never_imports_typer_or_rich():
    bad = [
        f"{name} imports {target}"
        for name, path in _modules().items()
        if name.startswith("pipelines")
        for target in _imported_names(name, path)
        if target.split(".")[0] in {"typer", "rich", "cli"}
    ]
    assert not bad, bad


def test_cli_commands_do_not_import_each_other():
    graph = _import_graph()
    commands = {name for name in graph if name.startswith("cli.") and name not in CLI_SHARED}
    assert commands, "no cli command modules found"
    bad = [f"{name} imports {target}" for name in commands for target in graph[name] if target in commands]
    assert not bad, bad


def test_only_devtools_print():
    """The stages report through callbacks; only the dev tools (demo, bench) print."""
    bad = []
    for name, path in _modules().items():
        if not name.startswith("pipelines") or name.startswith("pipelines.devtools"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                bad.append(f"{name}:{node.lineno}")
    assert not bad, bad


def test_pyproject_lists_every_package():
    """`pip install .` installs only the packages pyproject.toml names: each folder with an
    __init__.py under pipelines/ and cli/ must be listed."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {_module_name(p) for pkg in PACKAGES for p in (ROOT / pkg).rglob("__init__.py")}
    assert on_disk <= listed, sorted(on_disk - listed)
