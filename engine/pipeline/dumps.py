"""Debug dumps: runtime/debug-dumps/<run_id>/<suite>/<event>.json, one file per event and suite.

Each file is rewritten (atomically, mode 0600) after every experiment of that suite finishes and
BEFORE its database write, so a run that dies between an LLM call and the insert still leaves the
answer on disk for `opsconsole replay`. Everything is redacted; API keys never enter a dump (they
live in the SDK clients, not in the requests we record).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from engine.files import atomic_write_json, ensure_private_dir
from engine.redact import redact_obj

DUMP_VERSION = 1


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:150] or "_"


class DumpWriter:
    def __init__(self, root: Path | None, run_id: str) -> None:
        self.root = root
        self.run_id = run_id

    @property
    def enabled(self) -> bool:
        return self.root is not None

    @property
    def run_dir(self) -> Path | None:
        return self.root / safe_name(self.run_id) if self.root is not None else None

    def path(self, suite: str, event_key: str) -> Path | None:
        if self.run_dir is None:
            return None
        return self.run_dir / safe_name(suite) / f"{safe_name(event_key)}.json"

    def write(self, suite: str, event_key: str, document: dict[str, Any]) -> None:
        path = self.path(suite, event_key)
        if path is None:
            return
        ensure_private_dir(self.root)  # type: ignore[arg-type]
        ensure_private_dir(path.parent.parent)
        ensure_private_dir(path.parent)
        atomic_write_json(path, redact_obj(document))


def new_document(run_id: str, suite: str, event: dict[str, Any]) -> dict[str, Any]:
    return {"version": DUMP_VERSION, "run_id": run_id, "suite": suite, "event": event, "experiments": {}}


def read_dumps(run_dir: Path) -> list[tuple[Path, dict[str, Any]]]:
    out = []
    for path in sorted(run_dir.glob("*/*.json")):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            out.append((path, {"_error": f"unreadable dump: {exc}"}))
            continue
        out.append((path, doc))
    return out
