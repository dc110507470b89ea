"""`opsconsole serve` in a real browser: headless Chromium (Debian's, driven by Playwright) opens the
tokened URL, sees a headless Step D that runs in its own process, attaches to it from the launcher,
and a key press in the page pauses the job.

The page draws its terminal on a canvas; the text on screen is rebuilt from the WebSocket frames
the page's xterm.js renders (see vt_screen.py). The pause is then checked where it matters: the
job's own answer on its socket (`opsconsole status --json`) and its log.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psutil
import pytest

from tests.browser.vt_screen import Screen
from tests.conftest import OPSCONSOLE, REPO
from tests.durability.stepd_procs import Site, finish, fresh_pg_database
from tests.endpoint.helpers import wait_until

JOB = "full-enrichment"
# Debian's chromium; OPSCONSOLE_TEST_CHROMIUM names another build of it.
CHROMIUM = os.environ.get("OPSCONSOLE_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# Chromium on a closed network: no first-run, sync, component or background fetches (refused
# connections otherwise), no GPU, no sandbox (CI runs as root).
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WAIT = 90.0  # bounds on waiting for a shared, busy machine; nothing here asserts on time

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason=f"no Chromium at {CHROMIUM}: Debian's chromium is not installed (.ci/run installs it with apt-get)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _kill_tree(proc: subprocess.Popen[str]) -> None:
    """End a process we started and whatever it started (serve runs one console per page)."""
    try:
        kids = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        kids = []
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    _gone, alive = psutil.wait_procs(kids, timeout=10)
    for p in alive:
        p.kill()


@pytest.fixture
def stepd(tmp_path: Path, pg_server: str) -> Iterator[tuple[Site, subprocess.Popen[str]]]:
    """The medium demo data, then a headless Step D slow enough to watch (--full, one pair a batch:
    some 20,000 batches, stopped by the test long before the end)."""
    site = Site(tmp_path, fresh_pg_database(pg_server))
    out = site.run("demo", "--scale", "medium", "--no-ui", "--log-format", "plain")
    assert out.returncode == 0, out.stderr[-3000:]
    proc = site.spawn("enrich", "--step", "D", "--full", "--batch-size", "1", "--no-ui", "--log-format", "plain")
    try:
        sock = site.runtime / f"{JOB}.sock"
        wait_until(lambda: sock.exists() and site.pairs_done() > 0, proc, "Step D's first checkpoint", timeout=WAIT)
        yield site, proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@dataclass
class Served:
    url: str
    proc: subprocess.Popen[str]


@pytest.fixture
def served(stepd: tuple[Site, subprocess.Popen[str]]) -> Iterator[Served]:
    """`opsconsole serve` on loopback with the job's environment (its consoles see the same runtime)."""
    site, _ = stepd
    port = free_port()
    # Its output goes to a file, not a pipe: nothing here reads a pipe line by line, and an unread
    # pipe would block serve's access log (and with it serve).
    output = site.root / "serve.out"
    with output.open("w") as out:
        proc = subprocess.Popen([*OPSCONSOLE, "serve", "--port", str(port)], env=site.env(), cwd=REPO, stdout=out,
                                stderr=subprocess.STDOUT, text=True)
    try:
        found: list[str] = []

        def url_printed() -> bool:
            m = re.search(rf"open (http://127\.0\.0\.1:{port}/\?token=\S+)", output.read_text())
            if m:
                found.append(m[1])
            return bool(m)

        wait_until(lambda: url_printed() or proc.poll() is not None, None, "serve to print its URL", timeout=WAIT)
        assert found, f"serve did not print its URL: {output.read_text()[-2000:]}"
        _wait_listening(port, proc)
        yield Served(found[0], proc)
    finally:
        _kill_tree(proc)


def _wait_listening(port: int, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + WAIT
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert proc.poll() is None, "serve exited before listening"
            assert time.monotonic() < deadline, "serve never listened"
            time.sleep(0.1)


class BrowserTerminal:
    """A page of the served console and the screen its terminal shows."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.screen = Screen()
        self.frames = 0
        self.size = (0, 0)  # columns, rows
        page.on("websocket", self._watch)

    def _watch(self, ws: Any) -> None:
        size = parse_qs(urlsplit(ws.url).query)  # the page asks for the terminal size it fits
        self.size = int(size["width"][0]), int(size["height"][0])
        ws.on("framereceived", self._frame)

    def _frame(self, payload: bytes | str) -> None:
        if isinstance(payload, bytes):  # terminal output; text frames are JSON (pong, instance id)
            self.screen.feed(payload)
            self.frames += 1

    def click(self, word: str) -> None:
        """Click, as an operator would, in the middle of where `word` is shown."""
        where = self.screen.find(word)
        assert where is not None, f"{word!r} is not on screen:\n{self.screen.text()}"
        box = self.page.locator(".xterm-screen").bounding_box()
        cols, rows = self.size
        cell_w, cell_h = box["width"] / cols, box["height"] / rows
        row, col = where
        self.page.mouse.click(box["x"] + (col + len(word) / 2) * cell_w, box["y"] + (row + 0.5) * cell_h)

    def wait_for(self, check: Callable[[Screen], bool], what: str, proc: subprocess.Popen[str] | None) -> None:
        """Wait (pumping the page's events) until the screen passes `check`; `proc` must live meanwhile."""
        deadline = time.monotonic() + WAIT
        while not check(self.screen):
            assert proc is None or proc.poll() is None, f"the job exited ({proc.returncode}) while waiting for {what}"
            if time.monotonic() > deadline:
                raise AssertionError(f"the browser never showed {what}; its screen:\n{self.screen.text()}")
            self.page.wait_for_timeout(100)


def _status(site: Site) -> dict[str, Any]:
    """The job's record as it answers on its socket."""
    out = site.run("status", "--json", timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    records = [r for r in json.loads(out.stdout)["running"] if r["job"] == JOB]
    return records[0] if records else {}


def _wait_state(site: Site, proc: subprocess.Popen[str], state: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def reached() -> bool:
        seen.update(_status(site))
        return seen.get("state") == state

    wait_until(reached, proc, f"the job to report {state}", timeout=WAIT)
    return seen


def test_a_key_pressed_in_the_browser_pauses_the_running_job(stepd: tuple[Site, subprocess.Popen[str]],
                                                             served: Served, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    site, proc = stepd
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
            viewport={"width": 1280, "height": 800})
        try:
            # Loopback only: the page's web-font request (and anything else) never leaves the machine.
            context.route("**/*", lambda route: route.continue_() if route.request.url.startswith("http://127.0.0.1:")
                          else route.abort())
            page = context.new_page()
            term = BrowserTerminal(page)
            page.goto(served.url, wait_until="domcontentloaded")
            page.wait_for_selector("body.-first-byte", timeout=WAIT * 1000)  # the page's terminal drew output

            # The launcher lists the running job (its pid, state and progress, read from its socket).
            pid = str(proc.pid)
            term.wait_for(lambda s: s.has(JOB, f"pid {pid}", "running") and s.has("attach"), "the running job", proc)
            page.screenshot(path=str(tmp_path / "launcher.png"))

            # A click on the running job attaches the console to it. (Enter on the Running list does
            # too: tests/tui/test_launcher_attach.py. Keys sent before the page's terminal has focus,
            # and the app has heard so, would land on the Start list: a click needs no focus.)
            term.click(JOB)
            term.wait_for(lambda s: s.has("OPS CONSOLE", JOB, "RUNNING"), "the job screen of the attached job", proc)
            term.wait_for(lambda s: s.has("pairs", "batch"), "Step D's progress", proc)

            assert _status(site)["state"] == "running"  # so the pause below is the key's doing
            page.keyboard.press("p")
            term.wait_for(lambda s: s.has("OPS CONSOLE", JOB, "PAUSED"), "the job paused", proc)
            page.screenshot(path=str(tmp_path / "paused.png"))
            record = _wait_state(site, proc, "paused")  # the job itself says so, on its socket
            assert record["pid"] == proc.pid and record["step"] == "D"
            log = (site.runtime / f"{JOB}.console.log").read_text()
            assert f"STATE   {JOB} paused" in log
            held = site.pairs_done()
            assert held > 0 and site.state()["status"] == "running"  # type: ignore[index]  # a hold, not an end

            # Stop it from a shell: the browser's console sees the job end as well.
            stop = site.run("stop", JOB, timeout=120)
            assert stop.returncode == 0, stop.stderr[-2000:]
            term.wait_for(lambda s: s.has("OPS CONSOLE", JOB, "STOPPED"), "the job stopped", None)
        finally:
            context.close()
    out, err = finish(proc, timeout=120)
    assert proc.returncode == 0, err[-3000:]  # stopped gracefully, checkpoint saved
    assert f"STATE   {JOB} paused" in out  # the headless job's own output said paused too
    assert site.pairs_done() == held  # stopped where it was held
