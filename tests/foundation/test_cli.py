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


def test_a_closed_pipe_is_not_a_traceback(tmp_path: Path) -> None:
    """`opsconsole config | head -1`: the reader leaves early."""
    proc = subprocess.Popen([*OPSCONSOLE, "config", "--json"], env=subprocess_env(COLUMNS="200"), cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # before it writes anything: its first write meets a closed pipe
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0
    assert "Traceback" not in err and "BrokenPipe" not in err


def test_a_command_module_that_does_not_import_fails_loudly(monkeypatch) -> None:
    import pytest

    from console import cli

    monkeypatch.setattr(cli, "COMMAND_MODULES", [*cli.COMMAND_MODULES, "console.commands.not_packaged"])
    with pytest.raises(ModuleNotFoundError, match="not_packaged"):
        cli.build_parser()  # a packaging bug, not a silently missing command
