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
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                           for alias in node.names]
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
    assert "emorec.crossval" in graph["emorec.cli.training_commands"]  # inside the `train` command


def test_no_import_cycle():
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


#: The layers of docs/ARCHITECTURE.md, top first; a module may import its own layer or lower ones.
LAYERS = [
    ("cli", ["emorec.cli", "emorec.__main__", "emorec", "emorec.serve"]),  # the package root is the public facade
    ("workflows", ["emorec.crossval", "emorec.compare", "emorec.fusion_workflow", "emorec.evaluation.ensemble",
                   "emorec.demo"]),
    ("evaluation", ["emorec.evaluation"]),
    ("training", ["emorec.training"]),
    ("experiment", ["emorec.experiment", "emorec.training.config", "emorec.training.validate", "emorec.training.typed",
                    "emorec.training.fields"]),
    ("inference", ["emorec.inference", "emorec.predict", "emorec.api", "emorec.timeline", "emorec.timeline_files",
                   "emorec.onnx_export", "emorec.onnx_runtime", "emorec.long_input",
                   "emorec.streaming", "emorec.live"]),
    ("models", ["emorec.models", "emorec.layers"]),
    ("data", ["emorec.data"]),
    ("features", ["emorec.features"]),
    ("corpora", ["emorec.corpora", "emorec.splits", "emorec.leakage", "emorec.standard_folds"]),
    ("media", ["emorec.media", "emorec.video", "emorec.silence", "emorec.conditions"]),
    ("base", ["emorec.errors", "emorec.atomic", "emorec.labels", "emorec.manifest", "emorec.model_files",
              "emorec.epochs", "emorec.kept", "emorec.runs", "emorec.monitor", "emorec.evaluation.metrics",
              "emorec.evaluation.calibration", "emorec.version", "emorec.released",
              "emorec.threads", "emorec.memory"]),
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
    upward = [f"{a} ({LAYERS[layer_of(a)][0]}) imports {b} ({LAYERS[layer_of(b)][0]})"
              for a, targets in import_graph().items() for b in sorted(targets) if layer_of(b) < layer_of(a)]
    assert not upward, "imports against the layers:\n" + "\n".join(upward)
