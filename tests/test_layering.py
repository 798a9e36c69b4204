"""Data flows one way, and so do imports: a layer imports only the layers before it in the flow."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "ticklake"
FLOW = ["exchanges", "bus", "warehouse", "lake", "api"]  # earlier may not import later
# records, names, settings, time conversions, metrics, the venue registry's static facts: used by every layer
SHARED = {"model", "symbols", "settings", "times", "ops", "venues"}
VENUES = PACKAGE / "venues"


def imported_layers(path: Path) -> set[str]:
    """The top-level ticklake modules imported by a module, or by every module under a folder."""
    found: set[str] = set()
    for source in [path] if path.is_file() else path.rglob("*.py"):
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
    static_venue_facts = [VENUES / "__init__.py", VENUES / "facts.py", *sorted(VENUES.glob("*/__init__.py"))]
    for module in [PACKAGE / "model.py", PACKAGE / "symbols.py", PACKAGE / "settings.py", PACKAGE / "times.py",
                   *static_venue_facts]:
        tree = ast.parse(module.read_text(encoding="utf-8"))
        imports = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        assert not any(name.split(".")[1] in FLOW for name in imports if name.startswith("ticklake."))


@pytest.mark.parametrize("folder", sorted(path.name for path in VENUES.iterdir() if (path / "__init__.py").is_file()))
def test_a_venue_folder_is_exchanges_code_and_its_simulated_server(folder: str) -> None:
    """A venue's mapper, feed and fetcher are the exchanges layer (living in the venue's folder); its
    simulated server is the simulator's, which no layer imports."""
    for module in ("mapper.py", "feed.py", "rest.py"):
        assert imported_layers(VENUES / folder / module) <= {"exchanges"} | SHARED, module
    assert imported_layers(VENUES / folder / "simulated.py") <= {"simulator"} | SHARED
    assert all("simulator" not in imported_layers(PACKAGE / layer) for layer in FLOW if (PACKAGE / layer).is_dir())


@pytest.mark.parametrize("orchestrator", ["bench", "drill"])
def test_no_layer_imports_the_orchestrators(orchestrator: str) -> None:
    """The benchmark and the failure drill run the platform from above (as processes, through its
    API); nothing of the platform depends on them."""
    for layer in [*FLOW, "simulator"]:
        if (PACKAGE / layer).is_dir():
            assert orchestrator not in imported_layers(PACKAGE / layer), layer



# --- above the layers: the platform, the simulator, replay, the bench -------------------------------
LAYERS = set(FLOW) | SHARED


def test_the_simulator_shares_no_code_with_the_platform() -> None:
    """The simulated venues speak each exchange's protocol from their own facts, so that a parser's
    mistake cannot hide behind the same code on both sides of the socket."""
    assert imported_layers(PACKAGE / "simulator") <= SHARED | {"simulator"}


def test_the_platform_composes_the_layers_and_nothing_else() -> None:
    """``platform.py`` (what ``ticklake up`` runs in production) knows the layers only: the simulator is the
    CLI's ``--simulate``, which hands the platform the venues' URLs."""
    assert imported_layers(PACKAGE / "platform.py") <= LAYERS


def test_replay_drives_the_platform_from_outside() -> None:
    """Recording and replaying frames uses the platform, the layers it feeds and the simulator (``record
    --simulate``), never the tools above it."""
    assert imported_layers(PACKAGE / "replay.py") <= LAYERS | {"platform", "simulator"}


@pytest.mark.parametrize("orchestrator", ["bench", "drill"])
def test_the_orchestrators_stand_above_the_platform(orchestrator: str) -> None:
    """They run the platform from outside; the command line is the only thing above them."""
    assert "cli" not in imported_layers(PACKAGE / orchestrator)


@pytest.mark.parametrize("entry_point", ["platform", "replay", "cli"])
def test_no_layer_imports_an_entry_point(entry_point: str) -> None:
    for below in [*FLOW, "simulator", *SHARED]:
        path = PACKAGE / below if (PACKAGE / below).is_dir() else PACKAGE / f"{below}.py"
        if path.exists():
            assert entry_point not in imported_layers(path), below
