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
