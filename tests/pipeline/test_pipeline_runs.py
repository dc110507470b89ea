"""End to end on the real embedded Postgres, the real SDKs and httpx against loopback servers."""

from __future__ import annotations

import json
import os
import stat
import threading

import anyio
import pytest

from engine.events import Failure, JobState, Progress, Summary
from tests.pipeline.conftest import GEMINI_KEY, OPENAI_KEY, count, opts, rows, run_pipeline

pytestmark = pytest.mark.anyio

ALL_EXPERIMENTS = 5  # baseline forecast, openai research+forecast, gemini research+forecast


async def test_full_run_persists_every_result_and_finalizes(make_settings, pg_url, openai_app, gemini_app, gamma, tmp_path):
    settings = make_settings()
    summary_path = tmp_path / "out" / "summary.json"
    run = await run_pipeline(settings, opts(summary_path=summary_path))
    assert run.outcome.state is JobState.DONE, run.outcome.error
    s = run.summary
    assert s["status"] == "completed"
    assert s["counts"]["events_total"] == 3 and s["counts"]["events_processed"] == 3
    assert s["counts"]["markets_valid"] == 4
    # one research + one forecast call per event and provider
    assert openai_app.calls == {"research": 3, "forecast": 3}
    assert gemini_app.calls == {"research": 3, "forecast": 3}
    assert s["suites"]["openai"]["llm_calls"] == 6 and s["suites"]["openai"]["tokens"] == 6 * 120
    assert s["suites"]["openai"]["cost_usd"] > 0
    assert s["counts"]["llm_calls"] == 12
    # the real SDKs sent what the strategies promise
    oa_fc = next(b for b in openai_app.bodies if b["kind"] == "forecast")
    assert oa_fc["text"]["format"]["type"] == "json_schema" and oa_fc["text"]["format"]["strict"] is True
    oa_rs = next(b for b in openai_app.bodies if b["kind"] == "research")
    assert oa_rs["tools"] == [{"type": "web_search"}]
    gm_rs = next(b for b in gemini_app.bodies if b["kind"] == "research")
    assert gm_rs["tools"] == [{"googleSearch": {}}] and gm_rs["headers"].get("x-goog-api-key") == GEMINI_KEY

    assert count(pg_url, "processed_events") == 3
    assert count(pg_url, "processed_markets") == 4
    assert count(pg_url, "processed_contracts") == 8
    assert count(pg_url, "research_artifacts") == 6
    assert count(pg_url, "experiment_results") == 9
    assert rows(pg_url, "SELECT event_key FROM processed_events ORDER BY 1") == [("E1",), ("E2",), ("market:301",)]
    status, counts, sha, env = rows(pg_url, "SELECT status, counts, git_sha, environment FROM processing_runs")[0]
    assert status == "completed" and counts["events_processed"] == 3 and sha and env == "development"
    assert {r[0] for r in rows(pg_url, "SELECT status FROM experiment_runs")} == {"completed"}
    # probabilities validated and normalized, per market
    for (probs,) in rows(pg_url, "SELECT probabilities FROM experiment_results"):
        for per in probs.values():
            assert abs(sum(per.values()) - 1) < 1e-9 and all(0 <= p <= 1 for p in per.values())
    # summary: printed data == file, progress events carry the conventions' fields
    assert json.loads(summary_path.read_text())["run_id"] == s["run_id"]
    assert any(isinstance(e, Summary) for e in run.events)
    last = [e for e in run.events if isinstance(e, Progress) and e.step == "events"][-1]
    assert last.done == 3 and last.total == 3 and last.unit == "events"
    assert {"in_flight", "llm_calls", "tokens", "cost_usd", "suites"} <= set(last.detail)
    assert set(last.detail["suites"]["openai"]) == {"research_ok", "research_failed", "forecast_ok", "forecast_failed", "skipped"}


async def test_rerun_is_idempotent_with_zero_llm_calls(make_settings, pg_url, openai_app, gemini_app):
    settings = make_settings()
    first = await run_pipeline(settings, opts())
    assert first.summary["status"] == "completed"
    before = (sum(openai_app.calls.values()), sum(gemini_app.calls.values()))
    tables = {t: count(pg_url, t) for t in ("processed_events", "research_artifacts", "experiment_results")}
    second = await run_pipeline(settings, opts())
    assert second.summary["status"] == "completed"
    assert (sum(openai_app.calls.values()), sum(gemini_app.calls.values())) == before  # nothing paid twice
    assert second.summary["counts"]["events_skipped_complete"] == 3
    assert second.summary["counts"]["llm_calls"] == 0
    assert {t: count(pg_url, t) for t in tables} == tables
    assert count(pg_url, "processing_runs") == 2


async def test_failed_forecast_reruns_only_the_missing_variant(make_settings, pg_url, openai_app, gemini_app):
    settings = make_settings()
    openai_app.modes[("forecast", "*")] = "500"
    first = await run_pipeline(settings, opts())
    s = first.summary
    assert s["status"] == "completed_with_errors"
    assert s["suites"]["openai"]["research_ok"] == 3 and s["suites"]["openai"]["forecast_failed"] == 3
    assert s["suites"]["gemini"]["forecast_ok"] == 3 and s["suites"]["baseline"]["forecast_ok"] == 3
    fails = rows(pg_url, "SELECT market_id, experiment_name, retriable, reason FROM processing_failures")
    assert len(fails) == 4 and all(f[1] == "openai:forecast:gpt5" and f[2] for f in fails)
    assert all("HTTP 500" in f[3] for f in fails)
    assert {f["market_id"] for f in s["failures"]} == {"101", "102", "201", "301"}
    assert rows(pg_url, "SELECT status FROM processing_runs") == [("completed_with_errors",)]
    assert openai_app.calls == {"research": 3, "forecast": 3}  # no retry loop: failed events are not retried

    openai_app.modes.clear()
    second = await run_pipeline(settings, opts())
    assert second.summary["status"] == "completed"
    # research was stored when its call returned: only the 3 forecasts are paid again, nothing else
    assert openai_app.calls == {"research": 3, "forecast": 6}
    assert gemini_app.calls == {"research": 3, "forecast": 3}
    assert second.summary["suites"]["openai"]["research_reused"] == 3
    assert count(pg_url, "experiment_results") == 9


async def test_forecast_only_run_reuses_stored_research(make_settings, pg_url, openai_app, gemini_app):
    settings = make_settings()
    research = await run_pipeline(settings, opts(stage="research", suites=["openai"]))
    assert research.summary["status"] == "completed"
    assert openai_app.calls == {"research": 3}
    assert count(pg_url, "experiment_results") == 0
    # a research-only run did not mark events done for good: the forecast-only run still runs
    forecast = await run_pipeline(settings, opts(stage="forecast", suites=["openai"]))
    assert forecast.summary["status"] == "completed"
    assert openai_app.calls == {"research": 3, "forecast": 3}
    fc_bodies = [b for b in openai_app.bodies if b["kind"] == "forecast"]
    assert all("Findings for" in b["input"] for b in fc_bodies)  # the stored research went into the prompt
    keys = rows(pg_url, "SELECT r.research_keys FROM experiment_results r")
    hashes = {h for (h,) in rows(pg_url, "SELECT config_hash FROM research_artifacts")}
    assert all(k[0][0][1] in hashes for k in keys)


async def test_forecast_only_without_research_fails_clearly(make_settings, pg_url, openai_app):
    run = await run_pipeline(make_settings(), opts(stage="forecast", suites=["openai"]))
    assert run.summary["status"] == "completed_with_errors"
    assert openai_app.calls == {}
    reasons = {f["reason"] for f in run.summary["failures"]}
    assert any("not stored for this config (run --stage research first)" in r for r in reasons)
    assert any(r.startswith("no_forecast_results") for r in reasons)


async def test_bad_model_output_fails_only_that_strategy(make_settings, pg_url, openai_app, gemini_app):
    openai_app.modes[("forecast", "101")] = "truncated"   # event E1
    openai_app.modes[("forecast", "201")] = "wrong_schema"  # event E2
    openai_app.modes[("forecast", "301")] = "refusal"     # market-only event
    gemini_app.modes[("forecast", "101")] = "out_of_range"
    gemini_app.modes[("forecast", "201")] = "unnormalized"
    gemini_app.modes[("research", "301")] = "refusal"
    run = await run_pipeline(make_settings(), opts())
    s = run.summary
    assert s["status"] == "completed_with_errors"
    by_market: dict[str, list[str]] = {}
    for f in s["failures"]:
        by_market.setdefault(f["market_id"], []).append(f["reason"])
    assert any("truncated" in r for r in by_market["101"])
    assert any("outside [0, 1]" in r for r in by_market["101"])
    assert any("does not match the forecast schema" in r for r in by_market["201"])
    assert any("openai:forecast:gpt5: model refused" in r for r in by_market["301"])
    assert any("gemini:research:gemini_grounded: model refused" in r for r in by_market["301"])
    assert any("skipped: required research gemini:research:gemini_grounded failed" in r for r in by_market["301"])
    # the dependent gemini forecast was never called for 301; everything else still ran
    assert gemini_app.calls == {"research": 3, "forecast": 2}
    stored = {(r[0], r[1]) for r in rows(pg_url, "SELECT event_key, experiment_name FROM experiment_results")}
    assert stored == {("E1", "baseline:forecast:market_prices"), ("E2", "baseline:forecast:market_prices"),
                      ("market:301", "baseline:forecast:market_prices"), ("E2", "gemini:forecast:gemini_simple")}
    (probs,) = rows(pg_url, "SELECT probabilities FROM experiment_results WHERE event_key='E2' AND suite='gemini'")[0]
    assert probs == {"201": {"Yes": 0.5, "No": 0.5}}  # 0.6/0.6 normalized
    assert s["suites"]["gemini"]["skipped"] == 1 and s["suites"]["gemini"]["research_failed"] == 1
    failures = [e for e in run.events if isinstance(e, Failure)]
    assert {e.where for e in failures} >= {"101", "201", "301"}


async def test_malformed_llm_json_and_429_are_failures_not_crashes(make_settings, pg_url, openai_app, gemini_app):
    openai_app.modes[("research", "*")] = "malformed"
    gemini_app.modes[("research", "*")] = "429"
    run = await run_pipeline(make_settings(), opts(suites=["openai", "gemini"]))
    s = run.summary
    assert s["status"] == "completed_with_errors"
    assert s["suites"]["openai"]["research_failed"] == 3 and s["suites"]["gemini"]["research_failed"] == 3
    assert any("no_forecast_results" in f["reason"] for f in s["failures"])
    assert rows(pg_url, "SELECT status FROM processing_runs") == [("completed_with_errors",)]


async def test_sdk_retries_honour_retry_after(make_settings, pg_url, openai_app):
    calls = {"n": 0}
    original = openai_app.mode_for

    def first_429(kind, markets):  # the first research call is rate limited, the retry succeeds
        if kind == "research":
            calls["n"] += 1
            if calls["n"] == 1:
                return "429"
        return original(kind, markets)

    openai_app.mode_for = first_429
    overrides = [o for o in opts().experiment_overrides if not o.startswith("openai:research")]
    run = await run_pipeline(make_settings(), opts(suites=["openai"], experiment_overrides=overrides, event_batch_size=1))
    assert run.summary["status"] == "completed"
    assert openai_app.calls["research"] == 4  # 3 events + 1 retried call


async def test_dry_run_writes_nothing_to_the_database(make_settings, pg_url, openai_app, tmp_path):
    settings = make_settings()
    run = await run_pipeline(settings, opts(dry_run=True))
    assert run.summary["status"] == "completed" and run.summary["dry_run"] is True
    assert openai_app.calls == {"research": 3, "forecast": 3}  # strategies still run
    assert rows(pg_url, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == [(0,)]
    dumps = sorted((settings.runtime / "debug-dumps" / run.job.run_id).glob("*/*.json"))
    assert len(dumps) == 9  # 3 events x 3 suites


async def test_debug_dumps_hold_no_secrets_and_are_private(make_settings, pg_url, tmp_path):
    dump_root = tmp_path / "dumps"
    run = await run_pipeline(make_settings(), opts(debug_dump_dir=dump_root))
    files = sorted((dump_root / run.job.run_id).glob("*/*.json"))
    assert {f.parent.name for f in files} == {"baseline", "openai", "gemini"}
    for f in files:
        text = f.read_text()
        assert OPENAI_KEY not in text and GEMINI_KEY not in text
        assert stat.S_IMODE(os.stat(f).st_mode) == 0o600
    doc = json.loads((dump_root / run.job.run_id / "openai" / "E1.json").read_text())
    assert set(doc["experiments"]) == {"openai:research:openai_web_search", "openai:forecast:gpt5"}
    assert doc["experiments"]["openai:forecast:gpt5"]["request"]["model"] == "gpt-5"
    none = await run_pipeline(make_settings(name="rt2"), opts(no_debug_dump=True, dry_run=True))
    assert none.summary["dump_dir"] is None
    assert not (tmp_path / "rt2" / "debug-dumps").exists()


async def test_concurrent_runners_do_not_duplicate_rows(make_settings, pg_url, gamma, openai_app, gemini_app):
    gamma.markets = gamma.markets[:1]  # one event both runners race on
    openai_app.barrier = threading.Barrier(2, timeout=10)  # both are inside the same research call at once
    results = []

    async def one(name: str) -> None:
        results.append(await run_pipeline(make_settings(name=name), opts(suites=["openai", "baseline"])))

    async with anyio.create_task_group() as tg:
        tg.start_soon(one, "rt-a")
        tg.start_soon(one, "rt-b")
    assert {r.summary["status"] for r in results} == {"completed"}
    assert openai_app.calls["research"] == 2  # both paid (they met inside the call) ...
    assert count(pg_url, "research_artifacts") == 1  # ... but one row: the second hit the unique key
    assert count(pg_url, "experiment_results") == 2  # one openai + one baseline forecast
    assert count(pg_url, "processed_events") == 1
    assert count(pg_url, "processing_runs") == 2


async def test_stop_finishes_in_flight_events_then_finalizes(make_settings, pg_url, openai_app):
    def stop_after_first(event, control):
        if isinstance(event, Progress) and event.step == "events" and event.done == 1:
            control.stop("test stop")

    run = await run_pipeline(make_settings(), opts(suites=["baseline"], event_batch_size=1), on_event=stop_after_first)
    assert run.outcome.state is JobState.STOPPED
    s = run.summary
    assert s["status"] == "stopped"
    assert s["counts"]["events_processed"] == 1 and s["counts"]["events_not_started"] == 2
    assert rows(pg_url, "SELECT status FROM processing_runs") == [("stopped",)]
    # the next run picks up exactly what was not done
    again = await run_pipeline(make_settings(), opts(suites=["baseline"]))
    assert again.summary["counts"]["events_skipped_complete"] == 1
    assert count(pg_url, "experiment_results") == 3


async def test_pause_holds_between_events_and_resume_continues(make_settings, pg_url):
    state = {"paused_at": None}

    def pause_then_resume(event, control):
        if isinstance(event, Progress) and event.step == "events" and event.done == 1 and state["paused_at"] is None:
            control.pause()
        if getattr(event, "state", None) is JobState.PAUSED:
            state["paused_at"] = count(pg_url, "experiment_results")
            control.resume()

    run = await run_pipeline(make_settings(), opts(suites=["baseline"], event_batch_size=1), on_event=pause_then_resume)
    assert state["paused_at"] == 1  # held after the first event, nothing else started
    assert run.summary["status"] == "completed" and count(pg_url, "experiment_results") == 3


async def test_live_overrides_apply_to_events_not_yet_started(make_settings, pg_url, openai_app):
    def change_after_first(event, control):
        if isinstance(event, Progress) and event.step == "events" and event.done == 1:
            control.update_live({"experiment_overrides": [*opts().experiment_overrides, "openai:forecast:gpt5.model=gpt-live"]})

    run = await run_pipeline(make_settings(), opts(suites=["openai"], event_batch_size=1), on_event=change_after_first)
    assert run.summary["status"] == "completed"
    models = [b["model"] for b in openai_app.bodies if b["kind"] == "forecast"]
    assert models == ["gpt-5", "gpt-live", "gpt-live"]
    stored = rows(pg_url, "SELECT event_key, config->>'model', config_hash FROM experiment_results ORDER BY id")
    assert [r[1] for r in stored] == ["gpt-5", "gpt-live", "gpt-live"]  # each result records its config
    assert stored[0][2] != stored[1][2]


async def test_live_override_validation_rejects_unknown_experiment(make_settings):
    from engine.bus import EventBus
    from engine.control import Control
    from engine.errors import BadInput
    from engine.pipeline.job import PipelineJob

    job = PipelineJob(opts())
    control = Control(job.name, EventBus(), job.live_settings())
    with pytest.raises(BadInput, match="unknown experiment"):
        control.update_live({"experiment_overrides": ["openai:forecast:nope.model=x"]})
    with pytest.raises(BadInput, match="unknown key"):
        control.update_live({"experiment_overrides": ["openai:forecast:gpt5.modle=x"]})


async def test_gamma_failure_finalizes_run_as_failed_with_summary(make_settings, pg_url, gamma, tmp_path):
    gamma.script = ["malformed"] * 10
    summary_path = tmp_path / "s.json"
    run = await run_pipeline(make_settings(), opts(summary_path=summary_path, gamma_attempts=3))
    assert run.outcome.state is JobState.FAILED
    assert "malformed JSON" in run.outcome.error and "gave up after 3 attempts" in run.outcome.error
    assert rows(pg_url, "SELECT status, error IS NOT NULL FROM processing_runs") == [("failed", True)]
    assert json.loads(summary_path.read_text())["status"] == "failed"


async def test_invalid_markets_are_failures_never_stored(make_settings, pg_url, gamma):
    from tests.pipeline.fakes import gamma_market

    gamma.markets = [
        gamma_market(None, "No id here?", ("E9", "Nine")),
        gamma_market("401", "Broken prices?", ("E4", "Four"), outcomePrices='["0.5"]'),
        gamma_market("402", "Fine?", ("E4", "Four")),
    ]
    run = await run_pipeline(make_settings(), opts(suites=["baseline"]))
    s = run.summary
    assert s["counts"]["markets_invalid"] == 2 and s["counts"]["markets_valid"] == 1
    assert rows(pg_url, "SELECT market_id FROM processed_markets") == [("402",)]
    fails = rows(pg_url, "SELECT market_id, stage, retriable FROM processing_failures ORDER BY id")
    assert fails == [(None, "ingest", False), ("401", "normalize", True)]
    assert not rows(pg_url, "SELECT 1 FROM processed_markets WHERE market_id IN ('None', '')")


async def test_transient_postgres_drop_is_retried_not_fatal(make_settings, pg_url, pg_server):
    import psycopg

    dbname = pg_url.split("?")[0].rsplit("/", 1)[1]
    dropped = {"n": 0}

    def drop_connections(event, control):
        # Kill every server connection of this database mid-run, as a failover or restart would.
        if isinstance(event, Progress) and event.step == "events" and event.done == 1 and not dropped["n"]:
            with psycopg.connect(pg_server, autocommit=True) as conn:
                dropped["n"] = len(conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                    (dbname,)).fetchall())

    run = await run_pipeline(make_settings(), opts(suites=["baseline", "openai"], event_batch_size=1), on_event=drop_connections)
    assert dropped["n"] >= 1
    assert run.summary["status"] == "completed", run.summary["failures"]
    assert count(pg_url, "experiment_results") == 6
    assert rows(pg_url, "SELECT status FROM processing_runs") == [("completed",)]


async def test_event_window_slides_instead_of_waiting_for_the_slowest(make_settings, pg_url, gamma, openai_app):
    from tests.pipeline.fakes import gamma_market

    gamma.markets = [gamma_market(str(i), f"Q{i}?", (f"E{i}", f"Event {i}")) for i in range(1, 6)]
    release, third_started = threading.Event(), threading.Event()
    original = openai_app.mode_for
    seen_in_flight: list[int] = []

    def slow_first(kind, markets):
        ids = {m["market_id"] for m in markets}
        if kind == "research" and "3" in ids:
            third_started.set()
        if kind == "research" and "1" in ids:
            # E1 is slow: with a window of 2, E2 finishes and E3 must start while E1 is still running.
            if third_started.wait(10):
                release.set()
        return original(kind, markets)

    openai_app.mode_for = slow_first

    def watch(event, control):
        if isinstance(event, Progress) and event.step == "events":
            seen_in_flight.append(event.detail["in_flight"])

    run = await run_pipeline(make_settings(), opts(suites=["openai"], event_batch_size=2), on_event=watch)
    assert release.is_set(), "E3 never started while E1 was in flight: events ran in lockstep batches"
    assert run.summary["status"] == "completed"
    assert max(seen_in_flight) <= 2  # never more than --event-batch-size in flight
    assert rows(pg_url, "SELECT options->>'event_batch_size' FROM processing_runs") == [("2",)]


async def test_event_window_defaults_to_four(make_settings, pg_url):
    await run_pipeline(make_settings(), opts(suites=["baseline"]))
    assert rows(pg_url, "SELECT options->>'event_batch_size' FROM processing_runs") == [("4",)]


async def test_baseline_only_run_does_not_mark_events_done_for_other_suites(make_settings, pg_url, openai_app):
    await run_pipeline(make_settings(), opts(suites=["baseline"]))
    later = await run_pipeline(make_settings(), opts(suites=["baseline", "openai"]))
    assert later.summary["suites"]["baseline"]["forecast_reused"] == 3
    assert openai_app.calls == {"research": 3, "forecast": 3}
    assert later.summary["counts"]["events_skipped_complete"] == 0
