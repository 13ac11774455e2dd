"""Imports run one way: cli → train / eval / bench → models / data → runtime / ops → errors; no part
below cli reads the package facade (`metaslot/__init__.py`), which re-exports from the layers.

Reads every module of the package with `ast` (no import), lists the edges between its parts and fails
on an edge that points sideways or upwards, e.g. train ↔ eval, bench → cli, models → train,
ops → models. Imports inside functions count, and so do the module names a package's lazy
``_LAZY = {name: "metaslot...."}`` table resolves on first use. ``docs/architecture.md`` draws the layers.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "metaslot"

# Higher imports lower, never the other way; parts on one level do not import each other.
LEVEL = {
    "cli": 6,
    "pretrained": 5,
    "train": 4,
    "eval": 4,
    "bench": 4,
    "models": 3,
    "data": 3,
    "runtime": 2,
    "ops": 2,
    "eval_settings": 2,
    "protocols": 1.5,  # its settings are attrs specs checked by the shared validators
    "validators": 1,
    "errors": 0,
    "_lazy": 0,
    "typechecking": 0,
}
FACADE = "__init__"  # metaslot/__init__.py re-exports public names from the layers below
FACADE_LEVEL = 5.5  # above pretrained (whose names it re-exports), below cli (which may use them)


def part_of(module: str) -> str:
    """``metaslot.train.loop`` → ``train``; ``metaslot`` → the facade."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else FACADE


def module_name(path: Path, package: Path = PACKAGE) -> str:
    relative = path.relative_to(package.parent).with_suffix("")
    parts = list(relative.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str, root: Path = PACKAGE) -> bool:
    """Whether ``name`` is a module or package of the tree (not a name defined inside one)."""
    path = root.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imported_modules(path: Path, root: Path = PACKAGE) -> set[str]:
    """Every ``metaslot...`` module ``path`` imports (relative imports resolved), lazily or not."""
    tree = ast.parse(path.read_text())
    own = module_name(path, root)
    package = own if path.name == "__init__.py" else own.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                found.add(".".join([*base, node.module] if node.module else base))
            else:
                # `from metaslot.x import y` imports module metaslot.x.y where y is a module, and reads
                # metaslot.x itself only for the other names (`from metaslot import validators` does not
                # read the facade; `from metaslot import __version__` does).
                modules = {
                    f"{node.module}.{alias.name}"
                    for alias in node.names
                    if is_module(f"{node.module}.{alias.name}", root)
                }
                found.update(modules)
                if len(modules) < len(node.names):
                    found.add(node.module or "")
        elif isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "_LAZY" for target in node.targets
        ):
            if isinstance(node.value, ast.Dict):
                found.update(
                    value.value
                    for value in node.value.values
                    if isinstance(value, ast.Constant) and isinstance(value.value, str)
                )
    return {name for name in found if name == "metaslot" or name.startswith("metaslot.")}


def import_edges() -> dict[tuple[str, str], list[str]]:
    """(importing part, imported part) → the files with such an import."""
    edges: dict[tuple[str, str], list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        source = part_of(module_name(path))
        for target in {part_of(name) for name in imported_modules(path)} - {source}:
            edges.setdefault((source, target), []).append(str(path.relative_to(PACKAGE.parent)))
    return edges


def test_every_part_of_the_package_has_a_level() -> None:
    parts = {part_of(module_name(path)) for path in PACKAGE.rglob("*.py")} - {FACADE}
    assert parts == set(LEVEL), "give the new part a level here and a place in docs/architecture.md"


def test_imports_only_point_downwards() -> None:
    wrong = {
        f"{source} → {target}": files
        for (source, target), files in import_edges().items()
        if source != FACADE and LEVEL[source] <= (FACADE_LEVEL if target == FACADE else LEVEL[target])
    }
    assert not wrong, f"upward or sideways imports: {wrong}"


def test_the_edge_finder_sees_every_kind_of_import(tmp_path: Path) -> None:
    """Plain, from-, relative, function-local and lazy-table imports are all found."""
    root = tmp_path / "metaslot"
    (root / "bench").mkdir(parents=True)
    probe = root / "bench" / "probe.py"
    probe.write_text(
        "import metaslot.ops\n"
        "from metaslot.models import records\n"
        "from ..cli import bench\n"
        "def later():\n"
        "    from metaslot.train.loop import train\n"
        '_LAZY = {"evaluate": "metaslot.eval.evaluate"}\n'
    )
    assert {part_of(name) for name in imported_modules(probe, root)} == {
        "ops",
        "models",
        "cli",
        "train",
        "eval",
    }


def test_reading_the_package_facade_counts_as_an_import_of_it(tmp_path: Path) -> None:
    """``import metaslot`` or a name defined in ``metaslot/__init__.py`` is an edge to the facade, which
    sits above every part; importing a submodule through ``from metaslot import x`` is not."""
    root = tmp_path / "metaslot"
    (root / "ops").mkdir(parents=True)
    (root / "validators.py").write_text("")
    reads_flag, submodule = root / "ops" / "reads_flag.py", root / "ops" / "submodule.py"
    reads_flag.write_text("import metaslot\nflag = metaslot.typechecking_enabled()\n")
    submodule.write_text("from metaslot import validators\n")
    assert {part_of(name) for name in imported_modules(reads_flag, root)} == {FACADE}
    assert {part_of(name) for name in imported_modules(submodule, root)} == {"validators"}
