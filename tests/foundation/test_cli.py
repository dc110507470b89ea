from __future__ import annotations

import subprocess
from pathlib import Path

from tests.conftest import OPSCONSOLE, subprocess_env


def test_help_documents_exit_codes(tmp_path: Path) -> None:
    out = subprocess.run([*OPSCONSOLE, "--help"], env=subprocess_env(), cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0
    for code in ("0 ", "1 ", "2 ", "3 ", "4 ", "5 ", "75 ", "130 "):
        assert f"\n  {code}" in out.stdout


def test_usage_errors_exit_2_without_traceback(tmp_path: Path) -> None:
    for args in (["no-such-command"], ["selftest", "--units", "many"], ["db"]):
        out = subprocess.run([*OPSCONSOLE, *args], env=subprocess_env(), cwd=tmp_path, capture_output=True, text=True, timeout=30)
        assert out.returncode == 2, args
        assert "error:" in out.stderr and "Traceback" not in out.stderr
