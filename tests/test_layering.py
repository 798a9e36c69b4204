"""Data flows one way, and so do imports: a layer imports only the layers before it in the flow."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "ticklake"
FLOW = ["exchanges", "bus", "warehouse", "lake", "api"]  # earlier may not import later
SHARED = {"model", "symbols", "settings", "ops"}  # records, names, settings, metrics: used by every layer


def imported_layers(folder: Path) -> set[str]:
    found: set[str] = set()
    for source in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            for name in names:
                parts = name.split(".")
                if parts[0] == "ticklake" and len(parts) > 1:
                    found.add(parts[1])
    return found


@pytest.mark.parametrize("layer", [layer for layer in FLOW if (PACKAGE / layer).is_dir()])
def test_a_layer_imports_only_earlier_layers(layer: str) -> None:
    allowed = set(FLOW[: FLOW.index(layer) + 1]) | SHARED
    assert imported_layers(PACKAGE / layer) <= allowed


def test_shared_modules_import_no_layer() -> None:
    assert imported_layers(PACKAGE / "ops") == set()
    for module in ("model.py", "symbols.py", "settings.py"):
        tree = ast.parse((PACKAGE / module).read_text(encoding="utf-8"))
        imports = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        assert not any(name.split(".")[1] in FLOW for name in imports if name.startswith("ticklake."))
