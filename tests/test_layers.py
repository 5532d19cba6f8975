"""Imports run one way through the pipeline: data → models → rag/train → eval/serve → experiment/cli.

Every ``import`` in the package is checked, the lazy ones inside functions included: a module may
import from its own layer and the layers below it, never from above.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "slmkit"

# Higher number = higher layer. Modules not listed here (errors, atomic, interrupt, config, …) are
# the foundation, layer 0, importable from anywhere and importing nothing above them.
LAYERS = {
    "data": 1,
    "models": 2,
    "rag": 3,
    "train": 3,
    "eval": 4,
    "serve": 4,
    "experiment": 5,
    "cli": 6,
    "__init__": 6,  # the lazy top-level API re-exports everything
}
# The table of packaged models imports only the foundation, and the configs name their defaults
# from it: it counts as foundation.
FOUNDATION = {"slmkit.models.registry", "models/registry"}
# Siblings that must not depend on each other either.
SEPARATE = {("rag", "train"), ("eval", "serve"), ("serve", "eval")}
# train builds its examples from retrieval (rag_examples, synth): allowed one way only.
ALLOWED = {("train", "rag")}


def _layer_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "slmkit":
        return None
    if module in FOUNDATION:
        return "__base__"
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else "__base__"


def _imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def test_no_module_imports_from_a_layer_above_it():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).with_suffix("")
        own = relative.parts[0]
        if own not in LAYERS or relative.as_posix() in FOUNDATION:
            own = "__base__"
        for line, module in _imports(path):
            target = _layer_of(module)
            if target is None or target == own:
                continue
            mine, theirs = LAYERS.get(own, 0), LAYERS.get(target, 0)
            if (own, target) in ALLOWED:
                continue
            if theirs > mine or (own, target) in SEPARATE or (theirs == mine and own != "__base__"):
                wrong.append(f"{relative}.py:{line} ({own}) imports {module} ({target})")
    assert not wrong, "imports against the pipeline's direction:\n" + "\n".join(wrong)
