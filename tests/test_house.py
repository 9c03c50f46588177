"""The house rules of the code, checked: no import circle (imports inside functions count), the GUI
never imports a CLI module, no module over 450 lines, every package says what it is, and
docs/ARCHITECTURE.md describes every package and module there is (and no module that is not)."""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("echoquality_core", "echoquality_gui")
MAX_LINES = 450


def _modules() -> dict[str, Path]:
    """Every module of both packages by dotted name (a package by its ``__init__.py``)."""
    found = {}
    for top in PACKAGES:
        for path in sorted((ROOT / top).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of ours it imports anywhere in its text (top level or in functions)."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    kept = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(kept + ([base] if base else []))
                targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                # a package's own modules importing it (its __init__) is no circle
                if target and target != name and not name.startswith(target + "."):
                    graph[name].add(target)
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    circles, state = [], {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                circles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return circles


def test_no_import_circle_even_through_imports_inside_functions():
    circles = _circles(import_graph())
    assert circles == [], "\n".join(" -> ".join(c) for c in circles)


def test_the_circle_finder_sees_a_circle_through_a_function_level_import():
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert _circles({"a": {"b"}, "b": set()}) == []


def test_the_gui_never_imports_a_cli_module():
    graph = import_graph()
    reaching = {m: sorted(t for t in targets if t.startswith("echoquality_core.cli"))
                for m, targets in graph.items() if m.startswith("echoquality_gui")}
    assert {m: t for m, t in reaching.items() if t} == {}


def test_no_module_over_450_lines():
    sizes = {name: len(path.read_text(encoding="utf-8").splitlines())
             for name, path in _modules().items()}
    assert {n: s for n, s in sizes.items() if s > MAX_LINES} == {}


def test_every_package_says_what_it_is_in_one_line():
    missing = []
    for name, path in _modules().items():
        if path.name == "__init__.py":
            doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
            if not doc or not doc.strip():
                missing.append(name)
    assert missing == []


def test_architecture_names_every_module_and_only_modules_that_exist():
    """docs/ARCHITECTURE.md names each module as a path (``echoquality_core/labels/store.py``) or,
    inside its package's section, by its file name; a path it names must exist."""
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    named_paths = set(re.findall(r"\b(echoquality_(?:core|gui)/[\w/]+\.py)\b", text))
    missing_files = sorted(p for p in named_paths if not (ROOT / p).is_file())
    assert missing_files == [], f"ARCHITECTURE names modules that do not exist: {missing_files}"
    # each package's section: a heading naming the package folder, then its modules by file name
    sections = re.split(r"^#+ ", text, flags=re.M)
    undocumented = []
    for name, path in _modules().items():
        rel = path.relative_to(ROOT).as_posix()
        if path.name == "__init__.py":
            folder = rel.rpartition("/")[0] + "/"
            if f"`{folder}`" not in text:
                undocumented.append(folder)
            continue
        folder, _, file = rel.rpartition("/")
        in_section = any(s.splitlines()[0].count(f"`{folder}/`") and f"`{file}`" in s
                         for s in sections if s.strip())
        if rel not in named_paths and not in_section:
            undocumented.append(rel)
    assert undocumented == [], f"ARCHITECTURE does not describe: {undocumented}"
