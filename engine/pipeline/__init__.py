"""The forecast pipeline (pipeline-runbook.md): Gamma ingestion, research -> forecast suites, persistence."""

from pathlib import Path

#: A saved Gamma `/markets` response shipped with the code (offline runs, demos, the TUI's dry run).
SAMPLE_MARKETS = Path(__file__).parent / "data" / "sample_markets.json"
