"""The one table of operator actions.

Footer bindings, the help screen and the command palette are all derived from `JOB_ACTIONS` and
`LAUNCHER_ACTIONS`, so a key can never be documented in one place and missing from another.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding


@dataclass(frozen=True)
class Action:
    id: str
    keys: str  # comma-separated Textual key names; the first is the one shown
    action: str  # the `action_<name>` method on the screen
    label: str  # short footer label
    help: str  # one-line explanation for the help screen and palette
    footer: bool = True
    destructive: bool = False  # asks for confirmation before it acts
    priority: bool = False  # wins over the focused widget's own binding for the key

    @property
    def key_display(self) -> str:
        first = self.keys.split(",")[0]
        return {"question_mark": "?", "slash": "/", "escape": "esc"}.get(first, first)

    def binding(self) -> Binding:
        return Binding(self.keys, self.action, self.label, show=self.footer, id=f"opsconsole.{self.id}",
                       tooltip=self.help, key_display=self.key_display, priority=self.priority)


JOB_ACTIONS: tuple[Action, ...] = (
    Action("pause", "p", "pause", "Pause", "Pause gracefully: finish the current unit (Step D batch / in-flight "
           "events), save a checkpoint, then hold"),
    Action("resume", "r", "resume", "Resume", "Resume a paused job"),
    Action("stop", "s", "stop", "Stop", "Stop gracefully after the current unit (asks first)", destructive=True),
    Action("edit", "e", "edit_live", "Edit", "Edit live settings: Step D batch size and mutation-wait cadence, "
           "or pipeline experiment overrides (name.key=value); validated before they apply"),
    Action("gates", "g", "refresh_gates", "Gates", "Refresh the validation gates now"),
    Action("mutations", "m", "show_mutations", "Mutations", "Show pending ClickHouse mutations in detail"),
    Action("failures", "f", "show_failures", "Failures", "Show the failures table"),
    Action("logs", "l", "show_logs", "Logs", "Show the full log"),
    Action("overview", "o", "show_overview", "Overview", "Back to the overview", footer=False),
    Action("filter", "slash", "filter_logs", "Filter", "Filter the log by text and minimum level"),
    Action("theme", "t", "toggle_theme", "Theme", "Switch between the dark and the light theme", footer=False),
    Action("help", "question_mark,f1", "help", "Help", "Show every key and what it does"),
    Action("detach", "d", "detach", "Detach", "Leave the job running and close the console (`opsconsole attach` "
           "comes back)"),
    Action("quit", "q,ctrl+q", "quit_console", "Quit", "Quit: for a job in its own process, detach or stop it "
           "(asks); a job run inside the console is asked to stop gracefully first"),
)

LAUNCHER_ACTIONS: tuple[Action, ...] = (
    Action("start", "enter", "start_selected", "Start", "Start the selected entry", priority=True),
    Action("refresh", "ctrl+r", "refresh_info", "Refresh", "Re-read the last checkpoint and pipeline summary"),
    Action("theme", "t", "toggle_theme", "Theme", "Switch between the dark and the light theme", footer=False),
    Action("help", "question_mark,f1", "help", "Help", "Show every key and what it does"),
    Action("quit", "q,ctrl+q", "quit_console", "Quit", "Leave the console"),
)


def bindings(actions: tuple[Action, ...]) -> list[Binding]:
    return [a.binding() for a in actions]
