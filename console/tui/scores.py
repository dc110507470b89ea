"""Scores view: the `opsconsole score` leaderboard and a reliability diagram, from its summary.

Renders only the summary dict the job produced (the same one `--json` prints); it never talks to a
store. The baseline is the first row, marked as the reference every skill score is measured
against. The diagram is drawn on a braille canvas (2×4 dots per cell): the dotted diagonal is
perfect calibration, the line joins the highlighted variant's bins (mean forecast, observed).
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import App, ComposeResult
from textual.screen import Screen
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import DataTable, Static

from console.tui.widgets import KeysFooter

# dot (column, row) -> bit of U+2800 + bits
_BITS = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))


class BrailleCanvas:
    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.bits = [[0] * width for _ in range(height)]
        self.layer = [[0] * width for _ in range(height)]

    def dot(self, x: int, y: int, layer: int) -> None:
        """x in [0, 2*width), y in [0, 4*height), y = 0 at the top."""
        if 0 <= x < 2 * self.width and 0 <= y < 4 * self.height:
            row, col = y // 4, x // 2
            self.bits[row][col] |= _BITS[x % 2][y % 4]
            self.layer[row][col] = max(self.layer[row][col], layer)

    def line(self, x0: int, y0: int, x1: int, y1: int, layer: int) -> None:
        steps = max(abs(x1 - x0), abs(y1 - y0), 1)
        for i in range(steps + 1):
            self.dot(round(x0 + (x1 - x0) * i / steps), round(y0 + (y1 - y0) * i / steps), layer)

    def point(self, fx: float, fy: float) -> tuple[int, int]:
        """A point of the unit square as dot coordinates."""
        return round(fx * (2 * self.width - 1)), round((1 - fy) * (4 * self.height - 1))

    def render(self, styles: dict[int, str]) -> Text:
        text = Text()
        for r in range(self.height):
            for c in range(self.width):
                text.append(chr(0x2800 + self.bits[r][c]), styles.get(self.layer[r][c], ""))
            if r < self.height - 1:
                text.append("\n")
        return text


def reliability_text(variant: dict[str, Any] | None, width: int = 40, height: int = 12) -> Text:
    canvas = BrailleCanvas(width, height)
    for i in range(0, 2 * width, 3):  # perfect calibration, dotted
        canvas.dot(*canvas.point(i / (2 * width - 1), i / (2 * width - 1)), 1)
    points = [] if variant is None else [canvas.point(b["mean_forecast"], b["observed"])
                                         for b in variant["calibration"] if b["count"]]
    for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False):
        canvas.line(x0, y0, x1, y1, 2)
    for x, y in points:
        for dx in (0, 1):
            for dy in (0, 1):
                canvas.dot(x + dx - (x == 2 * width - 1), y + dy - (y == 4 * height - 1), 3)
    body = canvas.render({1: "dim", 2: "cyan", 3: "bold cyan"})
    out = Text()
    title = "reliability: " + (variant["experiment"] if variant else "(no variant)")
    out.append(title + "\n", "bold")
    lines = body.split("\n")
    for i, line in enumerate(lines):
        label = "1.0 " if i == 0 else "0.0 " if i == len(lines) - 1 else "obs " if i == len(lines) // 2 else "    "
        out.append(label, "dim")
        out.append_text(line)
        out.append("\n")
    out.append("    0.0" + "mean forecast".center(width - 6) + "1.0", "dim")
    return out


def _f(value: Any, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _ci(value: Any) -> str:
    return "-" if not value else f"[{value[0]:+.3f}, {value[1]:+.3f}]"


class ReliabilityDiagram(Static):
    def show(self, variant: dict[str, Any] | None) -> None:
        self.update(reliability_text(variant))


# (label, summary key, best first when sorted ascending?) for the sort key `s` cycles through.
SORTS: tuple[tuple[str, str, bool], ...] = (
    ("Brier", "brier", True), ("log loss", "log_loss", True), ("BSS", "bss_vs_baseline", False), ("n", "n", False),
)


def sorted_variants(variants: list[dict[str, Any]], key: str, ascending: bool) -> list[int]:
    """Row order: the reference (baseline) first, then the others by `key`; missing values last."""
    ref = [i for i, v in enumerate(variants) if v.get("reference")]
    rest = [i for i, v in enumerate(variants) if not v.get("reference")]
    known = [i for i in rest if variants[i].get(key) is not None]
    unknown = [i for i in rest if variants[i].get(key) is None]
    known.sort(key=lambda i: variants[i][key], reverse=not ascending)
    return ref + known + unknown


class ScoresScreen(Screen[None]):
    """The leaderboard of one scoring summary, with the highlighted variant's reliability diagram."""

    DEFAULT_CSS = """
    ScoresScreen #counts { height: auto; padding: 0 1; }
    ScoresScreen #board { height: 1fr; }
    ScoresScreen #leaderboard { width: 1fr; }
    ScoresScreen #reliability { width: 48; padding: 0 1; }
    ScoresScreen #footnote { height: auto; padding: 0 1; color: $text-muted; }
    """
    BINDINGS = [
        Binding("s", "sort", "sort", tooltip="sort the variants by the next column (the baseline stays on top)",
                id="scores.sort"),
        Binding("q,escape", "leave", "back", tooltip="leave the Scores view", id="scores.leave"),
    ]

    def __init__(self, summary: dict[str, Any], *, standalone: bool = False) -> None:
        super().__init__()
        self.summary = summary
        self.standalone = standalone  # the whole app (`score --view`): leaving quits
        self.sort_index = 0

    def compose(self) -> ComposeResult:
        s = self.summary
        yield Static(f"scored {s['scored']}  void {s['void']}  pending {s['pending']}  "
                     f"missing {s['missing']['count']}  invalid {len(s['invalid'])}  status {s['status']}", id="counts")
        with Horizontal(id="board"):
            yield DataTable(id="leaderboard", cursor_type="row", zebra_stripes=True)
            yield ReliabilityDiagram(id="reliability")
        yield Static(id="footnote")
        yield KeysFooter(compact=False)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("variant", "config", "n", "Brier", "log loss", "BSS", "BSS 95% CI", "paired")
        self._fill()

    def _fill(self) -> None:
        label, key, ascending = SORTS[self.sort_index]
        variants = self.summary["variants"]
        table = self.query_one(DataTable)
        table.clear()
        order = sorted_variants(variants, key, ascending)
        for i in order:
            v = variants[i]
            name = Text(v["experiment"] + "  (reference)", "bold") if v.get("reference") else Text(v["experiment"])
            table.add_row(name, v["config_hash"][:8], str(v["n"]), _f(v["brier"]), _f(v["log_loss"]),
                          _f(v["bss_vs_baseline"], 3), _ci(v["bss_ci95"]), str(v["paired_n"]), key=str(i))
        boot = self.summary["bootstrap"]
        self.query_one("#footnote", Static).update(
            f"sorted by {label} (s: next) · BSS vs {self.summary['baseline']} on markets both forecast; "
            f"95% paired bootstrap, {boot['resamples']} resamples, seed {boot['seed']}")
        table.move_cursor(row=0)
        self.query_one(ReliabilityDiagram).show(variants[order[0]] if order else None)

    def action_sort(self) -> None:
        self.sort_index = (self.sort_index + 1) % len(SORTS)
        self._fill()

    def action_leave(self) -> None:
        if self.standalone:
            self.app.exit()
        else:
            self.app.pop_screen()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        variants = self.summary["variants"]
        if event.row_key.value is not None and variants:
            self.query_one(ReliabilityDiagram).show(variants[int(event.row_key.value)])


class ScoresApp(App[None]):
    """`opsconsole score --view`: the Scores view on its own."""

    TITLE = "Forecast scores"

    def __init__(self, summary: dict[str, Any]) -> None:
        super().__init__()
        self.summary = summary

    def on_mount(self) -> None:
        self.push_screen(ScoresScreen(self.summary, standalone=True))
