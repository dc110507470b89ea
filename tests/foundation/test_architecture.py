"""Contract 1: engine/ never imports Textual, and the headless path never loads it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, subprocess_env

PROBE = """
import sys
from console.cli import main
code = main(["selftest", "--units", "2", "--unit-seconds", "0", "--no-ui", "--log-format", "plain"])
import engine, console.headless, console.commands
loaded = sorted(m for m in sys.modules if m == "textual" or m.startswith("textual."))
print("TEXTUAL:", loaded)
sys.exit(code)
"""


def test_headless_run_never_loads_textual(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], env=subprocess_env(OPSCONSOLE_RUNTIME_DIR=str(tmp_path)),
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "TEXTUAL: []" in out.stdout


def test_every_engine_module_imports_without_textual() -> None:
    modules = sorted(
        ".".join(p.relative_to(REPO).with_suffix("").parts)
        for p in (REPO / "engine").rglob("*.py")
        if p.name != "__main__.py"
    )
    probe = "import importlib, sys\nfor m in %r:\n    importlib.import_module(m)\nprint(any(k == 'textual' or k.startswith('textual.') for k in sys.modules))" % modules
    out = subprocess.run([sys.executable, "-c", probe], env=subprocess_env(), cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_import_linter_contract_holds() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run([str(lint)], cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "engine never imports textual KEPT" in out.stdout
