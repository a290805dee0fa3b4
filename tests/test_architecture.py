"""The shape of the house: imports go one way, the entry point stands on top, commands are a table."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("model", "repl", "corpora")


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def project_imports() -> dict[str, set[str]]:
    """module -> the project modules it imports (anywhere in the file, function bodies included)."""
    modules = {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: from .x import y inside a package
                    base = name.rsplit(".", node.level)[0] if "." in name else name
                    mod = f"{base}.{node.module}" if node.module else base
                else:
                    mod = node.module or ""
                targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
            for t in targets:
                if t in modules and t != name:
                    deps.add(t)
        graph[name] = deps
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for d in sorted(graph.get(n, ())):
            if state.get(d) == 1:
                return stack[stack.index(d) :] + [d]
            if d not in state:
                found = visit(d)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None


def test_no_import_cycle_among_project_modules():
    graph = project_imports()
    assert len(graph) > 20  # the walk really saw the packages
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle or [])


def test_cycle_finder_sees_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_model_never_imports_repl_and_nothing_imports_the_cli():
    graph = project_imports()
    for mod, deps in graph.items():
        if mod.startswith("model"):
            assert not {d for d in deps if d.startswith("repl")}, f"{mod} imports {deps}"
        assert "repl.cli" not in deps, f"{mod} imports the entry point repl.cli"


def test_every_command_has_one_method():
    from repl.commands import COMMANDS
    from repl.session import Session

    missing = [name for name in COMMANDS if not callable(getattr(Session, f"do_{name}", None))]
    assert not missing, f"commands without a do_ method: {missing}"
    extra = [n[3:] for n in dir(Session) if n.startswith("do_") and n[3:] not in COMMANDS]
    assert not extra, f"do_ methods without a command row: {extra}"


# Functions that stay longer than the limit, with the reason.
LONG_FUNCTIONS = {
    # Regenerates the Unicode tables from unicodedata: one linear script, run by hand.
    ("model/text/_unicode_tables.py", "_generate"),
}
MAX_LINES = 80


def test_no_function_in_model_or_repl_is_longer_than_the_limit():
    too_long = []
    for pkg in ("model", "repl"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = str(path.relative_to(ROOT))
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    length = node.end_lineno - node.lineno + 1
                    if length > MAX_LINES and (rel, node.name) not in LONG_FUNCTIONS:
                        too_long.append(f"{rel}:{node.lineno} {node.name} ({length} lines)")
    assert not too_long, too_long
