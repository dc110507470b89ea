"""The scheduled daily-enrichment workflow: schedule, one run at a time, a timeout, the uploads, and
a command line that parses to the daily path (whose exit 3 on a FAILing gate fails the run)."""

from __future__ import annotations

import re
import shlex

from console.cli import build_parser
from tests.conftest import REPO

WORKFLOW = REPO / ".github" / "workflows" / "daily-enrichment.yml"


def test_schedule_dispatch_concurrency_timeout_and_uploads() -> None:
    text = WORKFLOW.read_text()
    assert re.search(r'cron:\s*"[\d*/ ]+"', text) and "workflow_dispatch:" in text
    assert re.search(r"concurrency:\s*\n\s+group: daily-enrichment\s*\n\s+cancel-in-progress: false", text)
    assert re.search(r"timeout-minutes: \d+", text)
    assert "actions/upload-artifact" in text and "if: always()" in text
    assert "artifacts/daily-enrichment-summary.json" in text and "runtime/full-enrichment.console.log" in text
    for secret in ("SUPABASE_DB_URL", "CLICKHOUSE_URL"):
        assert f"secrets.{secret}" in text
    # The run step must not swallow the exit code (no `|| true`, no `continue-on-error`).
    assert "|| true" not in text and "continue-on-error" not in text


def test_the_enrich_command_in_the_workflow_parses_to_the_daily_path() -> None:
    text = WORKFLOW.read_text()
    command = re.search(r"uv run (opsconsole enrich .*?\n.*?)\n", text, re.S).group(1).replace("\\\n", " ")
    for full in ("", "--full"):
        argv = shlex.split(command.replace("$full", full).replace("$EXTRA_ARGS", ""))[1:]
        args = build_parser().parse_args(argv)
        assert args.command == "enrich" and args.step == "daily" and args.no_ui and args.full == bool(full)
        assert str(args.summary_path) == "artifacts/daily-enrichment-summary.json"
