"""The shape of the package (docs/architecture.md): no import cycles, a small root,
the rooms depending on each other in one direction only, napari's internals touched in
one module.

The import graph is read from the source with ``ast``: every ``import`` and
``from ... import`` of a napari_medseg module, at module level or inside a function
(a lazy import is still a dependency); imports under ``if TYPE_CHECKING:`` run never
and are left out.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "napari_medseg"
NAME = "napari_medseg"
#: Most modules the package root may hold (``__init__`` included).
ROOT_MODULE_LIMIT = 8


def module_names() -> dict[str, Path]:
    """Dotted name -> file of every module of the package."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join([NAME, *parts])] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST):
    """Import nodes of a tree, not descending into ``if TYPE_CHECKING:`` blocks."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports (each edge to the module named)."""
    modules = module_names()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in _imports(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:  # relative: resolve against this module's package
                    anchor = name.split(".") if is_package else name.split(".")[:-1]
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                for alias in node.names:
                    child = f"{base}.{alias.name}"
                    targets.append(child if child in modules else base)
            for target in targets:
                if target in modules and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph.get(node, ())):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def room_of(module: str) -> str:
    """The folder a module lives in (``core`` for the package root)."""
    parts = module.split(".")
    if len(parts) == 1 or (len(parts) == 2 and (PACKAGE / f"{parts[1]}.py").exists()):
        return "core"
    return parts[1]


def room_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    rooms: dict[str, set[str]] = defaultdict(set)
    for module, targets in graph.items():
        for target in targets:
            if room_of(target) != room_of(module):
                rooms[room_of(module)].add(room_of(target))
    return rooms


def test_the_import_graph_is_read_correctly():
    graph = import_graph()
    # a module-level, a function-level and a package import the checks rely on
    assert "napari_medseg.errors" in graph["napari_medseg.progress"]
    assert "napari_medseg.inference.sliding_window" in graph["napari_medseg.inference.segmenter"]
    assert "napari_medseg.cli.entry" in graph["napari_medseg.cli"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles_between_modules():
    assert cycles(import_graph()) == []


def test_no_import_cycles_between_folders():
    rooms = room_graph(import_graph())
    assert cycles(rooms) == [], dict(rooms)


def test_the_core_depends_on_no_folder():
    # the root holds what every room uses: it imports none of them
    assert room_graph(import_graph()).get("core", set()) == set()


#: The folders in layers, top first (docs/architecture.md): a folder imports only from
#: folders in lower layers.
LAYERS = (
    ("cli",),
    ("_napari",),
    ("cohort", "training"),
    ("interactive",),
    ("inference", "synthetic"),
    ("models", "measure"),
    ("io",),
    ("labels",),
    ("core",),
)


def test_folders_import_only_from_lower_layers():
    level = {room: depth for depth, rooms in enumerate(LAYERS) for room in rooms}
    rooms = room_graph(import_graph())
    assert set(rooms) | {r for targets in rooms.values() for r in targets} <= set(level)
    upward = sorted(
        f"{room} -> {target}"
        for room, targets in rooms.items()
        for target in targets
        if level[target] <= level[room]
    )
    assert upward == []


def test_the_package_root_stays_small():
    root = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(root) <= ROOT_MODULE_LIMIT, root


#: napari's private API: attributes of its objects whose names start with "_".
PRIVATE_NAPARI = re.compile(
    r"\._(undo_history|redo_history|save_history|apply_mask_to_data|type_string|instances"
    r"|qt_viewer|qt_window|slice_input|block_saving|scene_canvas|append_to_undo_history)\b|\"_(apply_mask_to_data|instances"
    r"|undo_history|redo_history|save_history)\""
)


def test_napari_internals_are_touched_in_one_module():
    napari_dir = PACKAGE / "_napari"
    users = sorted(
        str(path.relative_to(PACKAGE))
        for path in napari_dir.rglob("*.py")
        if PRIVATE_NAPARI.search(path.read_text())
    )
    assert users == ["_napari/history.py"]


def test_test_modules_have_unique_names():
    # the tests run in pytest's default import mode: two test files of one name in
    # different folders stop the whole run at collection
    tests = Path(__file__).resolve().parent
    names = [path.name for path in tests.rglob("test_*.py")]
    assert sorted({n for n in names if names.count(n) > 1}) == []
