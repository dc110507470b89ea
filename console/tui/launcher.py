"""The launcher: what bare `opsconsole` opens. Start a job, compute gates, see the last checkpoint
and the last pipeline summary. Job classes are imported only when chosen, so an entry whose module
is not installed is simply shown as unavailable."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.message import Message
from textual.screen import Screen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from console.tui.actions import LAUNCHER_ACTIONS, bindings
from console.tui.modals import ConfirmScreen, HelpScreen
from console.tui.model import JobView
from console.tui.widgets import GatesPanel, KeysFooter, clock_text, short_json
from console.tui.widgets import esc as escape
from engine.errors import BadInput, OpsError
from engine.events import GateResult
from engine.files import read_json_bounded
from engine.redact import redact
from engine.settings import Settings


def _module_available(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _selftest(settings: Settings) -> Any:
    from engine.jobs.selftest import SelftestJob

    return SelftestJob(units=200, unit_seconds=0.05, resume=False)


def _demo(settings: Settings) -> Any:
    # Same job as `opsconsole demo --scale small`: fresh demo data, Steps A–E, then the gates.
    from engine.enrichment.job import DemoRequest, EnrichmentJob

    return EnrichmentJob.from_settings(settings, "all", demo=DemoRequest("small", 7), run_gates=True)


def step_d_resumes(runtime: Path) -> bool:
    """Whether the launcher's Step D continues from the checkpoint (`--resume`): only a run left
    unfinished (stopped, paused, crashed, failed). After a complete run a plain run is the right one:
    it recomputes what changed since, where `--resume` would refuse changed inputs (exit 4)."""
    path = runtime / "full-enrichment.state.json"
    try:
        data = read_json_bounded(path, "state file") if path.is_file() else None
    except (OSError, ValueError, OpsError):
        return False  # unreadable: a plain run replaces it (and says so in its log)
    return isinstance(data, dict) and data.get("status") != "done"


def _enrichment(steps: list[str] | str, resume: bool = False, daily: bool = False) -> Callable[[Settings], Any]:
    def make(settings: Settings) -> Any:
        from engine.enrichment.daily import DailyEnrichmentJob
        from engine.enrichment.job import EnrichmentJob

        # The same factory as `opsconsole enrich`: BATCH_SIZE and the rest come from the settings.
        if daily:
            return DailyEnrichmentJob.from_settings(settings, steps)
        return EnrichmentJob.from_settings(settings, steps, resume=resume)

    return make


def _step_d(settings: Settings) -> Any:
    return _enrichment(["D"], resume=step_d_resumes(settings.runtime))(settings)


def _pipeline_dry_run(offline: bool) -> Callable[[Settings], Any]:
    def make(settings: Settings) -> Any:
        from engine.pipeline import SAMPLE_MARKETS
        from engine.pipeline.job import PipelineJob
        from engine.pipeline.options import PipelineOptions

        # The summary file is what the launcher shows as "last pipeline summary". Offline, the
        # bundled Gamma snapshot stands in for the API (it includes two broken markets).
        return PipelineJob(PipelineOptions(dry_run=True, limit=5, source=SAMPLE_MARKETS if offline else None,
                                           summary_path=settings.runtime / "pipeline-summary.json"))

    return make


def _score(settings: Settings) -> Any:
    from engine.scoring.job import ScoreJob

    return ScoreJob()  # the same job as `opsconsole score`: every stored forecast, Gamma by id


@dataclass(frozen=True)
class Entry:
    id: str
    title: str
    help: str
    needs: str  # module that must be importable
    factory: Callable[[Settings], Any] | None  # None: not a job (handled by the screen)
    destructive: bool = False  # asks before it starts


ENTRIES: tuple[Entry, ...] = (
    Entry("demo", "Demo", "replace the enrichment tables with the small demo data set, run A–E and the gates",
          "engine.enrichment.demo", _demo, destructive=True),
    Entry("daily", "Daily enrichment", "new trades (when configured), Steps A–E on what changed, the gates; "
          "finishes an interrupted Step D first", "engine.enrichment.daily",
          _enrichment("daily", daily=True)),
    Entry("step-d", "Step D", "P&L per (wallet, condition), checkpointed: resumes an unfinished run, else "
          "recomputes what changed", "engine.enrichment.job",
          _step_d),
    Entry("step-e", "Step E", "resolution accuracy per wallet (needs Step D complete)", "engine.enrichment.job",
          _enrichment(["E"], False)),
    Entry("gates", "Gates", "compute the five validation gates now", "engine.enrichment.gates", None),
    Entry("pipeline", "Pipeline dry run", "fetch a few markets from Gamma, run the suites, print the summary; no writes",
          "engine.pipeline.job", _pipeline_dry_run(offline=False)),
    Entry("pipeline-sample", "Pipeline dry run (sample)", "the same on the bundled market snapshot: no network needed",
          "engine.pipeline.job", _pipeline_dry_run(offline=True)),
    Entry("score", "Score forecasts", "score stored forecasts whose markets resolved (Brier, log loss, skill vs "
          "the baseline)", "engine.scoring.job", _score),
    Entry("scores", "Scores", "the leaderboard and reliability diagrams of the last scoring run", "engine.scoring.job",
          None),
    Entry("selftest", "Selftest", "a small job that exercises pause/resume/stop and checkpoints; no stores",
          "engine.jobs.selftest", _selftest),
)


def _pipeline_argv(offline: bool) -> Callable[[Settings], list[str]]:
    def argv(settings: Settings) -> list[str]:
        from engine.pipeline import SAMPLE_MARKETS

        out = ["pipeline", "--dry-run", "--limit", "5", "--summary-path", str(settings.runtime / "pipeline-summary.json")]
        return out + (["--source", str(SAMPLE_MARKETS)] if offline else [])

    return argv


#: each job entry as a command line (`opsconsole ARGV`), for starting it as its own process
ARGV: dict[str, Callable[[Settings], list[str]]] = {
    "demo": lambda s: ["demo", "--scale", "small", "--seed", "7"],
    "daily": lambda s: ["enrich", "--step", "daily"],
    "step-d": lambda s: ["enrich", "--step", "D", *(["--resume"] if step_d_resumes(s.runtime) else [])],
    "step-e": lambda s: ["enrich", "--step", "E"],
    "pipeline": _pipeline_argv(offline=False),
    "pipeline-sample": _pipeline_argv(offline=True),
    "score": lambda s: ["score"],
    "selftest": lambda s: ["selftest", "--units", "200", "--unit-seconds", "0.05"],
}


def summary_text(data: dict[str, Any]) -> str:
    """The pipeline's own summary format when available (same lines as the CLI prints)."""
    try:
        from engine.pipeline.summary import format_summary

        return "\n".join(format_summary(data).splitlines()[:16])
    except Exception:  # an older or foreign summary file: show its top-level keys
        lines = []
        for k, v in data.items():
            lines.append(f"{k}: {short_json(v, 50) if isinstance(v, (dict, list)) else v}")
        return "\n".join(lines[:14])


def _job_alive(runtime: Path, job: str) -> bool:
    """The job's pid file names a live process that is still the job (the runner removes it when
    the job ends; a killed job's pid may since belong to another process)."""
    from engine.processes import pid_file_owner

    return pid_file_owner(runtime / f"{job}.pid") is not None


def read_info(runtime: Path) -> tuple[str, str]:
    """(last checkpoint text, last pipeline summary text) from the runtime folder."""
    cp_path = runtime / "full-enrichment.state.json"
    if cp_path.is_file():
        try:
            data = read_json_bounded(cp_path, "state file")
            if not isinstance(data, dict):
                raise BadInput(f"{cp_path}: not a checkpoint (a JSON object was expected)")
            interrupted = data.get("status") == "running" and not _job_alive(runtime, "full-enrichment")
            if interrupted:
                data = {**data, "status": "interrupted"}  # what `opsconsole status` calls it too
            keys = ("step", "status", "mode", "batch_idx", "pairs_done", "pairs_total", "last_mutations", "updated_at")
            lines = [f"{k}: [b]{escape(str(data[k]))}[/]" for k in keys if k in data]
            if "cursor" in data:
                lines.append(f"cursor: {escape(short_json(data['cursor'], 50))}")
            checkpoint = "\n".join(lines) or escape(short_json(data, 200))
            if interrupted:
                checkpoint = ("[$warning]interrupted: its process is gone — Step D resumes it[/]\n"
                              + checkpoint)
        except (OSError, ValueError, OpsError) as exc:
            checkpoint = f"[$error]unreadable checkpoint {escape(str(cp_path))}: {escape(str(exc))}[/]"
    else:
        checkpoint = "[dim]no checkpoint yet (runtime/full-enrichment.state.json)[/]"
    # The pipeline's own record of its last run, and summary files written with --summary-path.
    found = [*runtime.glob("*summary*.json"), runtime / "pipeline.last.json"]
    candidates = sorted((p for p in found if p.is_file() and not p.is_symlink()), key=lambda p: p.stat().st_mtime,
                        reverse=True)
    if candidates:
        try:
            data = read_json_bounded(candidates[0], "summary file")
            if not isinstance(data, dict):
                raise BadInput(f"{candidates[0]}: not a summary (a JSON object was expected)")
            summary = f"[dim]{escape(candidates[0].name)}[/]\n" + escape(redact(summary_text(data)))
        except (OSError, ValueError, OpsError) as exc:
            summary = f"[$error]unreadable summary {escape(candidates[0].name)}: {escape(str(exc))}[/]"
    else:
        summary = "[dim]no pipeline summary yet[/]"
    return checkpoint, summary


class InfoRead(Message):
    def __init__(self, checkpoint: str, summary: str) -> None:
        super().__init__()
        self.checkpoint = checkpoint
        self.summary = summary


class LauncherGates(Message):
    def __init__(self, gates: list[GateResult] | None, error: str, ts: float) -> None:
        super().__init__()
        self.gates = gates
        self.error = error
        self.ts = ts


class ScoresRead(Message):
    def __init__(self, summary: dict[str, Any] | None, error: str) -> None:
        super().__init__()
        self.summary = summary
        self.error = error


class RunningRead(Message):
    def __init__(self, jobs: list[tuple[str, str]]) -> None:
        super().__init__()
        self.jobs = jobs  # (job name, one-line description)


RUNNING_POLL_S = 2.0


def running_line(job: Any) -> str:
    """One line for a running job in the launcher: name, pid, state, step and progress."""
    snap = job.snapshot
    progress = snap.progress.get(snap.step) if snap.step else None
    done = ""
    if progress is not None:
        done = f" · {progress.done:,}" + (f"/{progress.total:,}" if progress.total is not None else "")
    step = f" · step {snap.step}" if snap.step else ""
    return f"pid {job.hello.pid} · {snap.state.value}{step}{done}"


class LauncherScreen(Screen[None]):
    BINDINGS = bindings(LAUNCHER_ACTIONS)  # type: ignore[assignment]  # list is invariant; Binding is one of the allowed items
    ACTIONS = LAUNCHER_ACTIONS

    def __init__(self, settings: Settings | None, *, info: bool = True) -> None:
        super().__init__()
        self.settings = settings
        self.info = info
        self.gates_view = JobView("gates")
        self.available = {e.id: _module_available(e.needs) for e in ENTRIES}
        self.running_names: list[str] = []

    def compose(self) -> ComposeResult:
        yield Static(Content.from_markup("[b]OPS CONSOLE[/] │ launcher │ pick a job and press enter"), id="header")
        with Horizontal(id="launcher-body"):
            with Vertical(id="launcher-left"):
                yield OptionList(id="running", classes="panel")
                options = []
                for e in ENTRIES:
                    ok = self.available[e.id]
                    label = f"[b]{escape(e.title)}[/]\n[dim]{escape(e.help if ok else 'not available in this build')}[/]"
                    options.append(Option(Content.from_markup(label), id=e.id, disabled=not ok))
                yield OptionList(*options, id="entries", classes="panel")
            with Vertical(id="info"):
                yield Static(id="checkpoint-info", classes="panel")
                yield Static(id="summary-info", classes="panel")
                yield GatesPanel(id="gates", classes="panel", hint="choose Gates to compute them")
        yield KeysFooter(compact=True)

    def on_mount(self) -> None:
        self.query_one("#entries").border_title = "Start"
        running = self.query_one("#running", OptionList)
        running.border_title = "Running"
        running.display = False
        if self.settings is not None and self.info:
            self.poll_running()
        self.query_one("#checkpoint-info").border_title = "Last Step D checkpoint"
        self.query_one("#summary-info").border_title = "Last pipeline summary"
        self.query_one("#gates", GatesPanel).show(self.gates_view)
        self.query_one("#entries", OptionList).focus()
        self.action_refresh_info()

    # --- running jobs: each poll starts only after the last one finished ------------------------
    @work(group="running", exit_on_error=False)
    async def poll_running(self) -> None:
        from engine.endpoint_client import running_jobs

        assert self.settings is not None
        try:
            jobs = await running_jobs(self.settings.runtime, timeout=2.0)
        except Exception:  # a runtime dir we cannot read: nothing to list, try again later
            jobs = []
        self.post_message(RunningRead([(j.hello.job, running_line(j)) for j in jobs]))

    @on(RunningRead)
    def show_running(self, message: RunningRead) -> None:
        running = self.query_one("#running", OptionList)
        names = [name for name, _ in message.jobs]
        before = [str(running.get_option_at_index(i).id) for i in range(running.option_count)]
        labels = [Content.from_markup(f"[b]{escape(name)}[/]  [dim]{escape(line)}[/]  [$accent]enter: attach[/]")
                  for name, line in message.jobs]
        if names != before:
            running.clear_options()
            running.add_options([Option(label, id=name) for label, (name, _) in zip(labels, message.jobs, strict=True)])
        else:  # same jobs: refresh their lines in place (no flicker, the highlight stays)
            for label, name in zip(labels, names, strict=True):
                running.replace_option_prompt(name, label)
        running.display = bool(names)
        self.running_names = names
        if names:  # a job runs: its checkpoint moves on (read in a thread, like every read)
            self.action_refresh_info()
        # The next poll is scheduled only once this one has been shown (a slow one never piles up).
        self.set_timer(RUNNING_POLL_S, self.poll_running)

    # --- info (read in a thread: the UI never waits on the disk or a store) --------------------
    def action_refresh_info(self) -> None:
        if self.info and self.settings is not None:
            self.read_info_files()
        else:
            self.post_message(InfoRead("[dim]—[/]", "[dim]—[/]"))

    @work(group="info", thread=True, exit_on_error=False)
    def read_info_files(self) -> None:
        from engine.enrichment.gates_record import load_last_gates

        assert self.settings is not None
        self.post_message(InfoRead(*read_info(self.settings.runtime)))
        last = load_last_gates(self.settings.runtime)  # the latest gates anyone computed here
        if last is not None and not self.gates_view.gates:
            self.post_message(LauncherGates(last[0], "", last[1]))

    @on(InfoRead)
    def show_info(self, message: InfoRead) -> None:
        self.query_one("#checkpoint-info", Static).update(Content.from_markup(message.checkpoint))
        self.query_one("#summary-info", Static).update(Content.from_markup(message.summary))

    @work(group="gates", thread=True, exit_on_error=False)
    def fetch_gates(self) -> None:
        import time

        try:
            from engine.enrichment.gates_record import compute_and_save
            from engine.stores.clickhouse import open_clickhouse

            assert self.settings is not None
            gates = compute_and_save(open_clickhouse(self.settings), self.settings.runtime)
        except Exception as exc:
            self.post_message(LauncherGates(None, f"gates failed: {redact(str(exc))[:200]}", time.time()))
        else:
            self.post_message(LauncherGates(gates, "", time.time()))

    @on(LauncherGates)
    def show_gates(self, message: LauncherGates) -> None:
        if message.gates is not None:
            self.gates_view.set_gates(tuple(message.gates), message.ts)
        else:
            self.gates_view.gates_error = message.error
        self.query_one("#gates", GatesPanel).show(self.gates_view)

    @work(group="scores", thread=True, exit_on_error=False)
    def read_scores(self) -> None:
        from engine.last_result import last_path, load_last

        assert self.settings is not None
        summary = load_last(self.settings.runtime, "score")
        if summary is not None and {"variants", "bootstrap", "missing", "invalid", "scored"} <= set(summary):
            self.post_message(ScoresRead(summary, ""))
        elif last_path(self.settings.runtime, "score").exists():
            self.post_message(ScoresRead(None, "runtime/score.last.json is not a readable scoring summary"))
        else:
            self.post_message(ScoresRead(None, "no scores yet: choose Score forecasts (or run `opsconsole score`)"))

    @on(ScoresRead)
    def show_scores(self, message: ScoresRead) -> None:
        from console.tui.scores import ScoresScreen

        if message.summary is None:
            self.notify(message.error, severity="warning", timeout=8)
            return
        self.app.push_screen(ScoresScreen(message.summary))

    # --- starting things -----------------------------------------------------------------------------
    @on(OptionList.OptionSelected)
    def selected(self, event: OptionList.OptionSelected) -> None:
        if event.option_list.id == "running":
            self.app.attach_job(event.option.id or "")  # type: ignore[attr-defined]
            return
        self.start(event.option.id or "")

    def action_start_selected(self) -> None:
        # Enter is a priority binding, so it arrives here whichever list has focus: on the Running
        # list it attaches, as that list says (before, it started the highlighted Start entry).
        running = self.query_one("#running", OptionList)
        if running.has_focus:
            if running.option_count:  # nothing highlighted yet (focus just arrived): the first job
                index = running.highlighted if running.highlighted is not None else 0
                self.app.attach_job(running.get_option_at_index(index).id or "")  # type: ignore[attr-defined]
            return
        ol = self.query_one("#entries", OptionList)
        if ol.highlighted is not None:
            self.start(ol.get_option_at_index(ol.highlighted).id or "")

    def start(self, entry_id: str) -> None:
        entry = next((e for e in ENTRIES if e.id == entry_id), None)
        if entry is None or not self.available.get(entry_id):
            return
        if self.settings is None:
            self.notify("no settings loaded", severity="error")
            return
        if entry.id == "scores":
            self.read_scores()
            return
        if entry.factory is None:
            self.query_one("#gates", GatesPanel).show(self.gates_view, refreshing=True)
            self.fetch_gates()
            return
        if entry.destructive:
            def answered(yes: bool | None) -> None:
                if yes:
                    self.launch(entry)

            self.app.push_screen(ConfirmScreen(f"Start {entry.title}?", entry.help + ".", yes="Start"), answered)
            return
        self.launch(entry)

    def launch(self, entry: Entry) -> None:
        assert self.settings is not None and entry.factory is not None
        try:
            job = entry.factory(self.settings)
        except Exception as exc:  # a job that cannot be built says why, the launcher stays
            self.notify(redact(f"{entry.title}: {exc}"), severity="error", timeout=15)
            return
        argv = ARGV.get(entry.id)
        if getattr(self.app, "detach_jobs", False) and argv is not None:
            # Its own process: it outlives this console; the console attaches to it.
            self.app.start_detached(argv(self.settings), job.name)  # type: ignore[attr-defined]
            return
        self.app.start_job(job)  # type: ignore[attr-defined]

    def action_toggle_theme(self) -> None:
        self.app.action_toggle_theme()  # type: ignore[attr-defined]

    def action_help(self) -> None:
        self.app.push_screen(HelpScreen("Launcher", LAUNCHER_ACTIONS))

    def action_quit_console(self) -> None:
        self.app.exit(0)


__all__ = ["LauncherScreen", "ENTRIES", "read_info", "clock_text"]
