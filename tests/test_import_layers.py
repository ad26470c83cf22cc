"""The package's imports go one way: no module imports, even inside a function, a module
that imports it back (directly or through others)."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "emorec"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """``module -> emorec modules it imports`` at module level or inside any function.

    ``from emorec.pkg import name`` counts as importing ``emorec.pkg.name`` when that is a
    module, else ``emorec.pkg``; a package's ``__init__`` is a module like any other."""
    modules = {module_name(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                    for alias in node.names
                ]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name and target.startswith("emorec"):
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
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


def test_the_graph_sees_function_level_imports():
    graph = import_graph()
    assert "emorec.errors" in graph["emorec.cli.app"]  # module level
    # inside the `train` command
    assert "emorec.workflows.crossval" in graph["emorec.cli.training_commands"]


def test_no_import_cycle():
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


#: The layers of docs/ARCHITECTURE.md, top first; a module may import its own layer or lower ones.
#: Most layers are one package; the few leaves listed by module sit below their package's layer.
LAYERS = [
    (
        "cli",
        ["emorec.cli", "emorec.__main__", "emorec", "emorec.serve"],
    ),  # the package root is the public facade
    ("workflows", ["emorec.workflows", "emorec.evaluation.ensemble"]),
    ("evaluation", ["emorec.evaluation"]),
    ("training", ["emorec.training"]),
    (
        "experiment",
        [
            "emorec.training.experiment",
            "emorec.training.config",
            "emorec.training.validate",
            "emorec.training.typed",
            "emorec.training.recipe_files",
            "emorec.training.fields",
        ],
    ),
    ("runs", ["emorec.runs"]),
    ("inference", ["emorec.inference"]),
    ("models", ["emorec.models", "emorec.layers"]),
    ("data", ["emorec.data"]),
    ("features", ["emorec.features"]),
    ("corpora", ["emorec.corpora"]),
    ("media", ["emorec.media"]),
    (
        "base",
        [
            "emorec.errors",
            "emorec.atomic",
            "emorec.version",
            "emorec.threads",
            "emorec.memory",
            "emorec.inference.model_files",
            "emorec.evaluation.metrics",
            "emorec.evaluation.calibration",
        ],
    ),
]


def layer_of(module: str) -> int:
    """The layer index (0 = top) of the longest matching prefix in :data:`LAYERS`."""
    best, rank = -1, None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            inside = module == prefix or (prefix != "emorec" and module.startswith(prefix + "."))
            if inside and len(prefix) > best:
                best, rank = len(prefix), index
    assert rank is not None, f"{module} is in no layer of LAYERS (and of docs/ARCHITECTURE.md)"
    return rank


def test_imports_go_down_the_documented_layers():
    upward = [
        f"{a} ({LAYERS[layer_of(a)][0]}) imports {b} ({LAYERS[layer_of(b)][0]})"
        for a, targets in import_graph().items()
        for b in sorted(targets)
        if layer_of(b) < layer_of(a)
    ]
    assert not upward, "imports against the layers:\n" + "\n".join(upward)


#: Modules named in a string against the layers, each with why; the list only shrinks.
NAMED_UPWARD = {
    ("emorec.features.base", "emorec.inference.embedding"): "the `embed` extractor is a trained "
    "model's embedding as a feature: the table names it so that extraction workers find it by name",
}


def named_modules() -> dict[str, set[str]]:
    """``module -> emorec modules it names in a string`` (loaded later through importlib, or run
    as ``python -m``), including the registries' name -> module tables, whose names are joined
    at run time."""
    from emorec.evaluation import _LAZY
    from emorec.features.base import BUILTIN_EXTRACTORS
    from emorec.models.registry import BUILTIN_MODEL_MODULES

    modules = {module_name(p): p for p in SRC.rglob("*.py")}
    named: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            value = node.value if isinstance(node, ast.Constant) else None
            # a dotted name only: the bare "emorec" is the name of the package's logger too
            if isinstance(value, str) and "." in value and value in modules and value != name:
                named[name].add(value)
    named["emorec.features.base"] |= set(BUILTIN_EXTRACTORS.values())
    named["emorec.models.registry"] |= {f"emorec.models.{m}" for m in BUILTIN_MODEL_MODULES}
    named["emorec.evaluation"] |= {f"emorec.evaluation.{m}" for m in _LAZY.values()}
    return named


def test_the_registries_name_existing_modules():
    modules = {module_name(p) for p in SRC.rglob("*.py")}
    named = named_modules()
    assert "emorec.features.spectral" in named["emorec.features.base"]
    missing = sorted(b for targets in named.values() for b in targets if b not in modules)
    assert not missing, f"modules named in strings that do not exist: {missing}"


def test_modules_named_in_strings_respect_the_layers():
    upward = [
        f"{a} ({LAYERS[layer_of(a)][0]}) names {b} ({LAYERS[layer_of(b)][0]})"
        for a, targets in named_modules().items()
        for b in sorted(targets)
        if layer_of(b) < layer_of(a) and (a, b) not in NAMED_UPWARD
    ]
    assert not upward, "modules named against the layers:\n" + "\n".join(upward)
    assert all(layer_of(b) < layer_of(a) for a, b in NAMED_UPWARD), (
        "a listed pair is no longer upward: drop it"
    )
