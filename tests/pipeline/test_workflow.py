"""The scheduled GitHub Actions workflow: schedule, guard rails, and a command line that parses."""

from __future__ import annotations

import re
import shlex

from console.cli import build_parser
from tests.conftest import REPO

WORKFLOW = REPO / ".github" / "workflows" / "daily-pipeline.yml"


def test_schedule_dispatch_concurrency_timeout_and_uploads():
    text = WORKFLOW.read_text()
    assert re.search(r'cron:\s*"0 7 \* \* \*"', text)  # 07:00 UTC
    assert "workflow_dispatch:" in text
    assert re.search(r"concurrency:\s*\n\s+group: daily-pipeline\s*\n\s+cancel-in-progress: false", text)
    assert re.search(r"timeout-minutes: \d+", text)
    assert "astral-sh/setup-uv" in text
    assert text.count("actions/upload-artifact") == 2 and "pipeline-summary.json" in text and "debug-dumps" in text
    for secret in ("SUPABASE_DB_URL", "OPENAI_API_KEY", "GEMINI_API_KEY"):
        assert f"secrets.{secret}" in text
    assert "vars.INGESTION_FILTERS" in text and "vars.INGESTION_PAGE_SIZE" in text


def test_the_pipeline_command_in_the_workflow_parses():
    text = WORKFLOW.read_text()
    command = re.search(r"uv run (opsconsole pipeline .*?\n.*?)\n", text, re.S).group(1).replace("\\\n", " ")
    argv = shlex.split(command.replace("$window", "--window-days 7").replace("$EXTRA_ARGS", ""))[1:]
    args = build_parser().parse_args(argv)
    assert args.command == "pipeline" and args.no_ui and args.window_days == 7
    assert str(args.summary_path) == "artifacts/pipeline-summary.json"
    assert build_parser().parse_args(["db", "migrate"]).command == "db"
