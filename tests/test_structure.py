"""The package's structure as docs/architecture.md states it: no import circle, no upward import between the
layers, no file over 600 lines and no function over 80 lines in ``procto/``.

Imports are read from the source (module level and inside functions alike), so an import that only runs inside a
function counts as much as one at the top of a file.  Import statements are what is checked: modules loaded by name
at run time (the registry's ``importlib.import_module`` of architecture files, nnU-Net's trainer lookup) are not seen
here — ``tests/train/test_nnunet_multichannel.py`` checks in a fresh process that nnU-Net inference loads no
``procto.train`` module.  A submodule's implicit import of its parent package's ``__init__`` is not an edge.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "procto"
ARCHITECTURE = ROOT / "docs" / "architecture.md"
MAX_FILE_LINES = 600
MAX_FUNCTION_LINES = 80


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """procto modules that ``name`` imports anywhere in its source: ``import a.b``, ``from a.b import c`` (``a.b.c``
    when that is a module), relative imports resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:  # "procto.io.image.read_image" -> "procto.io.image"
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    known = set(mods)
    return {name: _imports(name, path, known) for name, path in mods.items()}


def _layers() -> dict[str, int]:
    """``{module prefix: layer}`` from the layer table of docs/architecture.md (rows ``| N | `procto.x`, … | …``)."""
    layers: dict[str, int] = {}
    for line in ARCHITECTURE.read_text().splitlines():
        m = re.match(r"^\|\s*(\d+)\s*\|([^|]*)\|", line)
        if m:
            for prefix in re.findall(r"`(procto[\w.]*)`", m.group(2)):
                layers[prefix] = int(m.group(1))
    return layers


def _layer_of(module: str, layers: dict[str, int]) -> int | None:
    best = None
    for prefix, layer in layers.items():
        # the root ``procto`` names the package's own __init__ only; every subpackage needs its own row
        if module == prefix or (prefix != "procto" and module.startswith(prefix + ".")):
            if best is None or len(prefix) > len(best[0]):
                best = (prefix, layer)
    return None if best is None else best[1]


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_import_walker_sees_function_level_and_relative_imports(tmp_path: Path) -> None:
    src = tmp_path / "m.py"
    src.write_text("import procto.io\n\ndef f():\n    from procto.nets import create_model\n    from . import errors\n")
    known = {"procto", "procto.io", "procto.nets", "procto.errors", "procto.x"}
    assert _imports("procto.x", src, known) == {"procto.io", "procto.nets", "procto.errors"}


def test_cycle_finder_finds_a_circle() -> None:
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_circle() -> None:
    cycle = _find_cycle(_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_every_module_has_a_documented_layer() -> None:
    layers = _layers()
    assert _layer_of("procto.newpackage.x", layers) is None  # the root row does not cover undocumented packages
    assert len(set(layers.values())) >= 8, "docs/architecture.md lost its layer table"
    missing = [m for m in _modules() if _layer_of(m, layers) is None]
    assert not missing, f"modules in no layer of docs/architecture.md: {missing}"


def test_no_upward_import_between_layers() -> None:
    layers = _layers()
    upward = []
    for module, targets in _graph().items():
        mine = _layer_of(module, layers)
        for t in targets:
            theirs = _layer_of(t, layers)
            if mine is not None and theirs is not None and theirs > mine:
                upward.append(f"{module} (layer {mine}) imports {t} (layer {theirs})")
    assert not upward, "\n".join(upward)


def test_inference_never_imports_training() -> None:
    graph = _graph()
    bad = [f"{m} -> {t}" for m, ts in graph.items() if m.startswith("procto.infer") for t in ts
           if t.startswith("procto.train")]
    assert not bad, bad


def _function_lines(node: ast.AST) -> int:
    """Lines of a function from ``def`` to its last line, without its docstring."""
    lines = node.end_lineno - node.lineno + 1
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
            and isinstance(body[0].value.value, str):
        lines -= body[0].end_lineno - body[0].lineno + 1
    return lines


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_file_and_function_sizes(path: Path) -> None:
    text = path.read_text()
    n_lines = len(text.splitlines())
    assert n_lines <= MAX_FILE_LINES, f"{path.name}: {n_lines} lines (split it; limit {MAX_FILE_LINES})"
    long = [f"{node.name} ({_function_lines(node)} lines)" for node in ast.walk(ast.parse(text))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _function_lines(node) > MAX_FUNCTION_LINES]
    assert not long, f"{path.name}: functions over {MAX_FUNCTION_LINES} lines: {long}"
