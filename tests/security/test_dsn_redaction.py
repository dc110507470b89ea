"""A Postgres password that is not percent-encoded never leaks (stderr, console log, redact()).

Before, `SUPABASE_DB_URL='postgresql://u:Secr3t?x=1 y@host/db'` printed the whole password in
libpq's "unexpected spaces found in …", on stderr and in runtime/pipeline.console.log; with a `/`
in the password, the part after it was shown as if it were the host.
"""

from __future__ import annotations

import re
import socket
import subprocess
from pathlib import Path

import pytest

from engine.redact import redact
from engine.settings import load_settings
from tests.conftest import OPSCONSOLE, REPO, subprocess_env

PASSWORDS = [
    "Secr3t?x=1 y",
    "p#ss:w@rd zz",
    "sl/ash/Pa55word",
    "qu3ry?fr4g#m3nt:4t@s1gn z9",
    "w1th Sp4ces/4nd m0re",
]


def _pieces(password: str) -> list[str]:
    """What must not appear: the password and every piece a parser could show on its own."""
    parts = [password, *re.split(r"[/?#@:]+", password), *re.split(r"[/?#@:\s]+", password)]
    return [p for p in dict.fromkeys(parts) if len(p) >= 4]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed once we return


@pytest.mark.parametrize("password", ["Unreg1stered?x=1 y", "unreg/Istered-pw", "un#reg:is@tered pw"])
def test_redact_masks_an_unregistered_password_up_to_the_last_at(password: str) -> None:
    text = f"connect to postgresql://ops:{password}@db.example:5432/app failed"
    out = redact(text)
    for piece in _pieces(password):
        assert piece not in out, out
    assert out == "connect to postgresql://ops:***@db.example:5432/app failed"
    from engine.redact import url_password

    assert url_password(f"postgresql://ops:{password}@db.example:5432/app") == password


def test_redact_leaves_urls_without_credentials_alone() -> None:
    for text in ("GET http://127.0.0.1:8000/ws?width=80 from ops@example.com",
                 "https://gamma-api.polymarket.com/markets?limit=100",
                 "see http://localhost:8000 or mail admin@example.com"):
        assert redact(text) == text


@pytest.mark.parametrize("password", ["Regist3red?x=1 y", "regi#st:er@ed zz"])
def test_settings_register_every_piece_a_driver_may_print(password: str) -> None:
    load_settings(postgres_url=f"postgresql://u:{password}@127.0.0.1:1/db")
    # libpq cuts an unencoded password at a delimiter and quotes a piece in its error.
    for piece in _pieces(password):
        assert piece not in redact(f'unexpected spaces found in "{piece}@127.0.0.1"')


@pytest.mark.parametrize("password", PASSWORDS)
def test_a_real_command_never_prints_the_password(tmp_path: Path, password: str) -> None:
    runtime = tmp_path / "rt"
    env = subprocess_env(
        OPSCONSOLE_RUNTIME_DIR=str(runtime),
        SUPABASE_DB_URL=f"postgresql://u:{password}@127.0.0.1:{_closed_port()}/db",
        POLYMARKET_BASE_URL=f"http://127.0.0.1:{_closed_port()}",
    )
    proc = subprocess.run([*OPSCONSOLE, "pipeline", "--no-ui"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 5, proc.stderr  # the store is unreachable: a clear message
    assert "cannot connect to Postgres" in proc.stderr + proc.stdout
    log = (runtime / "pipeline.console.log").read_text()
    assert "cannot connect to Postgres" in log
    for piece in _pieces(password):
        for where, text in (("stderr", proc.stderr), ("stdout", proc.stdout), ("log", log)):
            assert piece not in text, f"{piece!r} leaked on {where}: {text[-500:]}"
