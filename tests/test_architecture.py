"""The package's shape, checked: layers point one way, no import cycles, no private names across modules,
long modules say why, and ``import augledger`` stays light."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "augledger"

#: Lowest first. A module may import modules of its own layer or below, never above.
LAYERS: list[tuple[str, ...]] = [
    ("augledger._version", "augledger.errors", "augledger._canonical"),
    ("augledger.seeding", "augledger.documents", "augledger.spec", "augledger.policy", "augledger.io"),
    ("augledger.ops",),
    ("augledger.env",),
    ("augledger.record", "augledger.pipeline"),
    ("augledger.variants",),
    ("augledger.ledger", "augledger.registry"),
    ("augledger.observe",),
    ("augledger.run",),
    ("augledger.report", "augledger.torch", "augledger.track", "augledger.mlflow", "augledger.guard"),
    ("augledger.cli",),
    ("augledger.__main__",),
]
MAX_LINES = 400
LONG_REASON = "This module is long because"


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def layer_of(module: str) -> int:
    if module == "augledger":
        return len(LAYERS)  # the public facade sits on top of everything
    for rank, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return rank
    raise AssertionError(f"{module} belongs to no layer; add it to LAYERS in {__file__}")


def _type_checking_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports_of(module: str) -> Iterator[tuple[str, list[str], int]]:
    """``(imported augledger module, names taken from it, line)`` for every import, lazy ones included."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _type_checking_lines(tree)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if getattr(node, "lineno", 0) in skip:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("augledger"):
                    yield alias.name, [], node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            if not base.startswith("augledger"):
                continue
            names = [a.name for a in node.names]
            submodules = [f"{base}.{n}" for n in names if f"{base}.{n}" in MODULES]
            for sub in submodules:
                yield sub, [], node.lineno
            rest = [n for n in names if f"{base}.{n}" not in MODULES]
            if rest:
                yield base, rest, node.lineno


GRAPH = {m: sorted({target for target, _, _ in imports_of(m) if target != m}) for m in MODULES}


def test_every_module_is_in_a_layer() -> None:
    for module in MODULES:
        layer_of(module)


def test_imports_point_down_the_layers() -> None:
    upward = [
        f"{m} (layer {layer_of(m)}) imports {t} (layer {layer_of(t)})"
        for m, targets in GRAPH.items()
        for t in targets
        if layer_of(t) > layer_of(m)
    ]
    assert not upward, "\n".join(upward)


def test_spec_imports_no_backend() -> None:
    assert not [t for t in GRAPH["augledger.spec"] if t.startswith("augledger.ops")]
    assert not [t for t in GRAPH["augledger.pipeline"] if t.startswith("augledger.ops.image")]
    assert not [t for t in GRAPH["augledger.env"] if t.startswith("augledger.ops.image")]


def find_cycle(graph: dict[str, list[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in graph.get(node, []):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in graph:
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_cycles() -> None:
    cycle = find_cycle(GRAPH)
    assert cycle is None, " -> ".join(cycle or [])


def test_the_cycle_finder_finds_cycles() -> None:
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["a"]}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": ["b"], "b": [], "c": ["a"]}) is None


def test_no_private_name_is_imported_across_modules() -> None:
    private = [
        f"{m}:{line} takes {', '.join(n for n in names if n.startswith('_'))} from {t}"
        for m in MODULES
        for t, names, line in imports_of(m)
        if t != m and any(n.startswith("_") and not n.startswith("__") for n in names)
    ]
    assert not private, "\n".join(private)


def test_long_modules_say_why() -> None:
    long = []
    for module, path in MODULES.items():
        text = path.read_text(encoding="utf-8")
        lines = text.count("\n")
        if lines > MAX_LINES and LONG_REASON not in text[:3000]:
            long.append(f"{module}: {lines} lines")
    assert not long, f"modules over {MAX_LINES} lines without '{LONG_REASON} ...' at the top:\n" + "\n".join(long)


def test_import_augledger_is_light() -> None:
    code = (
        "import json, sys, augledger\n"
        "heavy = ['albumentations', 'cv2', 'torch', 'pyarrow', 'PIL', 'typer', 'rich', 'pandas', 'simplejpeg']\n"
        "print(json.dumps([m for m in heavy if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_star_import_does_not_shadow_builtins() -> None:
    import builtins

    import augledger

    assert not set(augledger.__all__) & set(dir(builtins))
    for name in augledger.__all__:
        assert hasattr(augledger, name), name


@pytest.mark.parametrize("package", ["augledger.errors", "augledger.ledger", "augledger.io.store", "augledger.run.engines"])
def test_all_lists_what_the_module_defines(package: str) -> None:
    import importlib

    module = importlib.import_module(package)
    for name in module.__all__:
        assert hasattr(module, name), f"{package}.__all__ names {name}, which it does not define"


def test_the_command_line_needs_only_core_dependencies() -> None:
    """``pip install 'augledger[image]'`` must give a working ``augledger`` command."""
    import tomllib

    project = tomllib.loads((SRC.parents[1] / "pyproject.toml").read_text())["project"]
    core = {d.split(">")[0].split("=")[0].split("<")[0].strip().lower() for d in project["dependencies"]}
    assert {"typer", "rich"} <= core
    assert project["scripts"]["augledger"] == "augledger.cli:main"
    cli_imports = {t.split(".")[0] for m in MODULES if m.startswith("augledger.cli") for t in _third_party(m)}
    assert cli_imports <= core | {"augledger"}, cli_imports - core


def _third_party(module: str) -> set[str]:
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:  # module-level imports: what loading the command imports
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return {n for n in names if n.split(".")[0] not in sys.stdlib_module_names and n != "__future__"}
