"""The Ops Console Textual app: a job screen for one run, or the launcher when started bare."""

from __future__ import annotations

import asyncio
import gc
import signal
import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.theme import Theme

from console.tui.job_screen import JobScreen
from console.tui.session import JobSession
from engine.redact import redact
from engine.runner import Job, JobOutcome, exit_code_for
from engine.settings import Settings

STYLES = Path(__file__).resolve().parents[2] / "styles"

DARK = Theme(
    name="ops-dark", primary="#4FA3E0", secondary="#8C9EB5", accent="#F2B84B", warning="#F2B84B",
    error="#F0605D", success="#5CC98B", background="#0F1419", surface="#172029", panel="#1E2A36", dark=True,
)
LIGHT = Theme(
    name="ops-light", primary="#1F6FB2", secondary="#52606D", accent="#B7791F", warning="#B7791F",
    error="#C53030", success="#2F855A", background="#F7F9FB", surface="#FFFFFF", panel="#E6ECF2", dark=False,
)


def _brief(text: str, lines: int = 12) -> str:
    """A notification's worth of a long message: its first line and its last lines (a job that did
    not start says why at the end of what it printed)."""
    parts = text.splitlines()
    if len(parts) <= lines + 1:
        return text
    return "\n".join([parts[0], "…", *parts[-lines:]])


class OpsConsoleApp(App[int]):
    CSS_PATH = [STYLES / "console.tcss", STYLES / "modals.tcss", STYLES / "launcher.tcss"]
    TITLE = "Ops Console"
    # ctrl+q goes through the screen's quit (which asks while a job runs), never straight out.
    BINDINGS = [Binding("ctrl+q", "quit", "Quit", show=False, priority=True, id="opsconsole.app.quit"),
                Binding("ctrl+c", "quit", "Quit", show=False, priority=True, id="opsconsole.app.interrupt")]

    def __init__(self, settings: Settings | None = None, *, job: Job | None = None,
                 resources: dict[str, Any] | None = None, session: JobSession | None = None,
                 clock: Callable[[], float] = time.time, gates_interval: float | None = 30.0,
                 theme: str = "ops-dark", launcher_info: bool = True, detach_jobs: bool = False) -> None:
        super().__init__()
        #: start the launcher's jobs as their own processes and attach to them (the CLI does;
        #: tests that drive a job inside the app leave it off)
        self.detach_jobs = detach_jobs
        self.settings = settings
        self.clock = clock
        self.gates_interval = gates_interval
        self.launcher_info = launcher_info
        self.initial_theme = theme
        self.session = session or (JobSession.for_job(job, settings, resources) if job is not None and settings else None)
        self.standalone = self.session is not None  # a job command, not the launcher
        self.sigterm_count = 0
        #: set when a second SIGTERM aborted a job: the launcher's caller leaves the process at once
        self.aborted: JobOutcome | None = None

    # --- lifecycle ------------------------------------------------------------------------------
    # The objects built before the first frame (Textual's, the stylesheet, our widgets) live as
    # long as the app. Frozen after that frame, they leave the garbage collector's full passes, which
    # otherwise walked all of them: 30–45 ms pauses, several a minute while a job floods the log.
    def on_mount(self) -> None:
        self.register_theme(DARK)
        self.register_theme(LIGHT)
        self.theme = self.initial_theme
        self._install_sigterm()
        if self.session is not None:
            self.push_screen(self.job_screen(self.session, from_launcher=False))
        else:
            from console.tui.launcher import LauncherScreen

            self.push_screen(LauncherScreen(self.settings, info=self.launcher_info))
        self.call_after_refresh(gc.freeze)

    def on_unmount(self) -> None:
        gc.unfreeze()
        try:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGTERM)
        except (RuntimeError, NotImplementedError, ValueError):
            pass

    def _install_sigterm(self) -> None:
        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, self.on_sigterm)
        except (RuntimeError, NotImplementedError, ValueError):
            pass  # not the main thread (e.g. under textual-serve's driver, which handles it)

    def on_sigterm(self) -> None:
        """SIGTERM = stop: the job finishes its unit and checkpoints, then the console exits.
        A second SIGTERM aborts the job at once (the last checkpoint stays valid)."""
        self.sigterm_count += 1
        screen = self.running_job_screen()
        if screen is None:
            self.exit(0, return_code=0)
            return
        if screen.session.remote_runtime is not None:
            # The job is another process: SIGTERM to this console only closes the console.
            screen.action_detach()
            return
        if self.sigterm_count == 1:
            screen.request_stop_and_quit("SIGTERM received")
            screen.notify("SIGTERM: stopping after the current unit (send again to abort)", severity="warning")
        else:
            screen.session.aborted = True
            self.aborted = screen.session.final_outcome()
            for worker in screen.workers:
                if worker.group == "job":
                    worker.cancel()
            code = self.exit_code_for(screen.session)
            self.exit(code, return_code=code)

    def running_job_screen(self) -> JobScreen | None:
        for screen in reversed(self.screen_stack):
            if isinstance(screen, JobScreen) and screen.job_running:
                return screen
        return None

    # --- sessions ----------------------------------------------------------------------------------
    def job_screen(self, session: JobSession, *, from_launcher: bool) -> JobScreen:
        return JobScreen(session, clock=self.clock, gates_interval=self.gates_interval, from_launcher=from_launcher)

    def start_detached(self, argv: list[str], name: str) -> None:
        """Start `opsconsole ARGV` as its own process, then attach (a running one is attached to)."""
        self.notify(f"starting {name} in its own process…", timeout=5)
        self._start_detached(argv, name)

    @work(group="start", thread=True, exit_on_error=False)
    def _start_detached(self, argv: list[str], name: str) -> None:
        import anyio

        from console.detach import JobFinishedEarly, spawn, wait_until_serving
        from engine.endpoint_client import job_answers
        from engine.errors import OpsError

        assert self.settings is not None
        try:
            if not anyio.run(job_answers, self.settings.runtime, name):
                wait_until_serving(spawn(argv, name, self.settings.runtime), self.settings.runtime)
        except JobFinishedEarly as done:  # a short job: it ran, nothing to attach to any more
            self.call_from_thread(self._ended_before_attach, name, str(done), done.code == 0)
            return
        except OpsError as exc:
            self.call_from_thread(self.notify, _brief(redact(str(exc))), title=f"{name} did not start",
                                  severity="error", timeout=30)
            return
        self.call_from_thread(self.attach_job, name)

    def _ended_before_attach(self, name: str, text: str, ok: bool) -> None:
        self.notify(redact(text), title=f"{name} finished", timeout=15, severity="information" if ok else "warning")
        refresh = getattr(self.screen, "action_refresh_info", None)
        if refresh is not None:
            refresh()  # the launcher's panels show what it left (a pipeline summary, a checkpoint)

    @work(group="attach", exit_on_error=False)
    async def attach_job(self, name: str) -> None:
        """Open a job screen on the running job `name` (its own process)."""
        from console.commands.status import last_outcome
        from console.tui.remote import live_model_for
        from engine.endpoint_client import connect
        from engine.errors import JobNotRunning, OpsError

        assert self.settings is not None
        try:
            async with connect(self.settings.runtime, name) as client:
                snap = client.snapshot
        except JobNotRunning as exc:
            ended = await asyncio.to_thread(last_outcome, self.settings.runtime, name)  # reads its log
            if ended["exit"] is None:  # never ran, or killed: nothing to report but the refusal
                self.notify(redact(str(exc)), title="attach", severity="error", timeout=15)
            else:  # it ended between starting (or being listed) and this attach
                self._ended_before_attach(
                    name, f"{name} ended ({ended['outcome']}, exit {ended['exit']}) at {ended['ended_at']} before the "
                    f"console could attach; see runtime/{name}.console.log", ended["exit"] == 0)
            return
        except OpsError as exc:
            self.notify(redact(str(exc)), title="attach", severity="error", timeout=15)
            return
        session = JobSession.remote(name, self.settings.runtime, live_model_for(name, snap.live), snap.state,
                                    settings=self.settings)
        self.push_screen(self.job_screen(session, from_launcher=True))

    def start_job(self, job: Job, resources: dict[str, Any] | None = None) -> JobScreen:
        assert self.settings is not None
        screen = self.job_screen(JobSession.for_job(job, self.settings, resources), from_launcher=True)
        self.push_screen(screen)
        return screen

    def finish_session(self, session: JobSession) -> None:
        """Leave a job screen: back to the launcher, or out of the app for a job command."""
        screen = self.screen
        if isinstance(screen, JobScreen) and screen.from_launcher and not session.quit_when_done:
            self.pop_screen()
            launcher = self.screen
            if hasattr(launcher, "action_refresh_info"):
                launcher.action_refresh_info()
            return
        code = self.exit_code_for(session)
        self.exit(code, return_code=code)

    @staticmethod
    def exit_code_for(session: JobSession) -> int:
        """The app's return code for a session: the job's, through the engine's one mapping."""
        outcome = session.final_outcome()
        if session.error is not None and not session.aborted:
            return int(session.error.exit_code)  # the job never started (e.g. its lock is held)
        return int(exit_code_for(outcome)) if outcome is not None else 0

    # --- actions ---------------------------------------------------------------------------------------
    async def action_quit(self) -> None:
        handler = getattr(self.screen, "action_quit_console", None)
        if handler is not None:
            handler()
        else:
            self.exit(0)

    def action_toggle_theme(self) -> None:
        self.theme = "ops-light" if self.theme == "ops-dark" else "ops-dark"

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        # The palette lists the same action table as the footer and help screen.
        table = getattr(screen, "ACTIONS", ())
        for a in table:
            yield SystemCommand(f"{a.label} ({a.key_display})", a.help, partial(screen.run_action, a.action))
        for cmd in super().get_system_commands(screen):
            if cmd.title not in ("Quit", "Theme"):  # ours ask first / toggle our two themes
                yield cmd
