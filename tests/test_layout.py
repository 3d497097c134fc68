"""The package's imports flow one way, with no cycle, and every module imports.

Layers, bottom to top (docs/developer-guide.md#import-layers): shared helpers <- data, models <-
train <- reporting <- callbacks <- cli <- commands. A module may import its own package and
anything in a lower layer; within a layer, packages stay out of each other (data does not import
models, compare does not import serve). Imports are read from the source (every ``import``,
function-level ones included), so a lazy import cannot hide an upward one.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "lit_dpo"

# (layer, the packages or modules in it); a name covers its submodules
LAYERS = [
    (
        0,
        (
            "lit_dpo",
            "lit_dpo._moved",
            "lit_dpo.errors",
            "lit_dpo.files",
            "lit_dpo.compat",
            "lit_dpo.progress",
            "lit_dpo.stats",
        ),
    ),
    (1, ("lit_dpo.sources", "lit_dpo.device", "lit_dpo.host_memory")),
    (2, ("lit_dpo.data", "lit_dpo.models")),
    (3, ("lit_dpo.train",)),
    (4, ("lit_dpo.reporting",)),
    (5, ("lit_dpo.callbacks",)),
    (6, ("lit_dpo.cli",)),
    (
        7,
        (
            "lit_dpo.__main__",
            "lit_dpo.data_report",
            "lit_dpo.preflight",
            "lit_dpo.compare",
            "lit_dpo.serve",
            "lit_dpo.export",
            "lit_dpo.plot",
            "lit_dpo.sweep",
        ),
    ),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def home(module: str) -> tuple[int, str]:
    """(layer, the package or module of LAYERS that holds ``module``), most specific first."""
    matches = [
        (layer, name)
        for layer, names in LAYERS
        for name in names
        if module == name or (name != "lit_dpo" and module.startswith(name + "."))
    ]
    if not matches:
        if module.count(".") == 1:
            raise AssertionError(f"{module} is in no layer of tests/test_layout.py")
        return home(module.rsplit(".", 1)[0])
    return max(matches, key=lambda match: len(match[1]))


def imports_of(module: str) -> set[str]:
    """The lit_dpo modules ``module`` imports, resolved to modules that exist."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            # ``from package import submodule`` imports the submodule
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for name in names:
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name.startswith("lit_dpo") and name != module:
                found.add(name)
    # importing a module runs its parent packages' __init__ first; those are not its choice
    return {name for name in found if not module.startswith(name + ".")}


GRAPH = {module: imports_of(module) for module in MODULES}


def test_every_module_is_in_a_layer():
    for module in MODULES:
        home(module)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_go_down_the_layers(module):
    layer, package = home(module)
    problems = []
    for imported in sorted(GRAPH[module]):
        their_layer, their_package = home(imported)
        if their_layer > layer:
            problems.append(f"{imported} (layer {their_layer}) is above {module} (layer {layer})")
        elif their_layer == layer and their_package != package and layer > 1:
            problems.append(f"{imported} is a sibling of {module} in layer {layer}")
    assert not problems, "; ".join(problems)


def test_no_import_cycles():
    state: dict[str, str] = {}
    cycles = []

    def visit(module: str, trail: list[str]) -> None:
        state[module] = "open"
        for imported in sorted(GRAPH[module]):
            if state.get(imported) == "open":
                cycles.append(" -> ".join(trail[trail.index(imported) :] + [imported]))
            elif imported not in state:
                visit(imported, [*trail, imported])
        state[module] = "done"

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])
    assert not cycles, cycles


def test_the_walker_sees_function_level_and_package_imports():
    """Guards the test itself: lazy imports and ``from package import submodule`` count."""
    assert "lit_dpo.data.datamodule" in GRAPH["lit_dpo.preflight.command"]  # in a function
    assert "lit_dpo.data.batches" in GRAPH["lit_dpo.data.datamodule"]
    # imported inside __getattr__ too
    assert "lit_dpo.callbacks.plot_metrics" in GRAPH["lit_dpo.plot"]
    assert "lit_dpo.serve.api" in GRAPH["lit_dpo.serve.app"]


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m != "lit_dpo.__main__"))
def test_every_module_imports(module):
    importlib.import_module(module)


def test_old_module_paths_import_with_a_warning_naming_the_new_place():
    import sys

    sys.modules.pop("lit_dpo.health", None)
    with pytest.warns(FutureWarning, match=r"lit_dpo\.callbacks\.health.*lit_dpo\.callbacks"):
        old = importlib.import_module("lit_dpo.health")
    from lit_dpo.callbacks import HealthAlarms

    assert old.HealthAlarms is HealthAlarms
