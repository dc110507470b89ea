"""Run accounting: counts, per-suite stats, failures, tokens and cost -> the summary dict/text."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MAX_FAILURES_LISTED = 500  # the summary stays readable; processing_failures has every row


@dataclass
class SuiteStats:
    research_ok: int = 0
    research_failed: int = 0
    research_reused: int = 0
    forecast_ok: int = 0
    forecast_failed: int = 0
    forecast_reused: int = 0
    skipped: int = 0
    llm_calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    skipped_reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "tokens": self.tokens_in + self.tokens_out, "cost_usd": round(self.cost_usd, 6)}


@dataclass
class RunStats:
    run_id: str
    dry_run: bool
    markets_seen: int = 0
    markets_valid: int = 0
    markets_invalid: int = 0
    duplicates: int = 0
    requests: int = 0
    events_total: int = 0
    events_done: int = 0
    events_complete_skipped: int = 0
    events_with_failures: int = 0
    events_not_started: int = 0
    in_flight: int = 0
    suites: dict[str, SuiteStats] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)
    failures_total: int = 0

    def suite(self, name: str) -> SuiteStats:
        return self.suites.setdefault(name, SuiteStats())

    @property
    def llm_calls(self) -> int:
        return sum(s.llm_calls for s in self.suites.values())

    @property
    def tokens(self) -> int:
        return sum(s.tokens_in + s.tokens_out for s in self.suites.values())

    @property
    def cost_usd(self) -> float:
        return sum(s.cost_usd for s in self.suites.values())

    def add_failure(self, market_id: str | None, reason: str, retriable: bool, experiment: str | None, event_key: str | None) -> None:
        self.failures_total += 1
        if len(self.failures) < MAX_FAILURES_LISTED:
            self.failures.append({"market_id": market_id, "reason": reason, "retriable": retriable,
                                  "experiment": experiment, "event_key": event_key})

    def counts(self) -> dict[str, Any]:
        return {
            "markets_seen": self.markets_seen, "markets_valid": self.markets_valid,
            "markets_invalid": self.markets_invalid, "duplicates_dropped": self.duplicates,
            "gamma_requests": self.requests, "events_total": self.events_total, "events_processed": self.events_done,
            "events_skipped_complete": self.events_complete_skipped, "events_with_failures": self.events_with_failures,
            "events_not_started": self.events_not_started, "failures": self.failures_total,
            "llm_calls": self.llm_calls, "tokens": self.tokens, "cost_usd": round(self.cost_usd, 6),
        }

    def progress_suites(self) -> dict[str, dict[str, int]]:
        return {
            name: {"research_ok": s.research_ok + s.research_reused, "research_failed": s.research_failed,
                   "forecast_ok": s.forecast_ok + s.forecast_reused, "forecast_failed": s.forecast_failed,
                   "skipped": s.skipped}
            for name, s in self.suites.items()
        }

    def summary(self, status: str, extra: dict[str, Any]) -> dict[str, Any]:
        return {
            "run_id": self.run_id, "status": status, "dry_run": self.dry_run, **extra,
            "counts": self.counts(),
            "suites": {name: s.as_dict() for name, s in self.suites.items()},
            "failures": self.failures, "failures_total": self.failures_total,
            "tokens": self.tokens, "cost_usd": round(self.cost_usd, 6),
        }


def format_summary(summary: dict[str, Any]) -> str:
    c = summary.get("counts", {})
    lines = [
        f"Pipeline summary  run {summary.get('run_id')}  status {summary.get('status')}"
        + ("  (dry run: nothing written to the database)" if summary.get("dry_run") else ""),
        f"  window: {summary.get('window', {}).get('start') or '-'} .. {summary.get('window', {}).get('end') or '-'}"
        + (f"   source: {summary['source']}" if summary.get("source") else ""),
        f"  markets: {c.get('markets_seen', 0)} seen, {c.get('markets_valid', 0)} valid, {c.get('markets_invalid', 0)} invalid, "
        f"{c.get('duplicates_dropped', 0)} duplicates dropped",
        f"  events: {c.get('events_total', 0)} total, {c.get('events_processed', 0)} processed, "
        f"{c.get('events_skipped_complete', 0)} already complete, {c.get('events_with_failures', 0)} with failures, "
        f"{c.get('events_not_started', 0)} not started",
        f"  llm calls: {c.get('llm_calls', 0)}   tokens: {summary.get('tokens', 0)}   cost: ${summary.get('cost_usd', 0):.4f}",
        "  suites:",
    ]
    if summary.get("mode") == "workers":
        if summary.get("workers"):  # the finalizer's summary: the whole run
            shares = ", ".join(f"{w} {v.get('events', 0)} event(s)/{v.get('llm_calls', 0)} call(s)"
                               for w, v in summary["workers"].items())
            lines.insert(1, f"  workers: {len(summary['workers'])}, finalized by {summary.get('finalized_by')} (this worker): {shares}")
        else:
            lines.insert(1, f"  worker {summary.get('worker')}: this worker's share; run status {summary.get('run_status')}"
                         + (f", finalized by {summary['finalized_by']}" if summary.get("finalized_by") else ""))
    for name, s in summary.get("suites", {}).items():
        if s.get("skipped_reason"):
            lines.append(f"    {name:<10} skipped: {s['skipped_reason']}")
            continue
        lines.append(
            f"    {name:<10} research ok {s['research_ok']} (+{s['research_reused']} reused) failed {s['research_failed']}"
            f" | forecast ok {s['forecast_ok']} (+{s['forecast_reused']} reused) failed {s['forecast_failed']}"
            f" | skipped {s['skipped']} | calls {s['llm_calls']} tokens {s['tokens']} ${s['cost_usd']:.4f}"
        )
    failures = summary.get("failures", [])
    lines.append(f"  failures: {summary.get('failures_total', len(failures))}")
    for f in failures[:50]:
        lines.append(f"    {f.get('market_id') or '(no id)'}: {f.get('reason')}")
    if len(failures) > 50:
        lines.append(f"    ... {summary.get('failures_total', len(failures)) - 50} more (see --summary-path / processing_failures)")
    for key in ("summary_path", "dump_dir", "error"):
        if summary.get(key):
            lines.append(f"  {key.replace('_', ' ')}: {summary[key]}")
    return "\n".join(lines)
