"""Pages are views: they import only streamlit, zoe_panel and the standard library."""

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ALLOWED = {"streamlit", "zoe_panel"} | set(sys.stdlib_module_names)


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    out |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module and n.level == 0}
    return {m.split(".")[0] for m in out}


def test_pages_import_only_streamlit_zoe_panel_and_stdlib() -> None:
    files = sorted((ROOT / "pages").glob("*.py")) + [ROOT / "app.py"]
    assert len(files) >= 5
    for f in files:
        bad = imports(f) - ALLOWED
        assert not bad, f"{f.name} imports {bad}: move that work into zoe_panel"


def test_library_has_no_streamlit_outside_ui() -> None:
    for f in (ROOT / "zoe_panel").rglob("*.py"):
        if "ui" in f.relative_to(ROOT / "zoe_panel").parts:
            continue
        assert "streamlit" not in imports(f), f"{f} imports streamlit; only zoe_panel/ui may"


def _all_imports(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside functions (full dotted names)."""
    tree = ast.parse(path.read_text())
    out = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    out |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module and n.level == 0}
    return out


def test_the_engine_package_does_not_import_models_or_the_layers_above() -> None:
    above = ("zoe_panel.models", "zoe_panel.memory", "zoe_panel.history", "zoe_panel.diagnosis", "zoe_panel.runtime")
    for f in (ROOT / "zoe_panel/engine").rglob("*.py"):
        bad = {m for m in _all_imports(f) if m.startswith(above)}
        assert not bad, f"{f.relative_to(ROOT)} imports {bad}: the engine must not depend on them"


def test_pages_and_the_cli_go_through_the_engine_service() -> None:
    """No backend module, no controller, no private state of a backend outside the engine package."""
    callers = [
        ROOT / "app.py",
        ROOT / "zoe_panel/cli.py",
        *(ROOT / "pages").glob("*.py"),
        *(ROOT / "zoe_panel/ui").glob("*.py"),
    ]
    for f in callers:
        text = f.read_text()
        bad = {
            m
            for m in _all_imports(f)
            if m in ("zoe_panel.engine.process", "zoe_panel.engine.docker", "zoe_panel.engine.controller")
        }
        assert not bad, f"{f.name} imports {bad}"
        for word in (".controller", "._state(", ".backends[", "start_engine(", "wait_ready("):
            assert word not in text, f"{f.name} uses {word}: call rt.engine"


def test_flavour_names_are_tested_only_in_the_flavour_registry() -> None:
    allowed = {
        "zoe_panel/engine/flavors",
        "zoe_panel/engine/defaults.py",
        "zoe_panel/build",
        "zoe_panel/engine/binary.py",
    }
    for f in (ROOT / "zoe_panel").rglob("*.py"):
        rel = f.relative_to(ROOT).as_posix()
        if any(rel.startswith(a) for a in allowed):
            continue
        tree = ast.parse(f.read_text())
        literals = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
        assert not {"llama-cpp-python", "llama-server"} & {x.strip() for x in literals}, f"{rel} names a flavour"
