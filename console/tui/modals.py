"""Modal screens: confirm, edit live settings, filter the log, help."""

from __future__ import annotations

import typing
from typing import Any, Literal

from pydantic import BaseModel
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.markup import escape
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Input, Label, Select, Static, TextArea

from console.tui.actions import Action
from engine.event_text import LEVELS
from engine.control import Control
from engine.errors import BadInput


class ConfirmScreen(ModalScreen[bool]):
    """Yes/no for anything destructive. `n`/escape is the safe answer."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes", id="opsconsole.confirm.yes"),
        Binding("n,escape", "answer(False)", "No", id="opsconsole.confirm.no"),
    ]

    def __init__(self, title: str, message: str, yes: str = "Yes") -> None:
        super().__init__(classes="modal")
        self.title_text = title
        self.message = message
        self.yes = yes

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog"):
            yield Label(Content.from_markup(f"[b]{escape(self.title_text)}[/]"), classes="dialog-title")
            yield Static(self.message, classes="dialog-body")
            with Horizontal(classes="dialog-buttons"):
                yield Button(f"{self.yes} (y)", variant="error", id="yes")
                yield Button("No (n)", variant="primary", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)


class QuitChoiceScreen(ModalScreen[str]):
    """Quitting a console attached to a running job: leave it running, stop it, or stay."""

    BINDINGS = [
        Binding("d", "answer('detach')", "Detach", id="opsconsole.quit.detach"),
        Binding("s", "answer('stop')", "Stop the job", id="opsconsole.quit.stop"),
        Binding("c,escape", "answer('cancel')", "Cancel", id="opsconsole.quit.cancel"),
    ]

    def __init__(self, job: str) -> None:
        super().__init__(classes="modal")
        self.job = job

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog"):
            yield Label(Content.from_markup(f"[b]Quit while {escape(self.job)} runs?[/]"), classes="dialog-title")
            yield Static("Detach: the job keeps running; `opsconsole attach` comes back to it.\n"
                         "Stop: the current unit finishes and is checkpointed, then the job exits.",
                         classes="dialog-body")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Detach (d)", variant="primary", id="detach")
                yield Button("Stop the job (s)", variant="error", id="stop")
                yield Button("Cancel (c)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#detach", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(str(event.button.id))

    def action_answer(self, value: str) -> None:
        self.dismiss(value)


def _field_kind(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin in (list, tuple):
        return "list"
    if annotation is int:
        return "int"
    if annotation is float:
        return "float"
    if annotation is bool:
        return "bool"
    return "str"


LIVE_HELP = {
    "batch_size": "Step D pairs per batch (applies from the next batch)",
    "mutation_wait_every": "wait for pending mutations every N batches",
    "experiment_overrides": "one `name.key=value` per line (runbook form); applies to events not yet started",
    "unit_seconds": "seconds per selftest unit",
}


class EditLiveScreen(ModalScreen[dict[str, Any] | None]):
    """Edit the job's live settings. Values are validated by `Control.update_live`; a rejected
    change leaves everything as it was and says why, and the dialog stays open."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="opsconsole.edit.cancel"),
        Binding("ctrl+s", "apply", "Apply", id="opsconsole.edit.apply"),
    ]

    def __init__(self, control: Control[Any]) -> None:
        super().__init__(classes="modal")
        self.control = control
        self.model: BaseModel = control.live
        self.kinds = {name: _field_kind(f.annotation) for name, f in type(self.model).model_fields.items()}

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog wide"):
            yield Label(Content.from_markup(f"[b]Live settings · {escape(self.control.job)}[/]"), classes="dialog-title")
            if not self.kinds:
                yield Static("This job has no live settings.", classes="dialog-body")
            with VerticalScroll(classes="fields"):
                for name, kind in self.kinds.items():
                    value = getattr(self.model, name)
                    yield Label(Content.from_markup(f"[b]{escape(name)}[/] [dim]{escape(LIVE_HELP.get(name, ''))}[/]"))
                    if kind == "list":
                        yield TextArea("\n".join(str(v) for v in value), id=f"field-{name}", classes="field-list")
                    else:
                        input_type: Literal["integer", "number", "text"] = (
                            "integer" if kind == "int" else "number" if kind == "float" else "text")
                        yield Input(str(value), type=input_type, id=f"field-{name}", classes="field")
            yield Static("", id="edit-error", classes="dialog-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Apply (ctrl+s)", variant="primary", id="apply")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        # Keyboard first: the first field has focus, enter applies, esc cancels.
        fields = self.query(".field, .field-list")
        if fields:
            fields.first().focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "apply":
            self.action_apply()
        else:
            self.action_cancel()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_apply()

    def action_cancel(self) -> None:
        self.dismiss(None)

    def collect(self) -> dict[str, Any]:
        changes: dict[str, Any] = {}
        for name, kind in self.kinds.items():
            if kind == "list":
                text = self.query_one(f"#field-{name}", TextArea).text
                value: Any = [line.strip() for line in text.splitlines() if line.strip()]
            else:
                raw = self.query_one(f"#field-{name}", Input).value.strip()
                value = raw
                # Typed when it parses; otherwise keep the text so pydantic names the field and
                # the problem.
                try:
                    value = int(raw) if kind == "int" else float(raw) if kind == "float" else raw
                except ValueError:
                    pass
            current = getattr(self.model, name)
            if kind != "list" and (current == value or str(current) == value):
                continue
            if kind == "list" and list(current) == value:
                continue
            changes[name] = value
        return changes

    def action_apply(self) -> None:
        changes = self.collect()
        if not changes:
            self.dismiss({})
            return
        try:
            self.control.update_live(changes)
        except BadInput as exc:
            self.query_one("#edit-error", Static).update(str(exc))
            return
        self.dismiss(changes)


class FilterScreen(ModalScreen[tuple[str, int] | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="opsconsole.filter.cancel")]

    def __init__(self, text: str, min_level: int) -> None:
        super().__init__(classes="modal")
        self.text = text
        self.min_level = min_level

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog"):
            yield Label(Content.from_markup("[b]Filter the log[/]"), classes="dialog-title")
            yield Label("text (case-insensitive; empty = all)")
            yield Input(self.text, id="filter-text", placeholder="e.g. batch 12, ERROR, market id")
            yield Label("minimum level")
            yield Select([(lvl, i) for i, lvl in enumerate(LEVELS)], value=self.min_level, allow_blank=False,
                         id="filter-level")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Apply (enter)", variant="primary", id="apply")
                yield Button("Clear", id="clear")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#filter-text", Input).focus()

    def _result(self) -> tuple[str, int]:
        level = self.query_one("#filter-level", Select).value
        return self.query_one("#filter-text", Input).value, int(level) if isinstance(level, int) else 0

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(self._result())

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "apply":
            self.dismiss(self._result())
        elif event.button.id == "clear":
            self.dismiss(("", 0))
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark,f1", "close", "Close", id="opsconsole.help.close")]

    def __init__(self, title: str, actions: tuple[Action, ...]) -> None:
        super().__init__(classes="modal")
        self.title_text = title
        self.actions = actions

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog wide"):
            yield Label(Content.from_markup(f"[b]{escape(self.title_text)}[/] — keys (also in the command "
                                            "palette, ctrl+p)"), classes="dialog-title")
            table: DataTable[Any] = DataTable(id="help-table", cursor_type="row", zebra_stripes=True)
            yield table
            yield Static("esc to close · the mouse works too: click tabs, rows and footer keys", classes="dim")

    def on_mount(self) -> None:
        table = self.query_one("#help-table", DataTable)
        table.add_columns("key", "action", "what it does")
        for a in self.actions:
            keys = ", ".join({"question_mark": "?", "slash": "/"}.get(k, k) for k in a.keys.split(","))
            table.add_row(keys, a.label + (" (asks first)" if a.destructive else ""), a.help)

    def action_close(self) -> None:
        self.dismiss(None)
