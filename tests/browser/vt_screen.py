"""The screen a browser's terminal shows, rebuilt from the bytes its xterm.js was fed.

textual-serve's page draws the terminal on a canvas, so there is no DOM text to read. What it draws
is exactly the binary WebSocket frames the page receives (it hands each one to `terminal.write`);
feeding the same frames to this small model gives the text on screen. Textual's output needs only a
few controls: cursor positioning (CSI row;col H), colours (SGR, ignored here), mode switches and OSC
strings (ignored); everything else printable lands at the cursor.
"""

from __future__ import annotations

import codecs
import re
import unicodedata
from dataclasses import dataclass, field

_CSI = re.compile(r"\[([0-9;?<>=$]*)([ -/]*)([@-~])")


@dataclass
class Screen:
    cols: int = 200
    rows: int = 80
    cells: list[list[str]] = field(default_factory=list)
    row: int = 0
    col: int = 0
    _pending: str = ""  # an escape sequence split across frames
    _decoder: codecs.IncrementalDecoder = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")("replace"))

    def __post_init__(self) -> None:
        self.cells = [[" "] * self.cols for _ in range(self.rows)]

    def feed(self, data: bytes) -> None:
        text = self._pending + self._decoder.decode(data)
        self._pending = ""
        i = 0
        while i < len(text):
            ch = text[i]
            if ch == "\x1b":
                end = self._escape(text, i)
                if end is None:  # incomplete: wait for the next frame
                    self._pending = text[i:]
                    return
                i = end
                continue
            if ch == "\n":
                self.row = min(self.row + 1, self.rows - 1)
            elif ch == "\r":
                self.col = 0
            elif ch >= " ":
                self._put(ch)
            i += 1

    def _escape(self, text: str, i: int) -> int | None:
        """Apply the escape sequence at text[i]; the index after it, or None if it is cut off."""
        if i + 1 >= len(text):
            return None
        kind = text[i + 1]
        if kind == "[":
            m = _CSI.match(text, i + 1)
            if m is None:
                return None if len(text) - i < 64 else i + 2  # cut off, or garbage: skip ESC [
            params, _, final = m.groups()
            if final == "H" and "?" not in params:
                parts = [int(p) if p.isdigit() else 1 for p in (params.split(";") if params else [])]
                self.row = min(max((parts[0] if parts else 1) - 1, 0), self.rows - 1)
                self.col = min(max((parts[1] if len(parts) > 1 else 1) - 1, 0), self.cols - 1)
            elif final == "J" and params == "2":
                self.cells = [[" "] * self.cols for _ in range(self.rows)]
            return m.end()
        if kind == "]":  # OSC: up to BEL or ST
            bel, st = text.find("\x07", i + 2), text.find("\x1b\\", i + 2)
            ends = [e + 1 for e in (bel,) if e >= 0] + [e + 2 for e in (st,) if e >= 0]
            return min(ends) if ends else None
        return i + 2  # a two-character escape (charset, keypad mode…)

    def _put(self, ch: str) -> None:
        if unicodedata.combining(ch):
            return
        wide = unicodedata.east_asian_width(ch) in ("W", "F")
        if self.col < self.cols:
            self.cells[self.row][self.col] = ch
        if wide and self.col + 1 < self.cols:
            self.cells[self.row][self.col + 1] = ""
        self.col = min(self.col + (2 if wide else 1), self.cols)

    def lines(self) -> list[str]:
        return ["".join(r).rstrip() for r in self.cells]

    def text(self) -> str:
        return "\n".join(line for line in self.lines())

    def find(self, word: str) -> tuple[int, int] | None:
        """(row, column) of the first place `word` is shown, 0-based."""
        for row, line in enumerate(self.lines()):
            col = line.find(word)
            if col >= 0:
                return row, col
        return None

    def has(self, *words: str) -> bool:
        """Some line shows every one of `words`."""
        return any(all(w in line for w in words) for line in self.lines())
