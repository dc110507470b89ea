"""Launcher, help/palette derived from one action table, the log pane's filter, and the panels
rendering from events alone (attached to a bus, no job)."""

from __future__ import annotations

import json

import pytest
from textual.command import CommandPalette

from console.tui.actions import JOB_ACTIONS, LAUNCHER_ACTIONS
from console.tui.app import OpsConsoleApp
from console.tui.job_screen import JobScreen
from console.tui.launcher import LauncherScreen
from console.tui.modals import ConfirmScreen, FilterScreen, HelpScreen
from console.tui.widgets import KeysFooter, LogPane
from engine.events import JobState, LogLine
from engine.settings import load_settings
from tests.tui.scenarios import T0, attached_app, feed, rounds_for

pytestmark = pytest.mark.anyio


@pytest.fixture
def light_settings(tmp_path):
    return load_settings(runtime_dir=tmp_path / "runtime")


def test_every_action_has_an_id_a_key_and_a_handler() -> None:
    for table, screen in ((JOB_ACTIONS, JobScreen), (LAUNCHER_ACTIONS, LauncherScreen)):
        ids = [a.id for a in table]
        assert len(ids) == len(set(ids))
        for a in table:
            binding = a.binding()
            assert binding.id == f"opsconsole.{a.id}" and binding.description and a.help
            assert callable(getattr(screen, f"action_{a.action}", None)), a
        bound = {b.action for b in screen.BINDINGS}
        assert bound == {a.action for a in table}
    assert [a.id for a in JOB_ACTIONS if a.destructive] == ["stop"]


async def test_help_screen_and_palette_list_the_same_actions() -> None:
    app = attached_app("selftest")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        table = app.screen.query_one("#help-table")
        labels = [str(table.get_row_at(i)[1]) for i in range(table.row_count)]
        assert labels == [a.label + (" (asks first)" if a.destructive else "") for a in JOB_ACTIONS]
        await pilot.press("escape")
        assert app.screen is screen
        titles = [c.title for c in app.get_system_commands(screen)]
        for a in JOB_ACTIONS:
            assert f"{a.label} ({a.key_display})" in titles
        assert "Quit" not in titles  # the palette's quit would skip the confirmation
        await pilot.press("ctrl+p")
        assert isinstance(app.screen, CommandPalette)
        await pilot.press("escape")


async def test_palette_command_runs_the_same_action() -> None:
    app = attached_app("selftest")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        command = next(c for c in app.get_system_commands(screen) if c.title.startswith("Logs"))
        await command.callback()
        await pilot.pause()
        assert screen.query_one("#tabs").active == "logs-tab"


async def test_log_filter_by_text_and_level() -> None:
    app = attached_app("selftest")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        levels = ["DEBUG", "INFO", "WARNING", "ERROR"]
        for i in range(2000):
            screen.session.bus.publish(LogLine(job="selftest", ts=T0 + i, level=levels[i % 4], message=f"line {i} wallet-{i % 7}"))
        await screen.wait_for(lambda v: v.last_ts >= T0 + 1999)
        screen.flush()
        pane = screen.query_one("#log-full", LogPane)
        log = pane.query_one("#log")
        assert log.line_count == 0  # a hidden Logs tab keeps its lines and writes them when shown
        await pilot.press("l")
        await pilot.pause()
        assert log.line_count == 2000

        await pilot.press("slash")
        modal = app.screen
        assert isinstance(modal, FilterScreen)
        modal.query_one("#filter-text").value = "WALLET-3"
        modal.query_one("#filter-level").value = 2  # WARNING and up
        await pilot.press("enter")
        assert app.screen is screen and screen.query_one("#tabs").active == "logs-tab"
        shown = list(log.lines)
        expected = [i for i in range(2000) if i % 7 == 3 and i % 4 >= 2]
        assert len(shown) == len(expected)
        assert all("wallet-3" in line and ("WARNING" in line or "ERROR" in line) for line in shown)

        # New lines are filtered on arrival too.
        screen.session.bus.publish(LogLine(job="selftest", ts=T0 + 3000, level="ERROR", message="boom wallet-3"))
        screen.session.bus.publish(LogLine(job="selftest", ts=T0 + 3001, level="ERROR", message="boom wallet-4"))
        await screen.wait_for(lambda v: v.last_ts >= T0 + 3001)
        screen.flush()
        assert log.line_count == len(expected) + 1

        # Clearing the filter shows everything again, newest last.
        await pilot.press("slash")
        await pilot.click("#clear")
        assert log.line_count == 2002
        assert "boom wallet-4" in log.lines[-1]


async def test_panels_render_from_events_alone() -> None:
    app = attached_app("enrichment")
    async with app.run_test(size=(160, 48)) as pilot:
        screen = app.screen
        await feed(screen, screen.session.bus, rounds_for("enrichment"))
        await pilot.pause()
        v = screen.view
        assert v.state is JobState.PAUSED and v.shows("gates") and not v.shows("pipeline")
        assert v.steps["D"].rate is not None and len(v.steps["D"].rates) > 3
        assert [g.status for g in v.gates] == ["PASS", "WARN", "FAIL", "WARN", "INFO"]
        assert v.mutations_pending == 2 and len(v.mutation_details) == 2
        table = screen.query_one("#mutations-table")
        assert table.row_count == 2
        fail_cell = table.get_row("mutation_42.txt")[-1]
        assert "Memory limit" in str(fail_cell) and "red" in str(fail_cell.style)
        header = str(screen.query_one("#header").render())
        assert "PAUSED" in header and "ETA" in header
        assert not screen.query_one("#pipeline").display


async def test_launcher_shows_last_checkpoint_and_runs_a_job(light_settings) -> None:
    runtime = light_settings.runtime
    runtime.mkdir(parents=True)
    (runtime / "full-enrichment.state.json").write_text(json.dumps(
        {"job": "full-enrichment", "step": "D", "batch_idx": 150, "pairs_done": 45000, "last_mutations": 250,
         "updated_at": "2025-10-28T12:00:00.000Z"}))
    app = OpsConsoleApp(light_settings, gates_interval=None)
    async with app.run_test(size=(120, 40)) as pilot:
        launcher = app.screen
        assert isinstance(launcher, LauncherScreen)
        await app.workers.wait_for_complete()
        await pilot.pause()
        info = str(launcher.query_one("#checkpoint-info").render())
        assert "45000" in info and "150" in info
        assert "no pipeline summary" in str(launcher.query_one("#summary-info").render())

        # The demo replaces data: it asks first.
        launcher.start("demo")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        assert app.screen is launcher

        # Keyboard: move to "Selftest" and press enter.
        entries = launcher.query_one("#entries")
        entries.focus()
        while entries.get_option_at_index(entries.highlighted).id != "selftest":
            await pilot.press("down")
        await pilot.press("enter")
        screen = app.screen
        assert isinstance(screen, JobScreen) and screen.from_launcher
        screen.session.control.update_live({"unit_seconds": 0})
        await screen.wait_for(lambda v: v.state.final)
        await pilot.pause()
        await pilot.press("q")  # done: back to the launcher, not out of the app
        assert app.screen is launcher
        await pilot.press("q")
    assert app.return_code == 0


async def test_mouse_tabs_and_footer_keys() -> None:
    app = attached_app("pipeline")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        await feed(screen, screen.session.bus, rounds_for("pipeline"))
        await pilot.click("#--content-tab-failures-tab")
        assert screen.query_one("#tabs").active == "failures-tab"
        await pilot.click("#--content-tab-overview")
        assert screen.query_one("#tabs").active == "overview"
        # Footer keys are clickable too: "Help" opens the help screen.
        footer = screen.query_one(KeysFooter)
        x = next(start for start, _end, item in footer.spans if item.label == "Help")
        await pilot.click(KeysFooter, offset=(x + 1, 0))
        assert isinstance(app.screen, HelpScreen)


async def test_experiment_overrides_are_validated_before_they_apply() -> None:
    from console.tui.modals import EditLiveScreen
    from console.tui.session import JobSession
    from engine.pipeline.job import PipelineLive

    session = JobSession.attach("pipeline", PipelineLive())
    app = OpsConsoleApp(None, session=session, gates_interval=None)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        await pilot.press("e")
        modal = app.screen
        assert isinstance(modal, EditLiveScreen)
        area = modal.query_one("#field-experiment_overrides")
        area.text = "nope.model=x"
        await pilot.press("ctrl+s")
        assert app.screen is modal  # refused: the dialog stays and says why
        assert "suite:stage:variant" in str(modal.query_one("#edit-error").render())
        assert session.control.live.experiment_overrides == []

        area.text = "gemini:forecast:gemini_simple.model=gemini-2.5-flash\n\n"
        await pilot.press("ctrl+s")
        assert app.screen is screen
        assert session.control.live.experiment_overrides == ["gemini:forecast:gemini_simple.model=gemini-2.5-flash"]
        await screen.wait_for(lambda v: v.live.get("experiment_overrides") == session.control.live.experiment_overrides)


def test_console_log_lines_have_the_engine_wording() -> None:
    from console.tui.widgets import event_line
    from engine.event_text import event_text
    from engine.events import CheckpointSaved, Failure, LogLine, StateChanged
    from engine.runner import format_event

    events = [
        LogLine(job="j", ts=T0, level="ERROR", message="market-877: outcomes list is empty", step="events"),
        StateChanged(job="j", ts=T0, state=JobState.PAUSED, reason="holding at a unit boundary"),
        Failure(job="j", ts=T0, where="market-531", reason="openai: 429", retriable=True),
        CheckpointSaved(job="j", ts=T0, step="D", where="local", cursor={"i": 1}, batch_idx=1),
    ]
    for event in events:
        parts = event_text(event)
        line = event_line(event)
        plain = format_event(event)
        assert parts is not None and line is not None and plain is not None
        # The same text after each renderer's own framing (clock and [step] here; timestamp and job there).
        assert line[1].endswith(" " + parts.text) and plain.endswith(" " + parts.text)
        assert line[0] == parts.rank
    assert event_line(events[0])[1] == "14:13:20 ERROR   [events] market-877: outcomes list is empty"  # type: ignore[index]


def test_launcher_marks_a_step_d_whose_process_is_gone_as_interrupted(tmp_path) -> None:
    """A checkpoint saying running with no live job process is offered for resume, not shown as live."""
    import json
    import os

    from console.tui.launcher import read_info

    runtime = tmp_path / "rt"
    runtime.mkdir()
    (runtime / "full-enrichment.state.json").write_text(json.dumps({"status": "running", "step": "D", "batch_idx": 7}))
    (runtime / "full-enrichment.pid").write_text("999999999\n")  # no such process
    checkpoint, _ = read_info(runtime)
    assert "interrupted" in checkpoint and "Step D resumes it" in checkpoint
    assert "status: [b]interrupted" in checkpoint and "running" not in checkpoint
    (runtime / "full-enrichment.pid").write_text(f"{os.getpid()}\n")  # alive: not interrupted
    checkpoint, _ = read_info(runtime)
    assert "interrupted" not in checkpoint


async def test_launcher_opens_the_scores_of_the_last_scoring_run(light_settings) -> None:
    from console.tui.scores import ScoresScreen
    from engine.last_result import save_last
    from engine.scoring.job import Tally, build_summary

    runtime = light_settings.runtime
    runtime.mkdir(parents=True)
    app = OpsConsoleApp(light_settings, gates_interval=None)
    async with app.run_test(size=(120, 40)) as pilot:
        launcher = app.screen
        assert isinstance(launcher, LauncherScreen)
        launcher.start("scores")  # nothing scored yet: it says so and stays
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.screen is launcher
        assert any("no scores yet" in n.message for n in app._notifications)

        summary = build_summary([], Tally(scored=0, pending=3), status="completed", source="snapshot",
                                resamples=2000, seed=1)
        save_last(runtime, "score", summary)
        launcher.start("scores")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert isinstance(app.screen, ScoresScreen)
        assert "pending 3" in str(app.screen.query_one("#counts").render())
        await pilot.press("q")  # back to the launcher
        assert app.screen is launcher


async def test_launcher_shows_the_last_gates_computed_here(light_settings) -> None:
    from engine.enrichment.gates_record import save_last_gates
    from engine.events import GateResult

    runtime = light_settings.runtime
    runtime.mkdir(parents=True)
    save_last_gates(runtime, [GateResult(name="pnl_nulls", status="FAIL", actual=7, expected="0")], 1_700_000_000.0)
    app = OpsConsoleApp(light_settings, gates_interval=None)
    async with app.run_test(size=(120, 40)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        panel = str(app.screen.query_one("#gates-body").render())
        assert "pnl_nulls" in panel and "FAIL" in panel


def test_launcher_info_reads_are_bounded(tmp_path) -> None:
    """A runaway state or summary file is named as unreadable, never read whole into the launcher."""
    from console.tui.launcher import read_info

    runtime = tmp_path / "rt"
    runtime.mkdir()
    big = b"[" + b"0," * (3 * 1024 * 1024) + b"0]"  # about 6 MiB of valid JSON
    (runtime / "full-enrichment.state.json").write_bytes(big)
    (runtime / "pipeline.last.json").write_bytes(big)
    checkpoint, summary = read_info(runtime)
    assert "unreadable checkpoint" in checkpoint and "larger than" in checkpoint
    assert "unreadable summary" in summary and "larger than" in summary
    (runtime / "full-enrichment.state.json").write_text("[1, 2]")
    checkpoint, _ = read_info(runtime)
    assert "not a checkpoint" in checkpoint


async def test_launcher_follows_a_running_jobs_checkpoint(light_settings) -> None:
    from console.tui.launcher import RunningRead

    runtime = light_settings.runtime
    runtime.mkdir(parents=True)
    state = runtime / "full-enrichment.state.json"
    state.write_text(json.dumps({"job": "full-enrichment", "step": "D", "batch_idx": 150, "pairs_done": 45000}))
    app = OpsConsoleApp(light_settings, gates_interval=None)
    async with app.run_test(size=(120, 40)) as pilot:
        launcher = app.screen
        assert isinstance(launcher, LauncherScreen)
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert "45000" in str(launcher.query_one("#checkpoint-info").render())
        state.write_text(json.dumps({"job": "full-enrichment", "step": "D", "batch_idx": 151, "pairs_done": 45300}))
        launcher.post_message(RunningRead([("full-enrichment", "running · Step D")]))  # a poll saw it running
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert "45300" in str(launcher.query_one("#checkpoint-info").render())


def test_an_attached_console_dates_the_state_from_when_the_job_entered_it() -> None:
    """The STATE line and header of a fresh attach say when the job was paused, not when the
    console attached or the job's last line was written."""
    from console.tui.remote import snapshot_events
    from engine.events import JobStarted, LogLine, StateChanged
    from console.tui.model import JobView
    from engine.job_snapshot import JobSnapshot, Snapshot

    job = JobSnapshot("selftest", started_at=50.0)
    job(JobStarted(job="selftest", panels=("steps",), ts=50.0))
    job(StateChanged(job="selftest", state=JobState.PAUSED, reason="holding", ts=100.0))
    job(LogLine(job="selftest", level="INFO", message="still here", ts=200.0))
    snap = Snapshot.from_dict(job.to_dict())
    assert snap.state_ts == 100.0
    events = snapshot_events(snap)
    # In time order: the log shows "paused" before the line written after it, as the job's own
    # log does; the header ends on the one state the snapshot has.
    assert [type(e).__name__ for e in events] == ["JobStarted", "StateChanged", "LogLine"]
    state = events[1]
    assert isinstance(state, StateChanged) and state.state is JobState.PAUSED and state.ts == 100.0
    view = JobView("selftest")
    for event in events:
        view.apply(event)
    assert view.state is JobState.PAUSED
    assert snap.replay()[-1].ts == 100.0
    older = job.to_dict()
    del older["state_ts"]  # a job from before state_ts: the newest thing it reported
    assert snapshot_events(Snapshot.from_dict(older))[-1].ts == 200.0


def test_the_launchers_step_d_resumes_only_an_unfinished_run(tmp_path) -> None:
    """`--resume` only when the checkpoint says the run did not finish; after a complete run (or
    with no readable checkpoint) a plain run, which is incremental after a complete one."""
    import json

    from console.tui.launcher import ARGV, ENTRIES, step_d_resumes
    from engine.settings import load_settings

    settings = load_settings(runtime_dir=tmp_path / "rt")
    runtime = settings.runtime
    runtime.mkdir(exist_ok=True)
    state = runtime / "full-enrichment.state.json"
    assert not step_d_resumes(runtime)  # no checkpoint: the first run
    for status, resumes in (("done", False), ("stopped", True), ("running", True), ("failed", True)):
        state.write_text(json.dumps({"status": status, "step": "D", "pairs_done": 5}))
        assert step_d_resumes(runtime) is resumes, status
        assert ARGV["step-d"](settings) == ["enrich", "--step", "D", *(["--resume"] if resumes else [])]
    state.write_text("{not json")
    assert not step_d_resumes(runtime)  # unreadable: a plain run replaces it
    assert ARGV["daily"](settings) == ["enrich", "--step", "daily"]
    daily = next(e for e in ENTRIES if e.id == "daily")
    assert daily.factory is not None and type(daily.factory(settings)).__name__ == "DailyEnrichmentJob"
