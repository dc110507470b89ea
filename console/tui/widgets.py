"""Panels of the job screen. Each renders from a `JobView`; none talks to a store or a job."""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any

from rich.highlighter import Highlighter
from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.widget import Widget
from textual.screen import Screen
from textual.widgets import DataTable, Log, ProgressBar, Sparkline, Static

from console.tui.model import JobView, fmt_count, fmt_duration
from engine.event_text import LEVELS, event_text
from engine.events import Event, JobState, Progress
from engine.redact import redact

STATE_STYLE = {
    JobState.STARTING: "$text-muted",
    JobState.RUNNING: "$success",
    JobState.PAUSING: "$warning",
    JobState.PAUSED: "$warning",
    JobState.STOPPING: "$warning",
    JobState.STOPPED: "$secondary",
    JobState.DONE: "$success",
    JobState.FAILED: "$error",
    JobState.ABORTED: "$error",
}
GATE_STYLE = {"PASS": "$success", "WARN": "$warning", "FAIL": "$error", "INFO": "$accent"}
GATE_MARK = {"PASS": "✔", "WARN": "!", "FAIL": "✘", "INFO": "i"}


def clock_text(ts: float | None) -> str:
    if ts is None:
        return "—"
    return _clock_second(int(ts))


@lru_cache(maxsize=1024)
def _clock_second(second: int) -> str:
    # Log lines arrive by the thousand within the same second: format each second once.
    return datetime.fromtimestamp(second, tz=timezone.utc).strftime("%H:%M:%S")


def short_json(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, default=str, separators=(",", ":"))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def esc(text: Any) -> str:
    """Escape operator-invisible markup in values coming from jobs (market ids, reasons)."""
    # Escape every "[" (textual's escape() leaves some, e.g. "['", which then parse as tags).
    return redact(str(text)).replace("[", "\\[")


def set_border_text(widget: Widget, *, title: str | None = None, subtitle: str | None = None) -> None:
    """Set a border title or subtitle only when it changes: Textual repaints the whole widget on
    every assignment, and the panels are re-shown once a second."""
    for attr, text in (("border_title", title), ("border_subtitle", subtitle)):
        if text is not None and getattr(widget, f"_shown_{attr}", None) != text:
            setattr(widget, f"_shown_{attr}", text)
            setattr(widget, attr, text)


def spark_data(values: Iterable[float]) -> list[float]:
    """Sparkline data: Textual draws a single value as a full-height bar (a first "pending 0" read
    as a wall of pending mutations), so one value is drawn as a flat line, like several equal ones."""
    data = list(values)
    return data * 2 if len(data) == 1 else data


class QuietProgressBar(ProgressBar):
    """A ProgressBar that repaints only when it is given progress. Textual's own bar also calls
    `update()` once a second, to refresh an ETA we never show; that repaint fell between the
    screen's own ticks and cost every console a second frame a second."""

    def update(self, **changes: Any) -> None:
        if changes:
            super().update(**changes)


@dataclass(frozen=True)
class FooterItem:
    key: str  # the Textual key to simulate on a click
    display: str
    label: str
    enabled: bool


class KeysFooter(Widget, can_focus=False):
    """The keys that apply now, on one line drawn as text (the look of Textual's compact Footer).

    The keys follow the job's state, so the bindings change with every pause and resume.
    Textual's Footer remounts a widget per key each time: ~30 ms of CPU here, and the discarded
    widgets were cyclic garbage that made the console's full garbage collections run long (up to
    ~180 ms, measured with a gc callback during the key benchmark), holding up the job's answer to
    the key. This footer redraws one line, and only when what it shows changes."""

    ALLOW_SELECT = False
    DEFAULT_CSS = """
    KeysFooter {
        dock: bottom;
        height: 1;
        color: $footer-foreground;
        background: $footer-background;
    }
    """

    def __init__(self, *, compact: bool = True, id: str | None = None) -> None:
        super().__init__(id=id)
        self.compact = compact  # one space between keys (False: two, as Textual's roomy Footer)
        self.items: tuple[FooterItem, ...] = ()
        self.palette: FooterItem | None = None
        self.spans: list[tuple[int, int, FooterItem]] = []

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self.bindings_changed)
        self.bindings_changed(self.screen)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def bindings_changed(self, screen: Screen[Any]) -> None:
        items: dict[str, FooterItem] = {}  # one per action: the first of its keys
        palette: FooterItem | None = None
        app = self.app
        for key, active in screen.active_bindings.items():
            binding, enabled = active.binding, active.enabled
            item = FooterItem(key, app.get_key_display(binding), binding.description, enabled)
            if key == app.COMMAND_PALETTE_BINDING and app.ENABLE_COMMAND_PALETTE:
                palette = item
            elif binding.show and binding.action not in items:
                items[binding.action] = item
        shown = tuple(items.values())
        if (shown, palette) != (self.items, self.palette):
            self.items, self.palette = shown, palette
            self.refresh()

    def _piece(self, item: FooterItem) -> Content:
        key = Content.styled(item.display, "bold $footer-key-foreground")
        piece = Content.assemble(key, " ", Content.styled(item.label, "$footer-description-foreground"))
        return piece.stylize("dim") if not item.enabled else piece

    def render(self) -> Content:
        width = self.size.width
        gap = " " if self.compact else "  "
        right = Content.assemble(Content.styled("▏", "dim"), self._piece(self.palette), " ") if self.palette else Content("")
        room = max(0, width - right.cell_length)
        left: list[Content] = []
        self.spans = []
        x = 0 if self.compact else 1
        for item in self.items:
            piece = self._piece(item)
            if x + piece.cell_length > room:
                break
            left.append(piece)
            self.spans.append((x, x + piece.cell_length, item))
            x += piece.cell_length + len(gap)
        line = Content.assemble(" " if not self.compact else "", Content(gap).join(left))
        if self.palette is not None:
            self.spans.append((width - right.cell_length + 1, width - 1, self.palette))
        padding = Content(" " * max(0, room - line.cell_length))
        return Content.assemble(line, padding, right)

    def on_click(self, event: events.Click) -> None:
        for start, end, item in self.spans:
            if start <= event.x < end:
                if item.enabled:
                    self.app.simulate_key(item.key)
                else:
                    self.app.bell()
                return


class Markup(Static):
    """A Static that re-renders only when its markup changes, and asks for a layout pass only
    when its line count changes: layout is the expensive part of a repaint."""

    _markup: str | None = None

    def set(self, markup: str) -> None:
        if markup == self._markup:
            return
        relayout = self._markup is None or markup.count("\n") != self._markup.count("\n")
        self._markup = markup
        self.update(Content.from_markup(markup), layout=relayout)


class StatusHeader(Markup):
    """One line: job, state, elapsed, ETA, stores. Always visible."""

    def show(self, view: JobView, now: float, stores: str, note: str = "") -> None:
        style = STATE_STYLE.get(view.state, "$text")
        parts = [
            "[b]OPS CONSOLE[/]",
            f"[b]{esc(view.job)}[/]",
            f"[b reverse {style}] {view.state.value.upper()} [/]",
            f"elapsed {fmt_duration(view.elapsed_s(now))}",
            f"ETA {fmt_duration(view.eta_s())}",
            esc(stores),
        ]
        if note:
            parts.append(f"[i]{esc(note)}[/]")
        self.set(" │ ".join(parts))
        for state in JobState:
            self.set_class(view.state is state, f"state-{state.value}")


class ProgressPanel(Vertical):
    """The active step: bar, counts, throughput with a sparkline, checkpoint and live settings."""

    def compose(self) -> ComposeResult:
        yield Markup(id="steps-line")
        yield QuietProgressBar(total=None, show_eta=False, id="bar")
        yield Markup(id="progress-detail")
        yield Sparkline([], summary_function=max, id="throughput-spark")
        yield Markup(id="checkpoint-line")

    def on_mount(self) -> None:
        self.border_title = "Progress"

    def show(self, view: JobView) -> None:
        sp = view.active
        steps_line = self.query_one("#steps-line", Markup)
        if view.shows("steps"):
            marks = []
            for step in "ABCDE":
                s = view.steps.get(step)
                if s is None:
                    marks.append(f"[dim]{step} ·[/]")
                elif s.total is not None and s.done >= s.total:
                    marks.append(f"[$success]{step} ✔[/]")
                elif step == view.current_step:
                    marks.append(f"[b $accent]{step} ▶[/]")
                else:
                    marks.append(f"{step} …")
            steps_line.set("steps  " + "  ".join(marks))
        else:
            steps_line.set(f"step  [b]{esc(sp.step) if sp else '—'}[/]")
        bar = self.query_one("#bar", ProgressBar)
        detail = self.query_one("#progress-detail", Markup)
        if sp is None and view.state.final:
            # Ended without reporting progress (nothing to do): a still bar, not a "working" animation.
            bar.update(total=1, progress=1 if view.state is JobState.DONE else 0)
            detail.set("no progress was reported")
        elif sp is None:
            bar.update(total=None, progress=0)
            detail.set("waiting for the first progress report…")
        else:
            bar.update(total=sp.total, progress=sp.done)
            set_border_text(self, title=f"Step {sp.step}" if view.shows("steps") else f"Progress · {sp.step}")
            lines = [f"{fmt_count(sp.done)} / {fmt_count(sp.total)} {esc(sp.unit)}"]
            d = sp.detail
            if "batch_idx" in d:
                total = f"/{fmt_count(d.get('batches_total'))}" if d.get("batches_total") is not None else ""
                lines[0] += f" · batch {fmt_count(d['batch_idx'])}{total}"
            if "in_flight" in d:
                lines[0] += f" · in flight {fmt_count(d['in_flight'])}"
            rate = sp.rate
            second = [f"[b]{fmt_count(round(rate, 1)) if rate is not None else '—'}[/] {esc(sp.unit)}/s"]
            if "rows_written" in d:
                second.append(f"{fmt_count(d['rows_written'])} rows")
            if d.get("write_strategy"):
                second.append(esc(d["write_strategy"]))
            lines.append(" · ".join(second))
            detail.set("\n".join(lines))
            self.query_one("#throughput-spark", Sparkline).data = spark_data(sp.rates)
        cp = view.checkpoint
        live = view.live
        cp_lines = ["checkpoint —"]
        if cp is not None:
            cp_lines = [f"checkpoint [b]{clock_text(cp.ts)}[/] {esc(cp.where)} · batch {fmt_count(cp.batch_idx)}",
                        f"cursor {esc(short_json(cp.cursor, 120))}"]
        if "batch_size" in live or "mutation_wait_every" in live:
            parts = []
            if "batch_size" in live:
                parts.append(f"batch size [b]{fmt_count(live['batch_size'])}[/]")
            if "mutation_wait_every" in live:
                parts.append(f"mutation wait every [b]{fmt_count(live['mutation_wait_every'])}[/]")
            cp_lines.append(" · ".join(parts))
        elif live:
            cp_lines.append("live " + ", ".join(f"{esc(k)}=[b]{esc(v)}[/]" for k, v in live.items()))
        cp_text = "\n".join(cp_lines)
        self.query_one("#checkpoint-line", Markup).set(cp_text)


class PipelinePanel(Vertical):
    """LLM usage and per-suite research/forecast counts from the pipeline's progress detail."""

    COLUMNS = ("suite", "res ok", "res fail", "fc ok", "fc fail", "skip")
    KEYS = ("research_ok", "research_failed", "forecast_ok", "forecast_failed", "skipped")

    def compose(self) -> ComposeResult:
        yield Markup(id="llm-line")
        table: DataTable[Any] = DataTable(id="suites-table", cursor_type="row", zebra_stripes=True)
        yield table

    def on_mount(self) -> None:
        self.border_title = "Pipeline"
        table = self.query_one("#suites-table", DataTable)
        for col in self.COLUMNS:
            table.add_column(col, key=col)

    def show(self, view: JobView) -> None:
        sp = view.steps.get("events")
        d = sp.detail if sp else {}
        cost = d.get("cost_usd")
        self.query_one("#llm-line", Markup).set((
            f"LLM calls [b]{fmt_count(d.get('llm_calls'))}[/] · tokens [b]{fmt_count(d.get('tokens'))}[/]\n"
            f"cost [b]{'—' if cost is None else f'${cost:,.4f}'}[/] · in flight [b]{fmt_count(d.get('in_flight'))}[/] · "
            f"failures [b]{len(view.failures)}[/]"
        ))
        table = self.query_one("#suites-table", DataTable)
        suites = d.get("suites") or {}
        for suite, stats in sorted(suites.items()):
            values = [fmt_count(stats.get(k, 0)) for k in self.KEYS]
            if suite in table.rows:
                # Update cells in place so the table keeps its cursor and does not flicker.
                for key, value in zip(self.KEYS, values, strict=False):
                    col = self.COLUMNS[self.KEYS.index(key) + 1]
                    table.update_cell(suite, col, value)
            else:
                table.add_row(esc(suite), *values, key=suite)


class GatesPanel(Vertical):
    """The five gates with PASS/WARN/FAIL colours."""

    def __init__(self, *, hint: str = "press g to compute them", **kw: Any) -> None:
        super().__init__(**kw)
        self.hint = hint

    def compose(self) -> ComposeResult:
        yield Markup(id="gates-body")

    def on_mount(self) -> None:
        self.border_title = "Gates"

    def show(self, view: JobView, refreshing: bool = False, held: bool = False) -> None:
        if view.gates_error:
            body = f"[$error]{esc(view.gates_error)}[/]"
        elif not view.gates:
            body = f"[dim]no gate results yet — {esc(self.hint)}[/]"
        else:
            lines = []
            for g in view.gates:
                style = GATE_STYLE.get(g.status, "$text")
                lines.append(f"[b {style}]{GATE_MARK.get(g.status, ' ')} {g.status:<4}[/] {esc(g.name)} "
                             f"[b]{esc(g.actual)}[/] [dim]expect {esc(g.expected)}[/]")
            body = "\n".join(lines)
        self.query_one("#gates-body", Markup).set(body)
        when = clock_text(view.gates_ts) if view.gates_ts else "never"
        subtitle = "refreshing…" if refreshing else f"as of {when}"
        if held and not refreshing:
            subtitle += " · auto-refresh after Step D (g: now)"
        set_border_text(self, subtitle=subtitle)


class MutationsPanel(Vertical):
    """Pending mutation count with its recent history."""

    def compose(self) -> ComposeResult:
        yield Markup(id="mutations-line")
        yield Sparkline([], summary_function=max, id="mutations-spark")

    def on_mount(self) -> None:
        self.border_title = "Mutations"

    def show(self, view: JobView) -> None:
        pending = view.mutations_pending
        failing = sum(1 for m in view.mutation_details if m.latest_fail_reason)
        text = f"pending [b]{fmt_count(pending)}[/]"
        if failing:
            text += f" · [b $error]{failing} failing[/]"
        if pending is None:
            text = "[dim]no mutation status yet[/]"
        self.query_one("#mutations-line", Markup).set(text)
        self.query_one("#mutations-spark", Sparkline).data = spark_data(view.mutation_history)


class FailuresSummary(Markup):
    def show(self, view: JobView) -> None:
        if not view.failures:
            self.set("[dim]no failures[/]")
            return
        lines = [f"[b $error]{len(view.failures)} failure(s)[/] — press f for the table"]
        for f in view.failures[-3:]:
            lines.append(f"[$error]✘[/] {esc(f.where)}: {esc(f.reason)}")
        self.set("\n".join(lines))


class MutationsTable(DataTable[Any]):
    COLUMNS = ("mutation", "table", "command", "age", "parts to do", "latest fail reason")

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = True
        for col in self.COLUMNS:
            self.add_column(col, key=col)

    def show(self, view: JobView) -> None:
        wanted = {m.mutation_id: m for m in view.mutation_details}
        for key in [k for k in self.rows if k.value not in wanted]:
            self.remove_row(key)
        for mid, m in wanted.items():
            fail = Text(redact(m.latest_fail_reason), style="bold red") if m.latest_fail_reason else Text("")
            cells = [Text(mid), Text(f"{m.database}.{m.table}"), Text(redact(m.command)[:80]),
                     Text(fmt_duration(m.age_s)), Text(fmt_count(m.parts_to_do)), fail]
            if mid in self.rows:
                for col, value in zip(self.COLUMNS, cells, strict=False):
                    self.update_cell(mid, col, value)
            else:
                self.add_row(*cells, key=mid)


class FailuresTable(DataTable[Any]):
    COLUMNS = ("time", "market / where", "retriable", "step", "reason")

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = True
        self.shown = 0
        for col in self.COLUMNS:
            self.add_column(col, key=col)

    def show(self, view: JobView) -> None:
        # Failures only ever accumulate: append the new ones, never rebuild.
        for f in view.failures[self.shown:]:
            self.add_row(Text(clock_text(f.ts)), Text(redact(f.where)),
                         Text("yes", style="yellow") if f.retriable else Text("no", style="bold red"),
                         Text(f.step or "—"), Text(redact(f.reason), style="red"))
        self.shown = len(view.failures)


class LevelHighlighter(Highlighter):
    """Colours the level word of each log line; colours chosen to read on both themes."""

    RULES = (
        (re.compile(r"(?m)^\S+ (ERROR|FAILURE)\b"), "bold #e5484d"),
        (re.compile(r"(?m)^\S+ (WARNING)\b"), "bold #d08700"),
        (re.compile(r"(?m)^\S+ (STATE|SUMMARY)\b"), "bold #3e8fd6"),
        (re.compile(r"(?m)^\S+ (DEBUG|CHECKPT)\b"), "dim"),
        (re.compile(r"(?m)^\S+ (GATES)\b"), "bold #2f9e6a"),
    )

    def highlight(self, text: Text) -> None:
        plain = text.plain
        for pattern, style in self.RULES:
            for m in pattern.finditer(plain):
                text.stylize(style, m.start(1), m.end(1))


def event_line(event: Event) -> tuple[int, str] | None:
    """(level rank, text) of the log line for an event, or None for events that are not logged.

    The wording is the engine's (`engine.event_text`, the same as the log file's); the console
    frames it with the wall-clock time and leaves out the job's name (the screen shows one job).
    Progress is not logged here: the progress panel shows it."""
    if isinstance(event, Progress):
        return None
    parts = event_text(event, json_limit=200)
    if parts is None:
        return None
    step = f"[{parts.step}] " if parts.step else ""
    return parts.rank, f"{clock_text(event.ts)} {parts.tag:<7} {step}{parts.text}"


class LogTail(Static):
    """The overview's last lines: a plain Static showing exactly as many of the newest lines as fit.

    Cheaper than a scrolling Log and deterministic (no scroll position to race with), which keeps
    snapshots stable; the Logs tab has the full, scrollable, filterable log.
    """

    def __init__(self, *, keep: int = 200, min_level: int = 1, **kw: Any) -> None:
        super().__init__("", **kw)
        self.lines: deque[tuple[int, str]] = deque(maxlen=keep)
        self.min_level = min_level  # the overview skips DEBUG chatter (checkpoints, mutation polls)
        self.highlighter = LevelHighlighter()

    def append(self, lines: list[tuple[int, str]]) -> None:
        new = [(rank, text) for rank, text in lines if rank >= self.min_level]
        if new:
            self.lines.extend(new)
            self._render_tail()

    def on_resize(self) -> None:
        self._render_tail()

    def _render_tail(self) -> None:
        height = max(1, self.content_size.height)
        shown = [text for _, text in list(self.lines)[-height:]]
        text = Text("\n".join(shown), no_wrap=True, overflow="ellipsis")
        self.highlighter.highlight(text)
        self.update(text, layout=False)


class LogPane(Vertical):
    """A filterable log that stays fast with hundreds of thousands of lines.

    Every line is kept in a bounded buffer; the `Log` widget shows the lines that pass the filter.
    New lines are filtered on arrival and appended in one call per batch; changing the filter
    rewrites only the newest `max_lines` matches.
    """

    def __init__(self, *, max_lines: int = 20_000, buffer: int = 500_000, tail: bool = False, **kw: Any) -> None:
        super().__init__(**kw)
        self.max_lines = max_lines
        self.lines: deque[tuple[int, str]] = deque(maxlen=buffer)
        self.text_filter = ""
        self.min_level = 0
        self.tail = tail
        self._stale = False  # lines arrived while hidden and are not in the Log yet
        if tail:
            self.min_level = 1  # the overview's tail skips DEBUG chatter; the Logs tab has everything

    def compose(self) -> ComposeResult:
        if not self.tail:
            yield Markup(id="log-status")
        log = Log(max_lines=self.max_lines, highlight=True, id="log")
        log.highlighter = LevelHighlighter()
        yield log

    def on_mount(self) -> None:
        self._status()

    def on_show(self) -> None:
        if self._stale:
            self.set_filter(self.text_filter, self.min_level)  # the newest matches, as a filter change does

    def _matches(self, rank: int, text: str) -> bool:
        return rank >= self.min_level and (not self.text_filter or self.text_filter in text.lower())

    def append(self, lines: list[tuple[int, str]]) -> None:
        if not lines:
            return
        self.lines.extend(lines)
        if not self.is_on_screen:
            # In a hidden tab, writing to the Log would grow its virtual size and make every
            # frame a full layout of the screen (~15 ms at 160×48): keep the lines, write them
            # when the pane is shown.
            self._stale = True  # the status line too is brought up to date when shown
            return
        shown = [text for rank, text in lines if self._matches(rank, text)]
        if shown:
            log = self.query_one("#log", Log)
            log.write_lines(shown[-self.max_lines:])
            if self.tail:
                log.scroll_end(animate=False)
        self._status()

    def set_filter(self, text: str, min_level: int) -> None:
        self.text_filter = text.strip().lower()
        self.min_level = min_level
        self._stale = False
        picked: list[str] = []
        for rank, line in reversed(self.lines):
            if self._matches(rank, line):
                picked.append(line)
                if len(picked) >= self.max_lines:
                    break
        log = self.query_one("#log", Log)
        log.clear()
        log.write_lines(reversed(picked))
        self._status()

    def _status(self) -> None:
        if self.tail:
            return
        level = LEVELS[self.min_level]
        flt = f"text “{esc(self.text_filter)}”" if self.text_filter else "no text filter"
        self.query_one("#log-status", Markup).set((
            f"level ≥ [b]{level}[/] · {flt} · {fmt_count(len(self.lines))} lines · press / to filter"))
